"""Registry service: the rules for device and module identities, over a storage backend.

Identity keys name a device (``"d"``) or one of its modules (``"d/m"``,
:func:`ironhub.codec.azure.split_identity`). A module is stored as an ordinary
:class:`~ironhub.storage.interfaces.DeviceRecord` whose ``device_id`` is its identity key, with
credentials of its own, created only under an existing device and deleted with it. Every method
that takes an ``identity`` accepts both kinds; ``create_device`` creates devices only and
``create_module`` modules only.

Credentials by authentication kind (azure-iot-mqtt.md §2.3, §2.5):

* ``sas``: two 32-byte random keys (primary, secondary), shown once in base64 at creation or
  rotation and stored only sealed under the key-encryption key
  (:mod:`ironhub.registry.sealing`), bound to the identity key (``d`` or ``d/m``) and slot as
  associated data (:func:`~ironhub.registry.sealing.device_key_aad`) so a sealed key cannot be
  moved to another device, module or slot.
* ``x509-thumbprint``: one or two self-signed certificates, stored with their SHA-256
  thumbprints (primary, secondary).
* ``x509-ca``: no secret at all; the device proves itself with a certificate chaining to a
  registered CA whose CN is the device id.

Every change that may invalidate a live connection (disable, delete, key rotation) is told to
the listeners after it is stored, so the hub can drop the sessions it no longer trusts. A module
lives only as long as its device and is usable only while its device is enabled, so disabling,
enabling or deleting a device is told for the device and for each of its modules, one
:class:`DeviceChange` per identity.
Read-modify-write operations use the record's ``version`` (optimistic concurrency) and retry
a few times when another writer got in between.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ironhub.codec.azure import split_identity, validate_identity
from ironhub.errors import ConflictError, NotFoundError, TrustError, ValidationError
from ironhub.pki import (
    certificate_pem,
    normalise_thumbprint,
    parse_ca_certificate,
    parse_self_signed_device_certificate,
    thumbprint_sha256,
)
from ironhub.registry.sealing import device_key_aad, seal, unseal
from ironhub.registry.twin import Twin
from ironhub.storage.interfaces import AuthKind, CARecord, DeviceRecord, DeviceState

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from cryptography import x509

    from ironhub.clock import Clock
    from ironhub.storage.interfaces import Storage

__all__ = [
    "KEY_SLOTS",
    "CreatedDevice",
    "DeviceChange",
    "KeySlot",
    "Registry",
    "validate_device_id",
]

logger = logging.getLogger(__name__)

KeySlot = str  # "primary" | "secondary"

#: The two SAS key slots, primary first.
KEY_SLOTS: Final = ("primary", "secondary")
#: Bytes of entropy in a device key (Azure uses 32-byte keys as well).
KEY_BYTES: Final = 32
#: Attempts of a read-modify-write before a concurrent change is reported as a conflict.
_UPDATE_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class CreatedDevice:
    """A new device or module and, for SAS, its two keys (base64), shown once."""

    record: DeviceRecord
    primary_key: str | None = None
    secondary_key: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """Told to listeners after an identity was disabled, deleted, or had credentials changed.

    The hub listens and drops live connections that the change invalidates. ``device_id`` is
    the identity key: ``d`` for a device, ``d/m`` for a module. A change of a device's state
    or existence is told once for the device and once for each of its modules.
    """

    device_id: str
    #: "disabled" | "deleted" | "key-rotated" | "enabled" | "quarantined" | "credentials-changed"
    reason: str
    #: For ``key-rotated``: the slot that changed. Connections authenticated with the other
    #: key stay valid (rotation without downtime).
    slot: KeySlot | None = None
    #: For ``certificate-revoked``: the revoked certificate's serial (upper hex).
    serial: str | None = None


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is a valid device identity.

    The rule lives in :func:`ironhub.codec.azure.validate_identity`.

    Raises:
        ValidationError: the id breaks the identity rule.
    """
    validate_identity(device_id)
    return device_id


def _encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def _parse_device_certificate(pem: str) -> x509.Certificate:
    """Parse one thumbprint-device certificate.

    Raises:
        ValidationError: the certificate is refused (the reason from :mod:`ironhub.pki`).
    """
    try:
        return parse_self_signed_device_certificate(pem)
    except TrustError as exc:
        raise ValidationError(f"device certificate refused: {exc}") from None


class Registry:
    """Device and module identities, and CAs. All methods raise ``StorageError`` when storage fails.

    Args:
        storage: an open storage backend.
        kek: the key-encryption key that seals SAS keys at rest.
        clock: wall-clock time for ``created_at`` / ``updated_at``.
    """

    def __init__(self, storage: Storage, kek: bytes, clock: Clock) -> None:
        self._storage = storage
        self._kek = kek
        self._clock = clock
        self._listeners: list[Callable[[DeviceChange], None]] = []
        self._trust_listeners: list[Callable[[], None]] = []

    def add_listener(self, callback: Callable[[DeviceChange], None]) -> None:
        """Call ``callback`` after every change that may invalidate a live connection.

        A listener that raises is logged; the change stands and the other listeners still run.
        """
        self._listeners.append(callback)

    def add_trust_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after the set of X.509 trust anchors changed.

        That is: a CA was added or removed, or a thumbprint device (whose certificate the TLS
        layer must accept) was created or deleted.
        """
        self._trust_listeners.append(callback)

    def _notify_trust(self) -> None:
        for callback in tuple(self._trust_listeners):
            try:
                callback()
            except Exception:  # listener boundary: a failing consumer must not undo the change
                logger.exception("registry trust listener failed")

    def _notify(self, change: DeviceChange) -> None:
        logger.info(
            "device changed: device_id=%s reason=%s slot=%s",
            change.device_id,
            change.reason,
            change.slot,
        )
        for callback in tuple(self._listeners):
            try:
                callback(change)
            except Exception:  # listener boundary: a failing consumer must not undo the change
                logger.exception(
                    "registry listener failed: device_id=%s reason=%s",
                    change.device_id,
                    change.reason,
                )

    def _seal_key(self, device_id: str, slot: KeySlot, key: bytes) -> bytes:
        return seal(self._kek, key, aad=device_key_aad(device_id, slot))

    # --- devices and modules --------------------------------------------------------------
    async def create_device(
        self,
        device_id: str,
        auth_kind: AuthKind = AuthKind.SAS,
        *,
        certificates_pem: Sequence[str] = (),
    ) -> CreatedDevice:
        """Create a device with fresh credentials.

        Args:
            device_id: the new device's id (a device id only: ``/`` is refused).
            auth_kind: how it authenticates.
            certificates_pem: for ``x509-thumbprint`` only, one or two self-signed
                certificates (primary, then secondary).

        Returns:
            The stored record and, for SAS, both keys in base64. The keys are not kept in
            clear anywhere and cannot be shown again.

        Raises:
            ValidationError: a malformed id, an unknown kind, certificates that are refused or
                given to a kind that takes none.
            ConflictError: the device exists.
            StorageError: storage failed.
        """
        validate_device_id(device_id)
        return await self._create_identity(device_id, auth_kind, certificates_pem)

    async def create_module(
        self,
        device_id: str,
        module_id: str,
        *,
        auth_kind: AuthKind = AuthKind.SAS,
        certificates_pem: Sequence[str] = (),
    ) -> CreatedDevice:
        """Create module ``module_id`` of an existing device, with fresh credentials.

        The credential rules are those of :meth:`create_device`; SAS keys are sealed bound to
        the module's identity key ``device_id/module_id``.

        Args:
            device_id: the parent device's id.
            module_id: the new module's id.
            auth_kind: how the module authenticates.
            certificates_pem: for ``x509-thumbprint`` only, one or two self-signed
                certificates (primary, then secondary).

        Returns:
            The stored record (``device_id`` is the identity key ``device_id/module_id``) and,
            for SAS, both keys in base64, shown once.

        Raises:
            ValidationError: a malformed device or module id, an unknown kind, certificates
                that are refused or given to a kind that takes none.
            NotFoundError: the device does not exist.
            ConflictError: the module exists.
            StorageError: storage failed.
        """
        validate_identity(device_id, module_id)
        # Checked here for a clear error before any credential work; storage checks it again
        # in the insert's transaction, against a device deleted meanwhile.
        if await self._storage.get_device(device_id) is None:
            raise NotFoundError(f"device {device_id!r} does not exist")
        return await self._create_identity(f"{device_id}/{module_id}", auth_kind, certificates_pem)

    async def _create_identity(
        self, identity: str, auth_kind: AuthKind, certificates_pem: Sequence[str]
    ) -> CreatedDevice:
        """Build the credentials of a validated identity key and store the new record.

        Raises:
            ValidationError: an unknown kind, certificates refused or given to a kind that
                takes none.
            ConflictError: the identity exists.
            NotFoundError: a module whose device does not exist (checked by storage).
            StorageError: storage failed.
        """
        try:
            kind = AuthKind(auth_kind)
        except ValueError:
            raise ValidationError(f"unknown authentication kind {auth_kind!r}") from None
        now = self._clock.time()
        record = DeviceRecord(
            device_id=identity,
            auth_kind=kind,
            state=DeviceState.ENABLED,
            created_at=now,
            updated_at=now,
        )
        keys = None
        if kind is AuthKind.SAS:
            keys = (secrets.token_bytes(KEY_BYTES), secrets.token_bytes(KEY_BYTES))
        record = self._credentials(record, keys, certificates_pem)
        created = (
            CreatedDevice(record, _encode_key(keys[0]), _encode_key(keys[1]))
            if keys is not None
            else CreatedDevice(record)
        )
        await self._storage.insert_device(record)
        try:
            # Every identity has a twin from its creation, so twin queries see it.
            await self._storage.put_twin(Twin.new(identity, now).to_record(), expected_version=None)
        except ConflictError:
            logger.warning("a twin already existed for new identity device_id=%s", identity)
        if kind is AuthKind.X509_THUMBPRINT:
            self._notify_trust()
        logger.info("identity created: device_id=%s auth_kind=%s", identity, kind.value)
        return created

    async def provision_device(
        self,
        device_id: str,
        auth_kind: AuthKind,
        *,
        keys: tuple[bytes, bytes] | None = None,
        certificates_pem: Sequence[str] = (),
    ) -> tuple[DeviceRecord, bool]:
        """Create a device with credentials chosen by provisioning, or replace its credentials.

        Unlike :meth:`create_device` the SAS keys are given (an enrollment's keys, or keys
        derived from a group key, which the device computes itself: azure-iot-mqtt.md §5.4).
        An existing device keeps its state (a disabled device stays disabled) and its twin;
        if its credentials change, listeners hear ``credentials-changed`` and its live
        connections are dropped.

        Args:
            device_id: the device id (no modules).
            auth_kind: the device's authentication kind.
            keys: for SAS, the raw (primary, secondary) keys.
            certificates_pem: for ``x509-thumbprint``, one or two self-signed certificates.

        Returns:
            The stored record and whether it was created.

        Raises:
            ValidationError: a malformed id, keys missing for SAS or given to another kind,
                refused certificates.
            ConflictError: concurrent changes kept winning.
            StorageError: storage failed.
        """
        validate_device_id(device_id)
        if (keys is not None) != (auth_kind is AuthKind.SAS):
            raise ValidationError("SAS identities take keys and only SAS identities do")
        if keys is not None and any(len(k) < 16 for k in keys):
            raise ValidationError("a SAS key must be at least 16 bytes")
        now = self._clock.time()
        template = DeviceRecord(
            device_id=device_id,
            auth_kind=auth_kind,
            state=DeviceState.ENABLED,
            created_at=now,
            updated_at=now,
        )
        credentials = self._credentials(template, keys, certificates_pem)
        if await self._storage.get_device(device_id) is None:
            try:
                await self._storage.insert_device(credentials)
            except ConflictError:
                pass  # created meanwhile: fall through to the update
            else:
                with contextlib.suppress(ConflictError):
                    await self._storage.put_twin(
                        Twin.new(device_id, now).to_record(), expected_version=None
                    )
                if auth_kind is AuthKind.X509_THUMBPRINT:
                    self._notify_trust()
                logger.info("identity provisioned: device_id=%s created", device_id)
                return credentials, True

        def change(record: DeviceRecord) -> DeviceRecord | None:
            replaced = dataclasses.replace(
                credentials,
                state=record.state,
                created_at=record.created_at,
                version=record.version,
                updated_at=record.updated_at,
            )
            same = (
                record.auth_kind is replaced.auth_kind
                and self.unseal_keys(record) == (keys or ())
                and record.certificates_pem == replaced.certificates_pem
            )
            return None if same else replaced

        record, changed = await self._update(device_id, change)
        if changed:
            self._notify(DeviceChange(device_id, "credentials-changed"))
            self._notify_trust()
            logger.info("identity provisioned: device_id=%s credentials replaced", device_id)
        return record, False

    def _credentials(
        self,
        record: DeviceRecord,
        keys: tuple[bytes, bytes] | None,
        certificates_pem: Sequence[str],
    ) -> DeviceRecord:
        """``record`` with the given credentials sealed or parsed in.

        Raises:
            ValidationError: certificates given to a kind that takes none, or refused.
        """
        identity = record.device_id
        if record.auth_kind is not AuthKind.X509_THUMBPRINT and certificates_pem:
            raise ValidationError(f"{record.auth_kind.value} identities take no certificates")
        if keys is not None:
            return dataclasses.replace(
                record,
                primary_key_sealed=self._seal_key(identity, "primary", keys[0]),
                secondary_key_sealed=self._seal_key(identity, "secondary", keys[1]),
            )
        if record.auth_kind is AuthKind.X509_THUMBPRINT:
            if not 1 <= len(certificates_pem) <= len(KEY_SLOTS):
                raise ValidationError("x509-thumbprint identities take one or two certificates")
            certificates = [_parse_device_certificate(pem) for pem in certificates_pem]
            thumbprints = [thumbprint_sha256(c) for c in certificates]
            return dataclasses.replace(
                record,
                primary_thumbprint=thumbprints[0],
                secondary_thumbprint=thumbprints[1] if len(thumbprints) > 1 else None,
                certificates_pem=tuple(certificate_pem(c).decode("ascii") for c in certificates),
            )
        return record

    async def get_device(self, identity: str) -> DeviceRecord:
        """The device (``d``) or module (``d/m``) with this identity key.

        Raises:
            NotFoundError: no such identity.
            StorageError: storage failed.
        """
        record = await self._storage.get_device(identity)
        if record is None:
            raise NotFoundError(f"identity {identity!r} does not exist")
        return record

    async def list_devices(
        self, *, after: str = "", limit: int = 100, include_modules: bool = False
    ) -> list[DeviceRecord]:
        """Devices ordered by id, starting after ``after`` (modules too with ``include_modules``).

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.list_devices(
            after=after, limit=limit, include_modules=include_modules
        )

    async def list_modules(self, device_id: str) -> list[DeviceRecord]:
        """The modules of a device, ordered by identity key.

        Raises:
            ValidationError: ``device_id`` is not a valid device id.
            NotFoundError: no such device.
            StorageError: storage failed.
        """
        validate_device_id(device_id)
        if await self._storage.get_device(device_id) is None:
            raise NotFoundError(f"device {device_id!r} does not exist")
        return await self._storage.list_modules(device_id)

    def _notify_with_modules(
        self, identity: str, reason: str, modules: Sequence[DeviceRecord]
    ) -> None:
        """Tell ``reason`` for ``identity``, then for each of ``modules``."""
        self._notify(DeviceChange(identity, reason))
        for module in modules:
            self._notify(DeviceChange(module.device_id, reason))

    async def _update(
        self,
        identity: str,
        change: Callable[[DeviceRecord], DeviceRecord | None],
    ) -> tuple[DeviceRecord, bool]:
        """Apply ``change`` to the stored identity with optimistic concurrency.

        ``change`` returns the new record (version and ``updated_at`` are set here), or
        ``None`` when there is nothing to do.

        Returns:
            The stored record and whether it was changed.

        Raises:
            NotFoundError: no such identity.
            ConflictError: other writers changed the identity on every attempt.
            StorageError: storage failed.
        """
        for _ in range(_UPDATE_ATTEMPTS):
            current = await self.get_device(identity)
            changed = change(current)
            if changed is None:
                return current, False
            updated = dataclasses.replace(
                changed, version=current.version + 1, updated_at=self._clock.time()
            )
            try:
                await self._storage.update_device(updated, expected_version=current.version)
            except ConflictError:
                continue
            return updated, True
        raise ConflictError(f"identity {identity!r} keeps changing concurrently; try again")

    async def set_state(self, identity: str, state: DeviceState) -> DeviceRecord:
        """Enable or disable a device or module; disabling tells listeners to drop connections.

        A change of a device's state is told for the device and for each of its modules (a
        module of a disabled device must not stay connected). Setting the state it already
        has changes nothing and tells nobody.

        Raises:
            ValidationError: a malformed identity key or an unknown state.
            NotFoundError: no such identity.
            ConflictError: concurrent changes kept winning.
            StorageError: storage failed.
        """
        _, module_id = split_identity(identity)
        try:
            wanted = DeviceState(state)
        except ValueError:
            raise ValidationError(f"unknown device state {state!r}") from None

        def change(record: DeviceRecord) -> DeviceRecord | None:
            return None if record.state is wanted else dataclasses.replace(record, state=wanted)

        record, changed = await self._update(identity, change)
        if changed:
            reason = {
                DeviceState.DISABLED: "disabled",
                DeviceState.ENABLED: "enabled",
                DeviceState.QUARANTINED: "quarantined",
            }[wanted]
            modules = await self._storage.list_modules(identity) if module_id is None else []
            if wanted is DeviceState.ENABLED:
                # Releasing or enabling a device does not release a module quarantined on its
                # own account (nor enable a module disabled on its own).
                modules = [m for m in modules if m.state is DeviceState.ENABLED]
            self._notify_with_modules(identity, reason, modules)
        return record

    async def rotate_key(self, identity: str, slot: KeySlot) -> str:
        """Regenerate one SAS key (the other keeps working); returns the new key (base64).

        A device's modules have keys of their own, which do not change.

        Raises:
            ValidationError: a malformed identity key, ``slot`` is not ``primary`` or
                ``secondary``, or the identity does not use SAS.
            NotFoundError: no such identity.
            ConflictError: concurrent changes kept winning.
            StorageError: storage failed.
        """
        split_identity(identity)
        if slot not in KEY_SLOTS:
            raise ValidationError("the key slot must be 'primary' or 'secondary'")
        key = secrets.token_bytes(KEY_BYTES)
        sealed = self._seal_key(identity, slot, key)

        def change(record: DeviceRecord) -> DeviceRecord:
            if record.auth_kind is not AuthKind.SAS:
                raise ValidationError(
                    f"identity {identity!r} uses {record.auth_kind.value}, not SAS keys"
                )
            if slot == "primary":
                return dataclasses.replace(record, primary_key_sealed=sealed)
            return dataclasses.replace(record, secondary_key_sealed=sealed)

        await self._update(identity, change)
        self._notify(DeviceChange(identity, "key-rotated", slot))
        return _encode_key(key)

    async def delete_device(self, identity: str) -> None:
        """Delete a device or module and tell listeners to drop its connections.

        Deleting a device deletes its modules too (storage cascades, with twins, sessions and
        queued cloud messages), and listeners hear of the device and of each module.

        Raises:
            ValidationError: a malformed identity key.
            NotFoundError: no such identity.
            StorageError: storage failed.
        """
        _, module_id = split_identity(identity)
        # Collected before the deletion, which leaves nothing to list. A module created in
        # between is deleted by the cascade but not told; listeners that must be exhaustive
        # treat "deleted" for a device ``d`` as covering every identity ``d/*``.
        modules = await self._storage.list_modules(identity) if module_id is None else []
        if not await self._storage.delete_device(identity):
            raise NotFoundError(f"identity {identity!r} does not exist")
        self._notify_with_modules(identity, "deleted", modules)
        self._notify_trust()

    def unseal_keys(self, record: DeviceRecord) -> tuple[bytes, ...]:
        """The raw SAS keys of a device or module (primary first); empty for X.509 identities.

        Raises:
            SealingError: a key cannot be unsealed (wrong KEK, tampering, or a blob moved
                from another identity or slot).
        """
        if record.auth_kind is not AuthKind.SAS:
            return ()
        blobs = (record.primary_key_sealed, record.secondary_key_sealed)
        return tuple(
            unseal(self._kek, blob, aad=device_key_aad(record.device_id, slot))
            for slot, blob in zip(KEY_SLOTS, blobs, strict=True)
            if blob is not None
        )

    # --- certificate authorities ----------------------------------------------------------
    async def add_ca(self, pem: str) -> CARecord:
        """Register a CA certificate for X.509 CA-signed device authentication.

        Raises:
            ValidationError: the certificate is refused (the reason from :mod:`ironhub.pki`).
            ConflictError: the CA is registered already.
            StorageError: storage failed.
        """
        try:
            certificate = parse_ca_certificate(pem)
            subject = certificate.subject.rfc4514_string()
        except TrustError as exc:
            raise ValidationError(f"CA certificate refused: {exc}") from None
        except ValueError:
            raise ValidationError("CA certificate refused: the subject cannot be decoded") from None
        record = CARecord(
            fingerprint=thumbprint_sha256(certificate),
            subject=subject,
            pem=certificate_pem(certificate).decode("ascii"),
            created_at=self._clock.time(),
        )
        await self._storage.insert_ca(record)
        self._notify_trust()
        logger.info("CA registered: fingerprint=%s subject=%s", record.fingerprint, subject)
        return record

    async def list_cas(self) -> list[CARecord]:
        """Registered CAs.

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.list_cas()

    async def remove_ca(self, fingerprint: str) -> None:
        """Unregister a CA; the fingerprint may be given with colons or in lower case.

        Raises:
            NotFoundError: no CA has this fingerprint.
            StorageError: storage failed.
        """
        normalised = normalise_thumbprint(fingerprint)
        if not await self._storage.delete_ca(normalised):
            raise NotFoundError(f"no CA with fingerprint {normalised}")
        logger.info("CA removed: fingerprint=%s", normalised)
        self._notify_trust()
