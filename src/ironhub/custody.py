"""Key custody: where the hub's CA keys and key-encryption key live, and how they are opened.

This module is the one seam between the hub and its long-lived secrets: the hub CA key (it
signs the TLS server certificate), the device CA key (it signs device certificates and the
CRL) and the key-encryption key (KEK) that seals device keys at rest
(:mod:`ironhub.registry.sealing`). :func:`ensure_key_material` creates them on first start;
:func:`open_key_material` opens them for a running hub and returns a :class:`KeyMaterial`.

Backends (``[keys] backend``, :class:`~ironhub.config.KeysConfig`; ADR 0012)::

    file (default)        all in the data directory; private files 0600
        ca.key            hub CA private key (PKCS#8 PEM)     ca.pem          its certificate
        device-ca.key     device CA private key               device-ca.pem   its certificate
        kek.key           the KEK, 32 raw bytes

    pkcs11                in the token (never leave it)       in the data directory
        ironhub-ca        EC P-256 key pair; private half     ca.pem
                          sensitive, non-extractable, sign
        ironhub-device-ca the same                            device-ca.pem
        ironhub-kek       AES-256, sensitive,                 kek.wrapped (0600): the KEK,
                          non-extractable, encrypt/decrypt    AES-GCM-encrypted by ironhub-kek

Rules, each of which makes the hub refuse to start (:class:`~ironhub.errors.ConfigError`)
rather than run on a key it was not given (issue 5; SECURITY-TESTS.md §3.7 item 32):

* Nothing missing is ever replaced by a new key. Keys are created only for a new data
  directory, and the device CA for a directory that predates it; a certificate whose key is
  gone (a deleted file, a deleted token object, the wrong token) is refused.
* One backend per data directory: private key files next to ``backend = "pkcs11"``, or
  ``kek.wrapped`` next to ``backend = "file"``, are ambiguous and refused.
* Every key is checked at open: the files are 0600, each certificate matches its key, the
  token keys have the attributes above, a test signature verifies, and the KEK unwraps.
* At run time a token failure fails closed: :class:`TokenSigningKey` raises
  :class:`~ironhub.errors.TrustError`; there is no fallback key.

Theory of operation of the PKCS#11 link. PKCS#11 logs in per application, not per session:
a second ``C_Login`` fails with ``CKR_USER_ALREADY_LOGGED_IN`` and ``C_Logout`` on any
session logs out all of them. So this process keeps one logged-in *anchor* session per
(module, token label), shared by every holder and reference-counted: :func:`open_key_material`
acquires it, :meth:`KeyMaterial.close` releases it, and the last release logs out, closes the
session and finalises the module (``C_Finalize``), so the next open re-reads the module's
configuration (SoftHSM2 enumerates its tokens only at ``C_Initialize``). Key creation opens a
second, read-write session without its own login. Every call into the token holds the link's
lock: sessions are not safe for concurrent use, and python-pkcs11 releases the GIL inside
token calls.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import pkcs11
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.mechanisms import GCMParams
from pkcs11.types import DecryptMixin, EncryptMixin, Object, Session, SignMixin, Token

from ironhub import pki
from ironhub.clock import SYSTEM_CLOCK, Clock
from ironhub.errors import ConfigError, TrustError
from ironhub.registry.sealing import KEK_BYTES, generate_kek

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateNumbers
    from cryptography.utils import Buffer

    from ironhub.config import HubConfig, KeysConfig

__all__ = [
    "CA_KEY_LABEL",
    "DEVICE_CA_COMMON_NAME",
    "DEVICE_CA_KEY_LABEL",
    "HUB_CA_COMMON_NAME",
    "KEK_KEY_LABEL",
    "CertificateSummary",
    "DataFiles",
    "KeyMaterial",
    "KeyStatus",
    "TokenSigningKey",
    "describe_key_material",
    "ensure_key_material",
    "open_key_material",
    "prepare_token",
    "read_secret_file",
    "write_public_file",
    "write_secret_file",
]

logger = logging.getLogger(__name__)

#: Labels of the token objects. Fixed, so a token serves one hub: two hubs sharing a token
#: would share their CAs.
CA_KEY_LABEL = "ironhub-ca"
DEVICE_CA_KEY_LABEL = "ironhub-device-ca"
KEK_KEY_LABEL = "ironhub-kek"

HUB_CA_COMMON_NAME = "ironhub hub CA"
DEVICE_CA_COMMON_NAME = "ironhub device CA"

#: Lifetime of the hub CA (a root is replaced rarely, as in :func:`ironhub.pki.create_ca`).
_HUB_CA_VALIDITY_DAYS = 3650

#: A CA certificate that expires within this many days is logged as a warning at open.
_EXPIRY_WARNING_DAYS = 30

# DER of the named-curve OID of P-256 (1.2.840.10045.3.1.7): the CKA_EC_PARAMS of our keys.
_P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")
_P256_POINT_BYTES = 65  # 0x04 || X || Y
_P256_SCALAR_BYTES = 32

# kek.wrapped: version || nonce || AES-256-GCM(ironhub-kek, KEK) || tag; the version byte and a
# domain label are the associated data, as in registry/sealing.py.
_WRAP_VERSION = 1
_WRAP_NONCE_BYTES = 12
_WRAP_TAG_BYTES = 16
_WRAP_AAD = bytes([_WRAP_VERSION]) + b"ironhub/kek-wrap/v1"
_WRAPPED_BYTES = 1 + _WRAP_NONCE_BYTES + KEK_BYTES + _WRAP_TAG_BYTES


# --- the data directory ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataFiles:
    """Paths inside a data directory."""

    root: Path

    @property
    def ca_key(self) -> Path:
        """The hub CA private key (file backend)."""
        return self.root / "ca.key"

    @property
    def ca_cert(self) -> Path:
        """The hub CA certificate (give it to devices and CLI users)."""
        return self.root / "ca.pem"

    @property
    def device_ca_key(self) -> Path:
        """The device CA private key (file backend)."""
        return self.root / "device-ca.key"

    @property
    def device_ca_cert(self) -> Path:
        """The device CA certificate: the issuer of device certificates made from CSRs."""
        return self.root / "device-ca.pem"

    @property
    def server_key(self) -> Path:
        """The TLS server private key."""
        return self.root / "server.key"

    @property
    def server_cert(self) -> Path:
        """The TLS server certificate chain."""
        return self.root / "server.pem"

    @property
    def kek(self) -> Path:
        """The key-encryption key (file backend)."""
        return self.root / "kek.key"

    @property
    def kek_wrapped(self) -> Path:
        """The key-encryption key encrypted by the token's AES key (pkcs11 backend)."""
        return self.root / "kek.wrapped"

    @property
    def audit_key(self) -> Path:
        """The Ed25519 key that signs audit checkpoints."""
        return self.root / "audit.key"

    @property
    def audit_public_key(self) -> Path:
        """Its public half: what `ironhub audit verify --public-key` needs."""
        return self.root / "audit.pub"

    @property
    def database(self) -> Path:
        """The SQLite database."""
        return self.root / "ironhub.db"

    def private_key_files(self) -> tuple[Path, ...]:
        """The files that hold private keys with the ``file`` backend."""
        return (self.ca_key, self.device_ca_key, self.kek)


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never world-readable, even briefly).

    Raises:
        FileExistsError: the file exists (secrets are never overwritten in place).
        OSError: it cannot be written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_public_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with a 0644 file holding ``data``.

    Raises:
        OSError: it cannot be written.
    """
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.replace(path)


def read_secret_file(path: Path) -> bytes:
    """Read a secret file that only its owner may access.

    Raises:
        ConfigError: the file is accessible by group or others, or cannot be read (missing,
            a directory, no permission). The message names the path, never the content.
    """
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path}: must not be accessible by group or others (chmod 600)")
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        return pki.parse_ca_certificate(path.read_bytes())
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    except TrustError as exc:
        raise ConfigError(f"{path}: not a usable CA certificate ({exc})") from None


def _same_public_key(a: ec.EllipticCurvePublicKey, b: object) -> bool:
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return isinstance(b, ec.EllipticCurvePublicKey) and a.public_bytes(der, spki) == b.public_bytes(
        der, spki
    )


def _now(clock: Clock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.time(), tz=dt.UTC)


# --- what a running hub holds ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """The opened CA keys and KEK of one hub process; :meth:`close` it when the hub stops.

    With the ``pkcs11`` backend the two CA keys are :class:`TokenSigningKey` objects bound to
    a logged-in token session, which :meth:`close` releases; closing twice is harmless. Usable
    as a context manager.
    """

    #: The key-encryption key (:data:`~ironhub.registry.sealing.KEK_BYTES` bytes). Kept out
    #: of ``repr`` so a logged object never shows it.
    kek: bytes = field(repr=False)
    #: Signs the TLS server certificate.
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    #: Signs device certificates and the CRL.
    device_ca_key: ec.EllipticCurvePrivateKey
    device_ca_cert: x509.Certificate
    #: ``"file"`` or ``"pkcs11"``.
    backend: str
    _lease: _Lease | None = field(default=None, repr=False, compare=False)

    def close(self) -> None:
        """Release the token session (a no-op for the ``file`` backend)."""
        if self._lease is not None:
            self._lease.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_key_material(config: HubConfig, *, clock: Clock = SYSTEM_CLOCK) -> KeyMaterial:
    """Open the CA keys and the KEK of an existing data directory; create nothing.

    Args:
        config: the hub configuration (``data_dir``, ``keys``).
        clock: wall-clock time, to warn about CA certificates near their end.

    Returns:
        The key material; the caller closes it.

    Raises:
        ConfigError: a key or certificate is missing, unreadable, exposed to group or others,
            of the wrong kind or not matching its partner; the token, its module or the PIN
            is unavailable or refused; or the data directory mixes backends. The hub must
            not start (it is not ready).
    """
    files = DataFiles(config.data_dir)
    _refuse_other_backend(files, config.keys.backend)
    if config.keys.backend == "file":
        material = _open_file_material(files)
    else:
        material = _open_token_material(files, config.keys)
    now = _now(clock)
    for what, cert in (("hub CA", material.ca_cert), ("device CA", material.device_ca_cert)):
        remaining = cert.not_valid_after_utc - now
        if remaining < dt.timedelta(days=_EXPIRY_WARNING_DAYS):
            logger.warning(
                "the %s certificate expires soon or has expired not_after=%s",
                what,
                cert.not_valid_after_utc.isoformat(),
            )
    logger.info("key material opened backend=%s data_dir=%s", material.backend, files.root)
    return material


def _refuse_other_backend(files: DataFiles, backend: str) -> None:
    if backend == "file":
        if files.kek_wrapped.exists():
            raise ConfigError(
                f"{files.kek_wrapped} exists: this data directory keeps its keys in a PKCS#11 "
                'token; set keys.backend = "pkcs11" (the file backend would not use them)'
            )
        return
    stray = [p.name for p in files.private_key_files() if p.exists()]
    if stray:
        raise ConfigError(
            f"{files.root}: private key files ({', '.join(stray)}) exist but keys.backend is "
            "pkcs11; refusing to guess which keys are meant (move them out of the data "
            "directory; keys are not migrated into a token automatically)"
        )


def _open_file_material(files: DataFiles) -> KeyMaterial:
    missing = [
        p.name
        for p in (files.ca_key, files.ca_cert, files.device_ca_key, files.device_ca_cert, files.kek)
        if not p.exists()
    ]
    if missing:
        raise ConfigError(f"{files.root}: key material missing: {', '.join(missing)}")
    kek = read_secret_file(files.kek)
    if len(kek) != KEK_BYTES:
        raise ConfigError(f"{files.kek}: not a {KEK_BYTES}-byte key")
    ca_key, ca_cert = _load_file_pair(files.ca_key, files.ca_cert)
    device_key, device_cert = _load_file_pair(files.device_ca_key, files.device_ca_cert)
    return KeyMaterial(
        kek=kek,
        ca_key=ca_key,
        ca_cert=ca_cert,
        device_ca_key=device_key,
        device_ca_cert=device_cert,
        backend="file",
    )


def _load_file_pair(
    key_path: Path, cert_path: Path
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = pki.load_private_key_pem(read_secret_file(key_path))
    except TrustError as exc:
        raise ConfigError(f"{key_path}: {exc}") from None
    cert = _read_certificate(cert_path)
    if not _same_public_key(key.public_key(), cert.public_key()):
        raise ConfigError(f"{key_path} does not belong to {cert_path}")
    return key, cert


# --- the PKCS#11 link --------------------------------------------------------------------------


# Keyed per process so that a PIN never sits in memory longer than the login needs it; only
# its MAC is kept, to check a later opener presents the same PIN (see _acquire_link).
_PIN_MAC_KEY = secrets.token_bytes(32)

_REGISTRY_LOCK = threading.Lock()
_LINKS: dict[tuple[str, str], _TokenLink] = {}


class _TokenLink:
    """One logged-in session on one token, shared by every holder in this process."""

    def __init__(
        self, module: str, label: str, token: Token, session: Session, pin_mac: bytes
    ) -> None:
        self.module = module
        self.label = label
        self.token = token
        self.session = session
        self.pin_mac = pin_mac
        self.holders = 0
        self.closed = False
        self.lock = threading.Lock()

    # Every method below holds self.lock for each call into the token.

    def find(self, object_class: ObjectClass, key_type: KeyType, label: str) -> Object | None:
        """The one object with this class, type and label, or ``None``.

        Raises:
            ConfigError: several objects match (ambiguous), or the token fails.
        """
        with self.lock:
            try:
                found = list(
                    self.session.get_objects(
                        {
                            Attribute.CLASS: object_class,
                            Attribute.KEY_TYPE: key_type,
                            Attribute.LABEL: label,
                        }
                    )
                )
            except PKCS11Error as exc:
                raise ConfigError(_token_failure(self.label, "search", exc)) from None
        if len(found) > 1:
            raise ConfigError(
                f"token {self.label!r}: {len(found)} objects are labelled {label!r}; "
                "refusing to guess which one is meant"
            )
        return found[0] if found else None

    def attributes(self, obj: Object, names: list[Attribute]) -> dict[Attribute, Any]:
        """Read attributes of a token object.

        Raises:
            ConfigError: the token refuses.
        """
        with self.lock:
            try:
                return dict(obj.get_attributes(names))
            except PKCS11Error as exc:
                raise ConfigError(_token_failure(self.label, "read attributes", exc)) from None

    def sign_digest(self, key: SignMixin, digest: bytes) -> bytes:
        """Raw ECDSA (``r || s``) over ``digest`` with ``CKM_ECDSA``.

        Raises:
            TrustError: the link is closed or the token fails (signing fails closed).
        """
        with self.lock:
            if self.closed:
                raise TrustError("the key custody session is closed; cannot sign")
            try:
                signature = key.sign(digest, mechanism=Mechanism.ECDSA)
            except PKCS11Error as exc:
                raise TrustError(_token_failure(self.label, "sign", exc)) from None
        if not isinstance(signature, bytes):  # pragma: no cover - python-pkcs11 returns bytes
            raise TrustError(f"token {self.label!r}: no signature returned")
        return signature

    def crypt(self, key: Object, data: bytes, nonce: bytes, *, encrypt: bool) -> bytes:
        """AES-GCM encrypt or decrypt ``data`` inside the token (``CKM_AES_GCM``).

        Raises:
            ConfigError: the token fails or (decrypting) the tag does not verify.
        """
        params = GCMParams(nonce, _WRAP_AAD, _WRAP_TAG_BYTES * 8)
        with self.lock:
            try:
                if encrypt and isinstance(key, EncryptMixin):
                    out = key.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=params)
                elif not encrypt and isinstance(key, DecryptMixin):
                    out = key.decrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=params)
                else:
                    raise ConfigError(f"token {self.label!r}: the key cannot encrypt and decrypt")
            except PKCS11Error as exc:
                raise ConfigError(
                    _token_failure(self.label, "encrypt" if encrypt else "decrypt", exc)
                ) from None
        if not isinstance(out, bytes):  # pragma: no cover - bytes in, bytes out
            raise ConfigError(f"token {self.label!r}: no output from AES-GCM")
        return out

    @contextmanager
    def writer(self) -> Iterator[Session]:
        """A read-write session for creating objects; it shares the anchor's login.

        The link's lock is held until the block ends (the lock is not re-entrant): inside
        it, use only the yielded session, never the link's other methods.

        Raises:
            ConfigError: the token refuses a read-write session.
        """
        with self.lock:
            try:
                session = self.token.open(rw=True)
            except PKCS11Error as exc:
                raise ConfigError(_token_failure(self.label, "open a session", exc)) from None
            try:
                yield session
            finally:
                # No user was logged in on this session, so closing it does not log out the
                # anchor (python-pkcs11 calls C_Logout only for sessions it logged in).
                try:
                    session.close()
                except PKCS11Error:
                    logger.warning(
                        "could not close a read-write token session label=%s", self.label
                    )


def _token_failure(label: str, action: str, exc: PKCS11Error) -> str:
    # The exception class names the PKCS#11 return value (PinIncorrect, DeviceRemoved, ...);
    # its text may quote a search template, so only the class is used.
    return f"token {label!r}: {action} failed ({type(exc).__name__})"


class _Lease:
    """One holder's claim on a :class:`_TokenLink`; releasing twice is harmless."""

    __slots__ = ("_link", "_released")

    def __init__(self, link: _TokenLink) -> None:
        self._link = link
        self._released = False

    def release(self) -> None:
        with _REGISTRY_LOCK:
            if self._released:
                return
            self._released = True
            _release_link(self._link)


def _module_path(keys: KeysConfig) -> str:
    if not keys.pkcs11_module:
        raise ConfigError('keys.pkcs11_module is required with keys.backend = "pkcs11"')
    path = Path(keys.pkcs11_module)
    if not path.is_absolute():
        # dlopen() searches the library path for a bare name: whoever controls that path
        # (LD_LIBRARY_PATH) would choose the code that holds our keys.
        raise ConfigError(f"keys.pkcs11_module: {keys.pkcs11_module!r} must be an absolute path")
    if not path.is_file():
        raise ConfigError(f"keys.pkcs11_module: {path} does not exist")
    return str(path)


def _read_pin(keys: KeysConfig) -> str:
    if keys.pkcs11_pin_file and keys.pkcs11_pin_env:
        raise ConfigError("keys.pkcs11_pin_file and keys.pkcs11_pin_env are both set; set only one")
    if keys.pkcs11_pin_file:
        raw = read_secret_file(Path(keys.pkcs11_pin_file))
        try:
            # A trailing newline is what `echo PIN > file` leaves; it is not part of the PIN.
            pin = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise ConfigError(
                f"keys.pkcs11_pin_file: {keys.pkcs11_pin_file} is not UTF-8"
            ) from None
        if not pin:
            raise ConfigError(f"keys.pkcs11_pin_file: {keys.pkcs11_pin_file} is empty")
        return pin
    if keys.pkcs11_pin_env:
        pin = os.environ.get(keys.pkcs11_pin_env, "")
        if not pin:
            raise ConfigError(
                f"keys.pkcs11_pin_env: the environment variable {keys.pkcs11_pin_env} is not "
                "set or empty"
            )
        return pin
    raise ConfigError(
        'keys.backend = "pkcs11" needs the user PIN: set keys.pkcs11_pin_file (a 0600 file) '
        "or keys.pkcs11_pin_env (the name of an environment variable)"
    )


def _acquire_link(keys: KeysConfig) -> _Lease:
    """Log in to the configured token, or join this process's existing login to it.

    Raises:
        ConfigError: the module, token label or PIN is missing or refused.
    """
    if not keys.pkcs11_token_label:
        raise ConfigError('keys.pkcs11_token_label is required with keys.backend = "pkcs11"')
    module = _module_path(keys)
    pin = _read_pin(keys)
    pin_mac = hmac.new(_PIN_MAC_KEY, pin.encode("utf-8"), hashlib.sha256).digest()
    with _REGISTRY_LOCK:
        link = _LINKS.get((module, keys.pkcs11_token_label))
        if link is None:
            link = _login(module, keys.pkcs11_token_label, pin, pin_mac)
            _LINKS[(module, keys.pkcs11_token_label)] = link
        elif not hmac.compare_digest(link.pin_mac, pin_mac):
            # The token would not check it: this process is logged in already, and a second
            # C_Login is refused whatever the PIN. So compare with the PIN that logged in.
            raise ConfigError(
                f"token {keys.pkcs11_token_label!r}: the PIN differs from the one this process "
                "logged in with"
            )
        link.holders += 1
        return _Lease(link)


def _login(module: str, label: str, pin: str, pin_mac: bytes) -> _TokenLink:
    # Called with _REGISTRY_LOCK held.
    try:
        lib = pkcs11.lib(module)
    except PKCS11Error:
        # The message holds dlerror() (file too short, missing C_GetFunctionList, ...).
        raise ConfigError(
            f"keys.pkcs11_module: {module} cannot be loaded as a PKCS#11 module"
        ) from None
    try:
        token = lib.get_token(token_label=label)
    except pkcs11.NoSuchToken:
        _finalize_if_unused(module)
        raise ConfigError(
            f"keys.pkcs11_token_label: no token labelled {label!r} in {module}"
        ) from None
    except PKCS11Error as exc:
        _finalize_if_unused(module)
        raise ConfigError(_token_failure(label, "find the token", exc)) from None
    try:
        # Read-only: the running hub only signs and decrypts. Creating keys takes a separate
        # read-write session (_TokenLink.writer).
        session = token.open(user_pin=pin)
    except (pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange):
        _finalize_if_unused(module)
        raise ConfigError(f"token {label!r}: the PIN was refused") from None
    except PKCS11Error as exc:
        _finalize_if_unused(module)
        raise ConfigError(_token_failure(label, "log in", exc)) from None
    logger.info("logged in to the PKCS#11 token label=%s module=%s", label, module)
    return _TokenLink(module, label, token, session, pin_mac)


def _release_link(link: _TokenLink) -> None:
    # Called with _REGISTRY_LOCK held.
    link.holders -= 1
    if link.holders > 0:
        return
    del _LINKS[(link.module, link.label)]
    with link.lock:
        link.closed = True
        try:
            link.session.close()
        except PKCS11Error as exc:
            logger.warning(
                "could not close the token session label=%s error=%s",
                link.label,
                type(exc).__name__,
            )
    _finalize_if_unused(link.module)


def _finalize_if_unused(module: str) -> None:
    # Called with _REGISTRY_LOCK held. C_Finalize also closes whatever a failed login left open
    # (python-pkcs11 does not close the session when C_Login fails).
    if any(m == module for m, _ in _LINKS):
        return
    try:
        pkcs11.lib(module).finalize()
    except PKCS11Error:
        logger.warning("could not finalise the PKCS#11 module module=%s", module)


@contextmanager
def _token(keys: KeysConfig) -> Iterator[_TokenLink]:
    lease = _acquire_link(keys)
    try:
        yield lease._link  # noqa: SLF001 - _Lease and _TokenLink are one unit
    finally:
        lease.release()


# --- token keys --------------------------------------------------------------------------------


class TokenSigningKey(ec.EllipticCurvePrivateKey):
    """An EC P-256 private key inside a PKCS#11 token: it signs, and does nothing else.

    ``cryptography``'s certificate and CRL builders call :meth:`sign` of such a subclass, so
    :mod:`ironhub.pki` issues with it unchanged. The data is hashed here (SHA-256) and the
    token signs the digest with ``CKM_ECDSA``: SoftHSM2 2.6 does not offer
    ``CKM_ECDSA_SHA256``, and every token offers ``CKM_ECDSA``. Each signature is verified
    with the public key before it is returned, so a faulty token cannot hand out a bad one.
    """

    __slots__ = ("_key", "_label", "_link", "_public")

    def __init__(
        self, link: _TokenLink, key: SignMixin, label: str, public: ec.EllipticCurvePublicKey
    ) -> None:
        self._link = link
        self._key = key
        self._label = label
        self._public = public

    def __repr__(self) -> str:
        return f"<TokenSigningKey label={self._label!r} token={self._link.label!r}>"

    @property
    def label(self) -> str:
        """The token object's label."""
        return self._label

    @property
    def curve(self) -> ec.EllipticCurve:
        """P-256."""
        return ec.SECP256R1()

    @property
    def key_size(self) -> int:
        """256."""
        return 256

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public key, read from the token at open."""
        return self._public

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """Sign ``data`` with ECDSA-SHA256 inside the token.

        Returns:
            The DER-encoded ECDSA signature, as ``cryptography`` keys return it.

        Raises:
            TrustError: another algorithm was asked for, the token failed or is closed, or its
                signature does not verify. Signing fails closed; nothing falls back.
        """
        if not (
            isinstance(signature_algorithm, ec.ECDSA)
            and isinstance(signature_algorithm.algorithm, hashes.SHA256)
        ):
            raise TrustError("a token CA key signs with ECDSA-SHA256 only")
        digest = hashlib.sha256(data).digest()
        raw = self._link.sign_digest(self._key, digest)
        if len(raw) != 2 * _P256_SCALAR_BYTES:
            raise TrustError(f"token key {self._label!r}: malformed signature")
        signature = encode_dss_signature(
            int.from_bytes(raw[:_P256_SCALAR_BYTES], "big"),
            int.from_bytes(raw[_P256_SCALAR_BYTES:], "big"),
        )
        try:
            self._public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise TrustError(f"token key {self._label!r}: its signature does not verify") from None
        return signature

    def exchange(
        self,
        algorithm: ec.ECDH,  # noqa: ARG002 - the abstract signature
        peer_public_key: ec.EllipticCurvePublicKey,  # noqa: ARG002
    ) -> bytes:
        """Refused: the CA keys sign only.

        Raises:
            TrustError: always.
        """
        raise TrustError("a token CA key is for signing only")

    def private_numbers(self) -> EllipticCurvePrivateNumbers:
        """Refused: the private key never leaves the token.

        Raises:
            TrustError: always.
        """
        raise TrustError("the private key is inside the token and cannot be exported")

    def private_bytes(
        self,
        encoding: serialization.Encoding,  # noqa: ARG002 - the abstract signature
        format: serialization.PrivateFormat,  # noqa: A002, ARG002 - the name cryptography uses
        encryption_algorithm: serialization.KeySerializationEncryption,  # noqa: ARG002
    ) -> bytes:
        """Refused: the private key never leaves the token.

        Raises:
            TrustError: always.
        """
        raise TrustError("the private key is inside the token and cannot be exported")

    def __copy__(self) -> TokenSigningKey:
        # A handle to the same token object: a copy is the same key.
        return self

    def __deepcopy__(self, memo: dict[Any, Any]) -> TokenSigningKey:
        return self


def _decode_ec_point(raw: bytes, label: str) -> ec.EllipticCurvePublicKey:
    # CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); some
    # modules return the bare point. Only the uncompressed P-256 form is expected.
    if len(raw) == _P256_POINT_BYTES + 2 and raw[:2] == bytes([0x04, _P256_POINT_BYTES]):
        raw = raw[2:]
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise ConfigError(f"token key {label!r}: unreadable public key") from None


def _open_signer(link: _TokenLink, label: str) -> TokenSigningKey:
    """The token's key pair ``label`` as a signer, checked before use.

    Raises:
        ConfigError: the private or public half is missing, has the wrong curve or
            attributes, or the halves do not form a pair.
    """
    private = link.find(ObjectClass.PRIVATE_KEY, KeyType.EC, label)
    public = link.find(ObjectClass.PUBLIC_KEY, KeyType.EC, label)
    if private is None or public is None:
        half = "private" if private is None else "public"
        raise ConfigError(
            f"token {link.label!r}: the {half} key {label!r} is missing; refusing to create a "
            "new key for an existing CA (restore the token, or configure the one that holds it)"
        )
    attrs = link.attributes(
        private, [Attribute.EC_PARAMS, Attribute.SIGN, Attribute.SENSITIVE, Attribute.EXTRACTABLE]
    )
    _check_private_attributes(label, attrs)
    if not isinstance(private, SignMixin):  # pragma: no cover - CKA_SIGN was checked above
        raise ConfigError(f"token key {label!r}: not a signing key")
    point = link.attributes(public, [Attribute.EC_POINT, Attribute.EC_PARAMS])
    if bytes(point[Attribute.EC_PARAMS]) != _P256_PARAMS:
        raise ConfigError(f"token key {label!r}: not a P-256 public key")
    signer = TokenSigningKey(
        link, private, label, _decode_ec_point(bytes(point[Attribute.EC_POINT]), label)
    )
    try:
        # Proves the halves are a pair and the token signs at all, before the hub starts.
        signer.sign(secrets.token_bytes(32), ec.ECDSA(hashes.SHA256()))
    except TrustError as exc:
        raise ConfigError(f"token key {label!r}: test signature failed ({exc})") from None
    return signer


def _check_private_attributes(label: str, attrs: dict[Attribute, Any]) -> None:
    if bytes(attrs[Attribute.EC_PARAMS]) != _P256_PARAMS:
        raise ConfigError(f"token key {label!r}: not a P-256 key")
    if not attrs[Attribute.SIGN]:
        raise ConfigError(f"token key {label!r}: not allowed to sign (CKA_SIGN)")
    if not attrs[Attribute.SENSITIVE] or attrs[Attribute.EXTRACTABLE]:
        # The point of the token is that the CA key never leaves it.
        raise ConfigError(
            f"token key {label!r}: must be sensitive and non-extractable "
            "(CKA_SENSITIVE true, CKA_EXTRACTABLE false)"
        )


def _open_kek_key(link: _TokenLink) -> Object:
    key = link.find(ObjectClass.SECRET_KEY, KeyType.AES, KEK_KEY_LABEL)
    if key is None:
        raise ConfigError(
            f"token {link.label!r}: the AES key {KEK_KEY_LABEL!r} is missing; kek.wrapped "
            "cannot be opened and no new key-encryption key is made (device keys sealed "
            "under the old one would be lost)"
        )
    attrs = link.attributes(
        key,
        [
            Attribute.VALUE_LEN,
            Attribute.ENCRYPT,
            Attribute.DECRYPT,
            Attribute.SENSITIVE,
            Attribute.EXTRACTABLE,
        ],
    )
    if attrs[Attribute.VALUE_LEN] != 32:
        raise ConfigError(f"token key {KEK_KEY_LABEL!r}: not an AES-256 key")
    if not (attrs[Attribute.ENCRYPT] and attrs[Attribute.DECRYPT]):
        raise ConfigError(f"token key {KEK_KEY_LABEL!r}: not allowed to encrypt and decrypt")
    if not attrs[Attribute.SENSITIVE] or attrs[Attribute.EXTRACTABLE]:
        raise ConfigError(
            f"token key {KEK_KEY_LABEL!r}: must be sensitive and non-extractable "
            "(CKA_SENSITIVE true, CKA_EXTRACTABLE false)"
        )
    return key


def _wrap_kek(link: _TokenLink, kek: bytes) -> bytes:
    # One encryption per data directory, with a random 96-bit nonce: no nonce reuse concern.
    nonce = secrets.token_bytes(_WRAP_NONCE_BYTES)
    sealed = link.crypt(_open_kek_key(link), kek, nonce, encrypt=True)
    return bytes([_WRAP_VERSION]) + nonce + sealed


def _unwrap_kek(link: _TokenLink, path: Path) -> bytes:
    blob = read_secret_file(path)
    if len(blob) != _WRAPPED_BYTES or blob[0] != _WRAP_VERSION:
        raise ConfigError(f"{path}: not a wrapped key-encryption key (format version 1)")
    key = _open_kek_key(link)
    try:
        kek = link.crypt(
            key, blob[1 + _WRAP_NONCE_BYTES :], blob[1 : 1 + _WRAP_NONCE_BYTES], encrypt=False
        )
    except ConfigError:
        raise ConfigError(
            f"{path}: cannot be opened with the token key {KEK_KEY_LABEL!r} (another token, a "
            "replaced key, or a tampered file)"
        ) from None
    if len(kek) != KEK_BYTES:  # pragma: no cover - the blob length fixes the plaintext's
        raise ConfigError(f"{path}: does not hold a {KEK_BYTES}-byte key")
    return kek


def _open_token_material(files: DataFiles, keys: KeysConfig) -> KeyMaterial:
    missing = [
        p.name for p in (files.ca_cert, files.device_ca_cert, files.kek_wrapped) if not p.exists()
    ]
    if missing:
        raise ConfigError(f"{files.root}: key material missing: {', '.join(missing)}")
    ca_cert = _read_certificate(files.ca_cert)
    device_cert = _read_certificate(files.device_ca_cert)
    lease = _acquire_link(keys)
    try:
        link = lease._link  # noqa: SLF001 - _Lease and _TokenLink are one unit
        ca_key = _open_signer(link, CA_KEY_LABEL)
        device_key = _open_signer(link, DEVICE_CA_KEY_LABEL)
        for signer, cert, path in (
            (ca_key, ca_cert, files.ca_cert),
            (device_key, device_cert, files.device_ca_cert),
        ):
            if not _same_public_key(signer.public_key(), cert.public_key()):
                raise ConfigError(
                    f"{path} does not belong to the token key {signer.label!r} (another token, "
                    "or a replaced key)"
                )
        kek = _unwrap_kek(link, files.kek_wrapped)
    except BaseException:
        lease.release()
        raise
    return KeyMaterial(
        kek=kek,
        ca_key=ca_key,
        ca_cert=ca_cert,
        device_ca_key=device_key,
        device_ca_cert=device_cert,
        backend="pkcs11",
        _lease=lease,
    )


# --- creation ----------------------------------------------------------------------------------


def _token_key_artifacts(files: DataFiles) -> tuple[tuple[str, Path], ...]:
    """Each token key with the data-directory file that shows it is already in use."""
    return (
        (CA_KEY_LABEL, files.ca_cert),
        (DEVICE_CA_KEY_LABEL, files.device_ca_cert),
        (KEK_KEY_LABEL, files.kek_wrapped),
    )


def _present_token_keys(link: _TokenLink) -> dict[str, bool]:
    return {
        CA_KEY_LABEL: link.find(ObjectClass.PRIVATE_KEY, KeyType.EC, CA_KEY_LABEL) is not None,
        DEVICE_CA_KEY_LABEL: link.find(ObjectClass.PRIVATE_KEY, KeyType.EC, DEVICE_CA_KEY_LABEL)
        is not None,
        KEK_KEY_LABEL: link.find(ObjectClass.SECRET_KEY, KeyType.AES, KEK_KEY_LABEL) is not None,
    }


def _ensure_token_keys(link: _TokenLink, files: DataFiles) -> tuple[str, ...]:
    """Create the token keys that are absent and not yet used by the data directory.

    A key that is absent although its file exists (``ca.pem`` for ``ironhub-ca``, ...) was
    lost: that is refused, never papered over with a new key. A key that exists is kept, so
    keys made by ``ironhub keys init-token`` before the first start are the ones used.

    Returns:
        The labels created.

    Raises:
        ConfigError: a key in use is missing, or the token refuses to create one.
    """
    present = _present_token_keys(link)
    created: list[str] = []
    for label, artifact in _token_key_artifacts(files):
        if present[label]:
            continue
        if artifact.exists():
            raise ConfigError(
                f"token {link.label!r}: the key {label!r} is missing but {artifact.name} exists; "
                "refusing to create a new key for it (restore the token, or configure the one "
                "that holds it)"
            )
        _generate_token_key(link, label)
        created.append(label)
        logger.info("created a token key label=%s token=%s", label, link.label)
    return tuple(created)


def _generate_token_key(link: _TokenLink, label: str) -> None:
    with link.writer() as session:
        try:
            if label == KEK_KEY_LABEL:
                session.generate_key(
                    KeyType.AES,
                    256,
                    label=label,
                    store=True,
                    capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                    template={
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.PRIVATE: True,
                    },
                )
            else:
                session.generate_keypair(
                    KeyType.EC,
                    label=label,
                    store=True,
                    capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                    public_template={Attribute.EC_PARAMS: _P256_PARAMS, Attribute.PRIVATE: False},
                    private_template={
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.PRIVATE: True,
                        Attribute.DERIVE: False,
                    },
                )
        except PKCS11Error as exc:
            raise ConfigError(_token_failure(link.label, f"create {label!r}", exc)) from None


def ensure_key_material(config: HubConfig, *, clock: Clock = SYSTEM_CLOCK) -> bool:
    """Create the CA keys, their certificates and the KEK on first start.

    For a data directory that predates the device CA, the device CA is created too (as
    ``server._ensure_audit_key`` does for the audit key). Nothing that is missing from a
    directory in use is recreated: see the module docstring.

    Args:
        config: the hub configuration (``data_dir``, ``keys``, ``provisioning``).
        clock: the issuing time of new CA certificates.

    Returns:
        ``True`` if the directory was new (the hub CA and KEK were created now).

    Raises:
        ConfigError: the directory is half-made, mixes backends, or a key in use is missing;
            the token is unavailable; or a file cannot be written.
    """
    files = DataFiles(config.data_dir)
    try:
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _refuse_other_backend(files, config.keys.backend)
        if config.keys.backend == "file":
            return _ensure_file_material(files, config, _now(clock))
        return _ensure_token_material(files, config, _now(clock))
    except OSError as exc:
        raise ConfigError(
            f"{files.root}: cannot create key material ({exc.strerror or exc})"
        ) from None


def _new_or_complete(files: DataFiles, core: tuple[Path, ...]) -> bool:
    present = [p.exists() for p in core]
    if not any(present):
        if files.database.exists():
            raise ConfigError(
                f"{files.root}: a database exists but the CA and key-encryption key are "
                "missing; refusing to create new keys for existing devices"
            )
        return True
    if not all(present):
        missing = ", ".join(p.name for p, ok in zip(core, present, strict=True) if not ok)
        raise ConfigError(f"{files.root}: incomplete data directory, missing {missing}")
    return False


def _ensure_file_material(files: DataFiles, config: HubConfig, now: dt.datetime) -> bool:
    created = _new_or_complete(files, (files.ca_key, files.ca_cert, files.kek))
    if created:
        ca_key, ca_cert = pki.create_ca(HUB_CA_COMMON_NAME, now=now)
        write_secret_file(files.ca_key, pki.private_key_pem(ca_key))
        write_public_file(files.ca_cert, pki.certificate_pem(ca_cert))
        write_secret_file(files.kek, generate_kek())
        logger.info("created hub CA and key-encryption key data_dir=%s", files.root)
    if not _device_ca_needed(files, key_path=files.device_ca_key):
        return created
    key, cert = pki.create_ca(
        DEVICE_CA_COMMON_NAME, now=now, validity_days=config.provisioning.device_ca_validity_days
    )
    write_secret_file(files.device_ca_key, pki.private_key_pem(key))
    write_public_file(files.device_ca_cert, pki.certificate_pem(cert))
    logger.info("created the device CA data_dir=%s", files.root)
    return created


def _device_ca_needed(files: DataFiles, *, key_path: Path | None) -> bool:
    """Whether the device CA is still to be made; refuse a half of one.

    Raises:
        ConfigError: the certificate exists without its key file, or the other way round.
    """
    cert_exists = files.device_ca_cert.exists()
    key_exists = key_path is not None and key_path.exists()
    if cert_exists and key_path is not None and not key_exists:
        raise ConfigError(
            f"{key_path} is missing but {files.device_ca_cert.name} exists; refusing to create "
            "a new device CA key (the device certificates it issued would no longer chain)"
        )
    if key_exists and not cert_exists:
        raise ConfigError(
            f"{files.device_ca_cert} is missing but {key_path} exists; restore the "
            "certificate (or, if this device CA never issued a certificate, remove the key to "
            "have a new device CA made)"
        )
    return not cert_exists


def _ensure_token_material(files: DataFiles, config: HubConfig, now: dt.datetime) -> bool:
    created = _new_or_complete(files, (files.ca_cert, files.kek_wrapped))
    with _token(config.keys) as link:
        _ensure_token_keys(link, files)
        if created:
            ca_cert = pki.create_ca_certificate(
                _open_signer(link, CA_KEY_LABEL),
                HUB_CA_COMMON_NAME,
                now=now,
                validity_days=_HUB_CA_VALIDITY_DAYS,
            )
            write_secret_file(files.kek_wrapped, _wrap_kek(link, generate_kek()))
            write_public_file(files.ca_cert, pki.certificate_pem(ca_cert))
            logger.info(
                "created hub CA and key-encryption key in the token data_dir=%s", files.root
            )
        if _device_ca_needed(files, key_path=None):
            cert = pki.create_ca_certificate(
                _open_signer(link, DEVICE_CA_KEY_LABEL),
                DEVICE_CA_COMMON_NAME,
                now=now,
                validity_days=config.provisioning.device_ca_validity_days,
            )
            write_public_file(files.device_ca_cert, pki.certificate_pem(cert))
            logger.info("created the device CA in the token data_dir=%s", files.root)
    return created


def prepare_token(config: HubConfig) -> tuple[str, ...]:
    """Create the token keys a new data directory will use (``ironhub keys init-token``).

    The data directory itself is not touched; the first start certifies the keys. Keys
    already in the token are kept.

    Returns:
        The labels created now (empty if all were present).

    Raises:
        ConfigError: the backend is not ``pkcs11``, the token is unavailable, or a key that
            the data directory already uses is missing from the token.
    """
    if config.keys.backend != "pkcs11":
        raise ConfigError('keys.backend is not "pkcs11"; there is no token to prepare')
    files = DataFiles(config.data_dir)
    _refuse_other_backend(files, "pkcs11")
    with _token(config.keys) as link:
        return _ensure_token_keys(link, files)


# --- status (for `ironhub keys status`) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    """What an operator needs to know of a CA certificate."""

    subject: str
    not_after: dt.datetime
    sha256_fingerprint: str
    expired: bool


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """The custody state of a data directory; never holds a secret."""

    backend: str
    data_dir: Path
    #: File name and whether it exists, for every key-material file of either backend.
    files: tuple[tuple[str, bool], ...]
    hub_ca: CertificateSummary | None
    device_ca: CertificateSummary | None
    token_label: str | None
    #: Token key label and whether it exists; ``None`` if the token could not be read.
    token_keys: tuple[tuple[str, bool], ...] | None
    #: Whether :func:`open_key_material` succeeds: the hub could start on these keys.
    ready: bool
    problem: str | None


def _summary(path: Path, now: dt.datetime) -> CertificateSummary | None:
    try:
        cert = _read_certificate(path)
    except ConfigError:
        return None
    return CertificateSummary(
        subject=cert.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        sha256_fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        expired=cert.not_valid_after_utc <= now,
    )


def describe_key_material(config: HubConfig, *, clock: Clock = SYSTEM_CLOCK) -> KeyStatus:
    """Report which keys exist and whether they open, without creating or showing anything secret.

    Returns:
        The status; problems are reported in it, not raised.
    """
    files = DataFiles(config.data_dir)
    now = _now(clock)
    names = (
        files.ca_cert,
        files.device_ca_cert,
        files.ca_key,
        files.device_ca_key,
        files.kek,
        files.kek_wrapped,
    )
    token_keys: tuple[tuple[str, bool], ...] | None = None
    if config.keys.backend == "pkcs11":
        try:
            with _token(config.keys) as link:
                token_keys = tuple(_present_token_keys(link).items())
        except ConfigError:
            token_keys = None
    problem: str | None = None
    try:
        open_key_material(config, clock=clock).close()
    except ConfigError as exc:
        problem = str(exc)
    return KeyStatus(
        backend=config.keys.backend,
        data_dir=files.root,
        files=tuple((p.name, p.exists()) for p in names),
        hub_ca=_summary(files.ca_cert, now),
        device_ca=_summary(files.device_ca_cert, now),
        token_label=config.keys.pkcs11_token_label if config.keys.backend == "pkcs11" else None,
        token_keys=token_keys,
        ready=problem is None,
        problem=problem,
    )
