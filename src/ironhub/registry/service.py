"""Registry service: the rules for device identities, over a :class:`~ironhub.storage.interfaces.Storage`.

CONTRACT (filled in by the storage/registry work; other packages code against these names).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ironhub.clock import Clock
from ironhub.storage.interfaces import AuthKind, CARecord, DeviceRecord, DeviceState, Storage

__all__ = ["CreatedDevice", "DeviceChange", "KeySlot", "Registry", "validate_device_id"]

KeySlot = str  # "primary" | "secondary"


@dataclass(frozen=True, slots=True)
class CreatedDevice:
    """A new device and, for SAS devices, its two keys (base64), shown once."""

    record: DeviceRecord
    primary_key: str | None = None
    secondary_key: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """Told to listeners after a device was disabled, deleted, or had credentials changed.

    The hub listens and drops live connections that the change invalidates.
    """

    device_id: str
    reason: str  # "disabled" | "deleted" | "key-rotated" | "enabled"


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` if valid. Raises ``ValidationError``."""
    raise NotImplementedError


class Registry:
    """Device identities and CAs. All methods raise ``StorageError`` when storage fails."""

    def __init__(self, storage: Storage, kek: bytes, clock: Clock) -> None:
        raise NotImplementedError

    def add_listener(self, callback: Callable[[DeviceChange], None]) -> None:
        """Call ``callback`` after every change that may invalidate a live connection."""
        raise NotImplementedError

    async def create_device(
        self,
        device_id: str,
        auth_kind: AuthKind = AuthKind.SAS,
        *,
        certificates_pem: tuple[str, ...] = (),
    ) -> CreatedDevice:
        """Create a device. Raises ``ValidationError``, ``ConflictError``."""
        raise NotImplementedError

    async def get_device(self, device_id: str) -> DeviceRecord:
        """Raises ``NotFoundError``."""
        raise NotImplementedError

    async def list_devices(self, *, after: str = "", limit: int = 100) -> list[DeviceRecord]:
        """Devices ordered by id."""
        raise NotImplementedError

    async def set_state(self, device_id: str, state: DeviceState) -> DeviceRecord:
        """Enable or disable. Raises ``NotFoundError``."""
        raise NotImplementedError

    async def rotate_key(self, device_id: str, slot: KeySlot) -> str:
        """Regenerate one SAS key (the other keeps working); returns the new key (base64)."""
        raise NotImplementedError

    async def delete_device(self, device_id: str) -> None:
        """Raises ``NotFoundError``."""
        raise NotImplementedError

    def unseal_keys(self, record: DeviceRecord) -> tuple[bytes, ...]:
        """The raw SAS keys of a device (primary first). Raises ``SealingError``."""
        raise NotImplementedError

    async def add_ca(self, pem: str) -> CARecord:
        """Register a CA certificate. Raises ``ValidationError``, ``ConflictError``."""
        raise NotImplementedError

    async def list_cas(self) -> list[CARecord]:
        """Registered CAs."""
        raise NotImplementedError

    async def remove_ca(self, fingerprint: str) -> None:
        """Raises ``NotFoundError``."""
        raise NotImplementedError
