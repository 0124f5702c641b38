"""Sealing device keys at rest: round trips, bindings, tampering and the blob format."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ironhub.errors import SealingError
from ironhub.registry import sealing
from ironhub.registry.sealing import (
    KEK_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    device_key_aad,
    enrollment_key_aad,
    generate_kek,
    operator_secret_aad,
    seal,
    unseal,
)

KEK = bytes(range(32))
DEVICE_KEY = b"device-one-secret-key-32-bytes!!"
AAD = device_key_aad("dev1", "primary")


def test_round_trip() -> None:
    blob = seal(KEK, DEVICE_KEY, aad=AAD)
    assert unseal(KEK, blob, aad=AAD) == DEVICE_KEY


def test_empty_plaintext_round_trip() -> None:
    assert unseal(KEK, seal(KEK, b"", aad=b""), aad=b"") == b""


def test_blob_format() -> None:
    blob = seal(KEK, DEVICE_KEY, aad=AAD)
    assert blob[0] == 1
    assert len(blob) == 1 + NONCE_BYTES + len(DEVICE_KEY) + TAG_BYTES
    assert DEVICE_KEY not in blob
    # Version 1 is AES-256-GCM over (version byte || aad), readable with the primitive alone.
    nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    assert AESGCM(KEK).decrypt(nonce, body, b"\x01" + AAD) == DEVICE_KEY


def test_nonces_are_fresh() -> None:
    blobs = {seal(KEK, DEVICE_KEY, aad=AAD) for _ in range(50)}
    assert len(blobs) == 50
    assert len({blob[1 : 1 + NONCE_BYTES] for blob in blobs}) == 50


def test_generate_kek() -> None:
    first, second = generate_kek(), generate_kek()
    assert len(first) == KEK_BYTES == 32
    assert first != second
    assert unseal(first, seal(first, b"x", aad=b"a"), aad=b"a") == b"x"


def test_wrong_kek() -> None:
    blob = seal(KEK, DEVICE_KEY, aad=AAD)
    with pytest.raises(SealingError, match="cannot unseal"):
        unseal(bytes(32), blob, aad=AAD)


def test_swapping_blobs_between_devices_fails() -> None:
    # An attacker with write access to the database copies dev2's sealed key into dev1's row.
    blob_for_dev2 = seal(KEK, b"dev2-key", aad=device_key_aad("dev2", "primary"))
    with pytest.raises(SealingError, match="cannot unseal"):
        unseal(KEK, blob_for_dev2, aad=device_key_aad("dev1", "primary"))


def test_swapping_slots_fails() -> None:
    secondary = seal(KEK, b"secondary-key", aad=device_key_aad("dev1", "secondary"))
    with pytest.raises(SealingError):
        unseal(KEK, secondary, aad=device_key_aad("dev1", "primary"))


def test_aad_encoding_is_unambiguous() -> None:
    # Plain concatenation would make ("dev1p", "rimary") equal ("dev1", "primary").
    assert device_key_aad("dev1p", "rimary") != device_key_aad("dev1", "primary")
    assert device_key_aad("a", "") != device_key_aad("", "a")
    assert device_key_aad("dev1", "primary") != b"dev1primary"
    assert device_key_aad("dev1", "primary").startswith(b"\x00\x00\x00\x15ironhub/device-key/v1")


@pytest.mark.parametrize("position", [0, 1, 5, 13, 20, -1])
def test_tampering_any_byte_fails(position: int) -> None:
    blob = bytearray(seal(KEK, DEVICE_KEY, aad=AAD))
    blob[position] ^= 0x01
    with pytest.raises(SealingError):
        unseal(KEK, bytes(blob), aad=AAD)


def test_truncated_and_extended_blobs_fail() -> None:
    blob = seal(KEK, DEVICE_KEY, aad=AAD)
    for bad in (blob[:-1], blob + b"\x00", blob[: 1 + NONCE_BYTES + TAG_BYTES]):
        with pytest.raises(SealingError):
            unseal(KEK, bad, aad=AAD)


@pytest.mark.parametrize("length", [0, 1, NONCE_BYTES, NONCE_BYTES + TAG_BYTES])
def test_short_blobs(length: int) -> None:
    with pytest.raises(SealingError, match="too short"):
        unseal(KEK, b"\x01" * length, aad=AAD)


def test_unknown_version() -> None:
    blob = seal(KEK, DEVICE_KEY, aad=AAD)
    for version in (0, 2, 255):
        with pytest.raises(SealingError, match="unknown format version"):
            unseal(KEK, bytes([version]) + blob[1:], aad=AAD)


def test_version_byte_is_authenticated() -> None:
    # A blob sealed under a hypothetical version 2 with the same layout must not open as v1.
    nonce = bytes(NONCE_BYTES)
    forged = b"\x01" + nonce + AESGCM(KEK).encrypt(nonce, DEVICE_KEY, b"\x02" + AAD)
    with pytest.raises(SealingError):
        unseal(KEK, forged, aad=AAD)


@pytest.mark.parametrize("kek", [b"", bytes(16), bytes(31), bytes(33), bytes(64)])
def test_wrong_kek_length(kek: bytes) -> None:
    with pytest.raises(SealingError, match="32 bytes"):
        seal(kek, DEVICE_KEY, aad=AAD)
    with pytest.raises(SealingError, match="32 bytes"):
        unseal(kek, seal(KEK, DEVICE_KEY, aad=AAD), aad=AAD)


def test_errors_never_contain_secrets() -> None:
    blob = seal(KEK, DEVICE_KEY, aad=AAD)
    with pytest.raises(SealingError) as excinfo:
        unseal(bytes(32), blob, aad=AAD)
    text = str(excinfo.value)
    assert DEVICE_KEY.decode() not in text
    assert KEK.hex() not in text
    assert excinfo.value.__cause__ is None


def test_public_surface() -> None:
    for name in sealing.__all__:
        assert hasattr(sealing, name), name


def test_operator_secrets_are_bound_to_their_account_and_apart_from_device_keys() -> None:
    aad = operator_secret_aad("alice", "totp")
    blob = seal(KEK, b"secret", aad=aad)
    assert unseal(KEK, blob, aad=aad) == b"secret"
    for other in (
        operator_secret_aad("bob", "totp"),
        operator_secret_aad("alice", "other"),
        device_key_aad("alice", "totp"),
    ):
        assert other != aad
        with pytest.raises(SealingError):
            unseal(KEK, blob, aad=other)


def test_enrollment_keys_are_bound_to_their_enrollment_kind_and_slot() -> None:
    aad = enrollment_key_aad("factory-a", group=True, slot="primary")
    blob = seal(KEK, DEVICE_KEY, aad=aad)
    assert unseal(KEK, blob, aad=aad) == DEVICE_KEY
    for other in (
        enrollment_key_aad("factory-a", group=False, slot="primary"),
        enrollment_key_aad("factory-a", group=True, slot="secondary"),
        enrollment_key_aad("factory-b", group=True, slot="primary"),
        device_key_aad("factory-a", "primary"),
    ):
        with pytest.raises(SealingError):
            unseal(KEK, blob, aad=other)
