"""Sealing device keys at rest under the key-encryption key (KEK).

Device SAS keys are stored only sealed (ARCHITECTURE.md, "Storage"): AES-256-GCM under a
32-byte KEK that lives in a 0600 file (or, later, a PKCS#11 token), never in the database. A
copy of the database alone therefore yields no device key.

Blob format, version 1::

    0x01 || nonce (12 random bytes) || AES-256-GCM ciphertext || tag (16 bytes)

The GCM associated data is the version byte followed by the caller's ``aad``. Authenticating
the version byte means a future format cannot be downgraded to this one by editing one byte.
The ``aad`` binds a blob to where it is stored: use :func:`device_key_aad` for a device's key
slot, so a blob copied to another device's row, or from the primary to the secondary slot,
fails to unseal instead of quietly giving a device someone else's key (an attacker with write
access to the database but not the KEK could otherwise swap credentials between devices).

Random 96-bit nonces are safe here: NIST SP 800-38D §8.3 bounds one key to 2^32 random-nonce
encryptions, and a hub seals a handful of keys per device in its lifetime.

This module is pure apart from drawing random bytes from :mod:`secrets`.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ironhub.errors import SealingError

__all__ = [
    "KEK_BYTES",
    "NONCE_BYTES",
    "SEALED_VERSION",
    "TAG_BYTES",
    "device_key_aad",
    "enrollment_key_aad",
    "generate_kek",
    "operator_secret_aad",
    "seal",
    "unseal",
]

#: Length of the key-encryption key: AES-256.
KEK_BYTES = 32

#: The GCM nonce length (96 bits, the length GCM is designed for).
NONCE_BYTES = 12

#: The GCM authentication tag length.
TAG_BYTES = 16

#: The version byte that starts every blob this module writes.
SEALED_VERSION = 1

_VERSION_PREFIX = bytes([SEALED_VERSION])
_DEVICE_KEY_DOMAIN = b"ironhub/device-key/v1"
_OPERATOR_SECRET_DOMAIN = b"ironhub/operator-secret/v1"
_ENROLLMENT_KEY_DOMAIN = b"ironhub/enrollment-key/v1"


def generate_kek() -> bytes:
    """A new random key-encryption key.

    Returns:
        :data:`KEK_BYTES` random bytes from the operating system's CSPRNG.
    """
    return secrets.token_bytes(KEK_BYTES)


def device_key_aad(device_id: str, slot: str) -> bytes:
    """The associated data that binds a sealed key to one device and one key slot.

    Each part is length-prefixed, so no two ``(device_id, slot)`` pairs share an encoding
    whatever characters they contain, and a domain label keeps these blobs apart from any
    other use of the KEK.

    Args:
        device_id: the device id.
        slot: the key slot, ``"primary"`` or ``"secondary"``.

    Returns:
        The associated data to pass as ``aad`` to :func:`seal` and :func:`unseal`.
    """
    return _aad(_DEVICE_KEY_DOMAIN, device_id, slot)


def operator_secret_aad(name: str, slot: str) -> bytes:
    """The associated data that binds a sealed operator secret to one account and one use.

    Same encoding as :func:`device_key_aad` under its own domain label, so a device key blob
    can never be passed off as an operator's secret or the other way round.

    Args:
        name: the operator's account name.
        slot: what the secret is, e.g. ``"totp"``.

    Returns:
        The associated data to pass as ``aad`` to :func:`seal` and :func:`unseal`.
    """
    return _aad(_OPERATOR_SECRET_DOMAIN, name, slot)


def enrollment_key_aad(enrollment_id: str, *, group: bool, slot: str) -> bytes:
    """The associated data that binds a sealed enrollment key to one enrollment and slot.

    Individual enrollments and groups are separate namespaces, so the owner is prefixed with
    ``i:`` or ``g:``; the domain label keeps these blobs apart from device keys.

    Args:
        enrollment_id: the registration id (individual) or group id.
        group: whether it is an enrollment group.
        slot: ``"primary"`` or ``"secondary"``.

    Returns:
        The associated data to pass as ``aad`` to :func:`seal` and :func:`unseal`.
    """
    owner = ("g:" if group else "i:") + enrollment_id
    return _aad(_ENROLLMENT_KEY_DOMAIN, owner, slot)


def _aad(domain: bytes, owner: str, slot: str) -> bytes:
    parts = (domain, owner.encode("utf-8"), slot.encode("utf-8"))
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def _aead(kek: bytes) -> AESGCM:
    if len(kek) != KEK_BYTES:
        raise SealingError(f"the key-encryption key must be {KEK_BYTES} bytes")
    return AESGCM(kek)


def seal(kek: bytes, plaintext: bytes, *, aad: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` under ``kek``, bound to ``aad``.

    Args:
        kek: the key-encryption key (:data:`KEK_BYTES` bytes).
        plaintext: the secret, e.g. a raw device key.
        aad: what the blob is bound to, e.g. :func:`device_key_aad`.

    Returns:
        The sealed blob (version 1 format, see the module docstring).

    Raises:
        SealingError: the KEK has the wrong length.
    """
    aead = _aead(kek)
    nonce = secrets.token_bytes(NONCE_BYTES)
    return _VERSION_PREFIX + nonce + aead.encrypt(nonce, plaintext, _VERSION_PREFIX + aad)


def unseal(kek: bytes, blob: bytes, *, aad: bytes) -> bytes:
    """Open a blob made by :func:`seal`.

    Args:
        kek: the key-encryption key.
        blob: the sealed blob.
        aad: the same associated data given to :func:`seal`.

    Returns:
        The plaintext.

    Raises:
        SealingError: the KEK has the wrong length, the blob is too short or of an unknown
            version, or authentication fails (wrong KEK, wrong ``aad``, or tampering). The
            message never says which secret was wrong.
    """
    aead = _aead(kek)
    if len(blob) < 1 + NONCE_BYTES + TAG_BYTES:
        raise SealingError("sealed blob is too short")
    if blob[0] != SEALED_VERSION:
        raise SealingError("sealed blob has an unknown format version")
    nonce = blob[1 : 1 + NONCE_BYTES]
    try:
        return aead.decrypt(nonce, blob[1 + NONCE_BYTES :], _VERSION_PREFIX + aad)
    except InvalidTag:
        raise SealingError(
            "cannot unseal: wrong key-encryption key, wrong binding, or tampered blob"
        ) from None
