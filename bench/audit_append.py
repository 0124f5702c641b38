# Copyright 2026 the ironhub authors. SPDX-License-Identifier: Apache-2.0
"""Audit append benchmark: durable appends per second, with chain and Merkle tree.

Runs the real :class:`ironhub.audit.service.AuditLog` over the real SQLite store
(``synchronous=FULL``: a batch is acknowledged only after its commit and fsync) in a temporary
directory. C concurrent producers each append records back to back, awaiting each one's
durability, as API handlers do; with ``--nowait`` they queue without awaiting, as the device
endpoint does. Prints the load, the machine and the rate; the issue's goal is >= 50,000
appends/s. After the run the whole store is re-verified (the service's open()), so the figure is
for records that verify.

Run: ``.venv/bin/python bench/audit_append.py [--records N] [--producers C] [--nowait]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ironhub.audit.service import AuditLog
from ironhub.clock import SystemClock
from ironhub.config import StorageConfig
from ironhub.metrics import Metrics
from ironhub.storage.sqlite import SQLiteStorage

ORIGIN = "ironhub-audit/bench.example.net"


async def producer(audit: AuditLog, n: int, index: int, *, wait: bool) -> None:
    futures = []
    for i in range(n):
        fields = {
            "actor_kind": "device",
            "actor": f"thermostat-{index:03d}-{i % 1000:04d}",
            "action": "connected" if i % 3 else "auth-failed",
            "target": "-",
            "outcome": "ok" if i % 3 else "refused",
            "source": f"10.0.{index % 256}.{i % 251}",
            "reason": "-",
        }
        if wait:
            await audit.record(**fields)
        else:
            futures.append(audit.append_nowait(**fields))
            if len(futures) >= 4096:
                await asyncio.gather(*futures)
                futures.clear()
    await asyncio.gather(*futures)


async def run(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ironhub-audit-bench-") as tmp:
        path = Path(tmp) / "bench.db"
        clock = SystemClock()
        storage = SQLiteStorage(path, StorageConfig(synchronous="FULL"), clock, Metrics())
        await storage.open()
        key = Ed25519PrivateKey.generate()
        audit = AuditLog(
            storage,
            clock,
            signing_key=key,
            origin=ORIGIN,
            checkpoint_records=args.checkpoint_records,
            checkpoint_seconds=0,
        )
        await audit.open()
        per = args.records // args.producers
        started = time.perf_counter()
        await asyncio.gather(
            *(producer(audit, per, i, wait=not args.nowait) for i in range(args.producers))
        )
        await audit.drain()
        elapsed = time.perf_counter() - started
        await audit.checkpoint()
        await audit.close()
        await storage.close()
        # Re-open: every record and checkpoint is verified again, as at a hub's start.
        storage = SQLiteStorage(path, StorageConfig(), clock, Metrics())
        await storage.open()
        reopened = AuditLog(storage, clock, signing_key=key, origin=ORIGIN, checkpoint_seconds=0)
        verify_started = time.perf_counter()
        await reopened.open()
        verify_elapsed = time.perf_counter() - verify_started
        size = reopened.size
        await storage.close()
    return {
        "records": per * args.producers,
        "seconds": elapsed,
        "rate": per * args.producers / elapsed,
        "verified": size,
        "reopen_seconds": verify_elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--producers", type=int, default=512)
    parser.add_argument("--checkpoint-records", type=int, default=1000)
    parser.add_argument("--nowait", action="store_true", help="queue without awaiting each")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    mode = "queued (append_nowait)" if args.nowait else "each awaited until durable (record)"
    print("ironhub audit append benchmark", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    print(
        f"load: {result['records']:,} records from {args.producers} concurrent producers, {mode};"
        f" SQLite WAL synchronous=FULL (fsync per batch), checkpoint every "
        f"{args.checkpoint_records} records"
    )
    print(f"machine: nproc={os.cpu_count()}, Python {platform.python_version()}, {sys.platform}")
    print(f"durable appends per second:        {result['rate']:,.0f}   (goal >= 50,000)")
    print(f"elapsed:                           {result['seconds']:.2f} s")
    print(
        f"re-open and full re-verification:  {result['verified']:,} records in "
        f"{result['reopen_seconds']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
