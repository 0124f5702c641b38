# Copyright 2026 the ironhub authors. SPDX-License-Identifier: Apache-2.0
"""Audit export verification benchmark: verified records per second, single process.

Builds an export of N records (realistic field sizes: operator and device actors, device ids,
source addresses) with a checkpoint every 1000 records and one over the whole log, the way the
audit service exports it, then times :func:`ironhub.audit.verify_export` over it, either from
memory (a list of lines) or from a temporary file iterated line by line. Prints the load, the
machine and the rate; the issue's goal is >= 500,000 records/s.

Run: ``.venv/bin/python bench/audit_verify.py [--records N] [--file] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ironhub.audit import (
    TreeBuilder,
    build_record,
    checkpoint_line,
    export_header,
    record_line,
    sign_checkpoint,
    verify_export,
)

ORIGIN = "ironhub-audit/hub.example.net"
ACTIONS = ("device-connect", "device-create", "operator-login", "auth-failed", "twin-update")


def build_export(records: int, checkpoint_every: int) -> list[bytes]:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    lines = [export_header(ORIGIN, key.public_key()) + b"\n"]
    checkpoints = []
    tree = TreeBuilder()
    prev = bytes(32)
    start = 1_767_225_600.0
    for seq in range(records):
        device = seq % 7 != 0
        _, body, digest = build_record(
            seq=seq,
            time=start + seq * 0.013,
            actor_kind="device" if device else "operator",
            actor=f"thermostat-{seq % 5000:05d}" if device else "alice",
            action=ACTIONS[seq % len(ACTIONS)],
            target=f"sensor-{seq % 997:04d}" if not device else "-",
            outcome="ok" if seq % 11 else "refused",
            source=f"10.0.{seq % 256}.{seq % 251}:{40000 + seq % 20000}",
            reason="-" if seq % 11 else "bad-signature",
            prev=prev,
        )
        lines.append(record_line(body, digest) + b"\n")
        tree.append(digest)
        prev = digest
        if (seq + 1) % checkpoint_every == 0 or seq + 1 == records:
            checkpoints.append(
                sign_checkpoint(
                    key, origin=ORIGIN, tree_size=seq + 1, root=tree.root(), time=start + seq
                )
            )
    lines += [checkpoint_line(cp) + b"\n" for cp in checkpoints]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (the median counts)")
    parser.add_argument("--file", action="store_true", help="verify from a temporary file")
    args = parser.parse_args()

    lines = build_export(args.records, args.checkpoint_every)
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    record_lines = lines[1 : args.records + 1]
    record_bytes = sum(map(len, record_lines)) / len(record_lines)
    total = sum(map(len, lines))
    checkpoints = len(lines) - args.records - 1

    path = None
    if args.file:
        handle, name = tempfile.mkstemp(prefix="ironhub-audit-", suffix=".jsonl")
        os.close(handle)
        path = Path(name)
        path.write_bytes(b"".join(lines))

    def run() -> float:
        began = time.perf_counter()
        if path is None:
            report = verify_export(lines, key)
        else:
            with path.open("rb") as export:
                report = verify_export(export, key)
        elapsed = time.perf_counter() - began
        if not report.intact or report.records != args.records:
            sys.exit(f"verification failed: {report}")
        return elapsed

    try:
        run()  # warm-up
        times = [run() for _ in range(args.repeat)]
    finally:
        if path is not None:
            path.unlink()
    median = statistics.median(times)
    print(f"load:     {args.records} records, {checkpoints} checkpoints, ", end="")
    print(f"{record_bytes:.0f} bytes per record line, {total / 1e6:.1f} MB")
    print(f"source:   {'temporary file' if path else 'list of lines in memory'}")
    print(
        f"machine:  Python {platform.python_version()} ({platform.python_implementation()}), ",
        end="",
    )
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    runs = ", ".join(f"{t * 1000:.0f} ms" for t in times)
    print(f"runs:     {runs} (median {median * 1000:.0f} ms)")
    print(f"rate:     {args.records / median:,.0f} verified records/s (goal 500,000)")


if __name__ == "__main__":
    main()
