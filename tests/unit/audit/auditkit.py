"""Helpers for the audit tests: a fixed signing key and an in-memory export builder.

The builder makes exports exactly as the audit service does (header, record lines in order,
checkpoint lines), and also the hostile ones an attacker without the key can make: rewritten
records with recomputed hashes, reordered, deleted or inserted lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ironhub import audit

ORIGIN = "ironhub-audit/hub.test"
T0 = 1_767_225_600.0


def nl(lines: list[bytes]) -> list[bytes]:
    """Lines as a binary file yields them."""
    return [line + b"\n" for line in lines]


@dataclass
class Log:
    """A log built in memory: record bodies and hashes, and the record lines."""

    bodies: list[bytes] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    records: list[audit.AuditRecord] = field(default_factory=list)

    @property
    def lines(self) -> list[bytes]:
        return [audit.record_line(b, h) for b, h in zip(self.bodies, self.hashes, strict=True)]


class AuditKit:
    """Builds logs, checkpoints and exports with a test key."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        self.public_key = self.key.public_key()
        self.other_key = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))

    def fields(self, seq: int) -> dict[str, object]:
        device = seq % 3 != 0
        return {
            "time": T0 + seq * 1.5,
            "actor_kind": "device" if device else "operator",
            "actor": f"dev-{seq}" if device else "alice",
            "action": "device-connect" if device else "device-create",
            "target": "-" if device else f"dev-{seq}",
            "outcome": "ok" if seq % 4 else "refused",
            "source": f"10.0.0.{seq % 250}",
            "reason": "-",
        }

    def log(self, count: int, *, start: Log | None = None, **overrides: object) -> Log:
        """A valid log of ``count`` records (continuing ``start``)."""
        log = start or Log()
        while len(log.bodies) < count:
            seq = len(log.bodies)
            kwargs = {**self.fields(seq), **overrides}
            record, body, digest = audit.build_record(
                seq=seq, prev=log.hashes[-1] if log.hashes else bytes(32), **kwargs
            )
            log.bodies.append(body)
            log.hashes.append(digest)
            log.records.append(record)
        return log

    def checkpoint(
        self,
        hashes: list[bytes],
        size: int,
        *,
        key: Ed25519PrivateKey | None = None,
        origin: str = ORIGIN,
        time: float | None = None,
    ) -> audit.Checkpoint:
        return audit.sign_checkpoint(
            key or self.key,
            origin=origin,
            tree_size=size,
            root=audit.root_hash(hashes[:size]),
            time=T0 + 1000 + size if time is None else time,
        )

    def export(
        self,
        log: Log,
        sizes: tuple[int, ...] | None = None,
        *,
        record_lines: list[bytes] | None = None,
        origin: str = ORIGIN,
    ) -> list[bytes]:
        """Header, record lines and checkpoint lines of the given sizes, each with \\n."""
        sizes = (len(log.hashes),) if sizes is None else sizes
        checkpoints = [
            audit.checkpoint_line(self.checkpoint(log.hashes, size, origin=origin))
            for size in sizes
        ]
        lines = [
            audit.export_header(origin, self.public_key),
            *(log.lines if record_lines is None else record_lines),
            *checkpoints,
        ]
        return nl(lines)


def rehash(records: list[audit.AuditRecord]) -> Log:
    """What an attacker without the key can do: re-chain edited records with fresh hashes."""
    log = Log()
    for seq, record in enumerate(records):
        _, body, digest = audit.build_record(
            seq=seq,
            time=record.time,
            actor_kind=record.actor_kind,
            actor=record.actor,
            action=record.action,
            target=record.target,
            outcome=record.outcome,
            source=record.source,
            reason=record.reason,
            prev=log.hashes[-1] if log.hashes else bytes(32),
        )
        log.bodies.append(body)
        log.hashes.append(digest)
        log.records.append(record)
    return log
