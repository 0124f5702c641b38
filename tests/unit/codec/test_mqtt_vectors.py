"""The hostile-input vectors (tests/vectors/mqtt_*.json) against the sans-IO codec.

Each vector runs three ways: all bytes at once, one byte at a time, and cut at a few seeded
random places. The outcome must be the one the vector states every time, and it must be reached
with exactly the vector's bytes: the codec never waits for more to refuse.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from tests.vectors.load import expected_connack_code, load_vectors, vector_bytes
from tests.vectors.mqtt_runner import Outcome, feed, role_of, run_vector

from ironhub.codec.mqtt import ConnectionState, Role
from ironhub.errors import RemoteProtocolError

FILES = ("mqtt_server_malformed", "mqtt_client_malformed")

CASES = [
    pytest.param(role_of(name), vector, id=f"{name.split('_')[1]}:{vector['name']}")
    for name in FILES
    for vector in load_vectors(name)
]


def _check(vector: dict[str, Any], outcome: Outcome) -> None:
    assert outcome.expect == vector["expect"], outcome.error
    if vector["expect"] == "packets":
        assert len(outcome.packets) == vector["count"]


@pytest.mark.parametrize(("role", "vector"), CASES)
def test_vector_all_at_once(role: Role, vector: dict[str, Any]) -> None:
    _check(vector, run_vector(vector, role))


@pytest.mark.parametrize(("role", "vector"), CASES)
def test_vector_byte_by_byte_gives_the_same_outcome(role: Role, vector: dict[str, Any]) -> None:
    whole = run_vector(vector, role)
    data = vector_bytes(vector)
    single = run_vector(vector, role, range(1, len(data)))
    _check(vector, single)
    if vector["expect"] == "packets":
        assert single.packets == whole.packets
    else:
        # Packets decoded in the read that fails are dropped with the error.
        assert single.packets[: len(whole.packets)] == whole.packets


@pytest.mark.parametrize(("role", "vector"), CASES)
def test_vector_random_cuts_give_the_same_outcome(role: Role, vector: dict[str, Any]) -> None:
    data = vector_bytes(vector)
    rng = random.Random(vector["name"])
    for _ in range(3):
        cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 4))]
        _check(vector, run_vector(vector, role, cuts))


@pytest.mark.parametrize(("role", "vector"), CASES)
def test_after_a_refusal_every_call_fails(role: Role, vector: dict[str, Any]) -> None:
    outcome = run_vector(vector, role)
    connection = outcome.connection
    if outcome.error is None:
        return
    assert outcome.error.connack_code == expected_connack_code(vector)
    assert connection.state is ConnectionState.CLOSED
    assert connection.statistics().bytes_buffered == 0
    for again in (b"", b"\xc0\x00", vector_bytes(vector)):
        with pytest.raises(RemoteProtocolError) as repeated:
            connection.receive_data(again)
        assert repeated.value.connack_code is None


@pytest.mark.parametrize(("role", "vector"), CASES)
def test_error_messages_never_quote_the_bytes(role: Role, vector: dict[str, Any]) -> None:
    outcome = run_vector(vector, role)
    if outcome.error is None:
        return
    message = str(outcome.error)
    assert message.isascii()
    assert "\\x" not in message
    assert outcome.error.__cause__ is None
    assert outcome.error.__suppress_context__ or outcome.error.__context__ is None


def test_vector_files_cover_the_catalogue() -> None:
    # SECURITY-TESTS.md 3.2 items 5-10 and 12, 3.3 item 14: each is referenced at least once.
    refs = " ".join(vector["ref"] for name in FILES for vector in load_vectors(name))
    for item in ("3.2.5", "3.2.6", "3.2.8", "3.2.9", "3.2.10", "3.3.14", "CVE-2021-28166"):
        assert item in refs, item


def test_the_client_runner_sends_connect_first() -> None:
    outcome = feed(Role.CLIENT, [bytes.fromhex("20020000")])
    assert outcome.expect == "packets"
    assert len(outcome.packets) == 1
