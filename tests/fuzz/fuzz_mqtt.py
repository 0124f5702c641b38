"""Nightly fuzz harness for the sans-IO MQTT 3.1.1 codec (not collected by pytest).

Each case takes a seed, either a vector of ``tests/vectors/mqtt_*.json`` or a valid session
built with the encoder, mutates it with random byte operations (flip, insert, delete, truncate,
repeat, splice another seed), cuts it into random reads and feeds it to a fresh
``MQTTConnection`` in the seed's role, accepting the CONNECT or not at random. The contract
checked on every case (SECURITY-TESTS.md 3.2 item 13, after h11):

- only ``RemoteProtocolError`` leaves ``receive_data``; anything else is a violation;
- the buffer never holds more than ``max_packet_bytes``;
- after an error the connection is CLOSED, holds nothing, and keeps refusing.

Usage (from the repository root)::

    .venv/bin/python tests/fuzz/fuzz_mqtt.py [--iterations N] [--seed S] [--max-seconds T]

It prints the number of cases, packets and refusals (with the most common reasons) and every
violation with its input as hex, then exits 1 if there was any violation. The default is
100000 cases; the same ``--seed`` replays the same cases. ``run()`` is importable for tests.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from tests.vectors.load import load_vectors, vector_bytes
from tests.vectors.mqtt_runner import CLIENT_CONNECT

from ironhub.codec.mqtt import (
    ConnAck,
    ConnectionState,
    ConnectReturnCode,
    Disconnect,
    MQTTConnection,
    MQTTLimits,
    PingReq,
    PubAck,
    Publish,
    Role,
    Subscribe,
    encode_packet,
)
from ironhub.errors import RemoteProtocolError

LIMITS = (
    MQTTLimits(),
    MQTTLimits(
        max_connect_packet_bytes=64,
        max_packet_bytes=128,
        max_topic_levels=3,
        max_subscriptions_per_packet=2,
    ),
)


@dataclass
class Report:
    """What a fuzz run found."""

    cases: int = 0
    packets: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


def seeds() -> list[tuple[Role, bytes]]:
    """Every vector, plus a valid session each way, with the role that reads it."""
    found = [
        (Role.CLIENT if name.startswith("mqtt_client") else Role.SERVER, vector_bytes(vector))
        for name in ("mqtt_server_malformed", "mqtt_client_malformed")
        for vector in load_vectors(name)
    ]
    session = [
        CLIENT_CONNECT,
        Subscribe(1, (("devices/d/messages/devicebound/#", 1),)),
        Publish("devices/d/messages/events/a=b", b"{}" * 70, qos=1, packet_id=2),
        PubAck(3),
        PingReq(),
        Disconnect(),
    ]
    found.append((Role.SERVER, b"".join(encode_packet(packet) for packet in session)))
    answers = [ConnAck(ConnectReturnCode.ACCEPTED), Publish("a/b", b"x", 1, packet_id=1)]
    found.append((Role.CLIENT, b"".join(encode_packet(packet) for packet in answers)))
    return found


def mutate(data: bytes, rng: random.Random, pool: list[tuple[Role, bytes]]) -> bytes:
    """Apply one to four random byte operations."""
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        position = rng.randint(0, len(buffer))
        operation = rng.choice(("flip", "set", "insert", "delete", "truncate", "repeat", "splice"))
        if operation == "flip" and position < len(buffer):
            buffer[position] ^= 1 << rng.randrange(8)
        elif operation == "set" and position < len(buffer):
            buffer[position] = rng.choice((0x00, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif operation == "insert":
            buffer[position:position] = rng.randbytes(rng.randint(1, 8))
        elif operation == "delete":
            del buffer[position : position + rng.randint(1, 8)]
        elif operation == "truncate":
            del buffer[position:]
        elif operation == "repeat":
            buffer += buffer[position:]
        else:
            other = rng.choice(pool)[1]
            buffer[position:] = other[rng.randint(0, len(other)) :]
    return bytes(buffer)


def feed_case(role: Role, data: bytes, rng: random.Random, report: Report) -> None:
    """Feed one input in random reads and check the contract."""
    limits = rng.choice(LIMITS)
    accept = rng.random() < 0.8
    connection = MQTTConnection(role, limits)
    if role is Role.CLIENT:
        connection.send(CLIENT_CONNECT)
    cuts = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, 4)))
    chunks = [data[start:stop] for start, stop in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    try:
        for chunk in chunks:
            report.packets += len(connection.receive_data(chunk))
            if accept and connection.state is ConnectionState.CONNECT_RECEIVED:
                connection.send(ConnAck(ConnectReturnCode.ACCEPTED))
                report.packets += len(connection.receive_data(b""))
            if connection.statistics().bytes_buffered > limits.max_packet_bytes:
                report.violations.append(f"unbounded buffer: {role.value} {data.hex()}")
                return
    except RemoteProtocolError as error:
        report.refusals[str(error)] += 1
        statistics = connection.statistics()
        if connection.state is not ConnectionState.CLOSED or statistics.bytes_buffered:
            report.violations.append(f"not closed after an error: {role.value} {data.hex()}")
        try:
            connection.receive_data(b"\xc0\x00")
        except RemoteProtocolError:
            pass
        else:
            report.violations.append(f"accepted data after an error: {role.value} {data.hex()}")
    except Exception:
        report.violations.append(
            f"{traceback.format_exc(limit=-1).strip()}\n  input: {role.value} {data.hex()}"
        )


def run(iterations: int, seed: int, max_seconds: float | None = None) -> Report:
    """Run ``iterations`` cases (fewer if ``max_seconds`` runs out) and report."""
    rng = random.Random(seed)
    pool = seeds()
    report = Report()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    for _ in range(iterations):
        if deadline is not None and time.monotonic() > deadline:
            break
        if rng.random() < 0.05:
            role, data = rng.choice(tuple(Role)), rng.randbytes(rng.randint(0, 64))
        else:
            role, data = rng.choice(pool)
            data = mutate(data, rng, pool)
        feed_case(role, data, rng, report)
        report.cases += 1
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=None)
    arguments = parser.parse_args(argv)
    started = time.monotonic()
    report = run(arguments.iterations, arguments.seed, arguments.max_seconds)
    elapsed = time.monotonic() - started
    print(f"cases={report.cases} packets={report.packets} refusals={report.refusals.total()}")
    print(f"violations={len(report.violations)} seed={arguments.seed} seconds={elapsed:.1f}")
    for reason, count in report.refusals.most_common(10):
        print(f"  {count:8d}  {reason}")
    for violation in report.violations:
        print(f"VIOLATION {violation}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
