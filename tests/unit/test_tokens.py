"""Operator API tokens: issuance, authentication reasons, revocation, first-start bootstrap."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from ironhub.access.tokens import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, TokenService
from ironhub.clock import FakeClock
from ironhub.config import StorageConfig
from ironhub.errors import AuthenticationError, NotFoundError, ValidationError
from ironhub.storage.interfaces import TokenKind
from ironhub.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.asyncio


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def storage(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SQLiteStorage]:
    opened = SQLiteStorage(tmp_path / "hub.db", StorageConfig(), clock)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def tokens(storage: SQLiteStorage, clock: FakeClock) -> TokenService:
    return TokenService(storage, clock)


async def refused(tokens: TokenService, secret: object) -> str:
    with pytest.raises(AuthenticationError) as info:
        await tokens.authenticate(secret)  # type: ignore[arg-type]
    return info.value.reason


async def test_create_returns_secret_and_stores_only_its_hash(
    tokens: TokenService, clock: FakeClock, tmp_path: Path
) -> None:
    secret, record = await tokens.create("ci pipeline")
    assert secret.startswith("ihk_")
    assert len(secret) == 47
    assert record.token_hash == hashlib.sha256(secret.encode()).digest()
    assert record.roles == ("admin",)
    assert record.kind is TokenKind.AUTOMATION
    assert record.name == "ci pipeline"
    assert record.created_at == clock.time()
    assert record.expires_at == clock.time() + DEFAULT_TTL_SECONDS
    assert not record.revoked
    assert await tokens.list() == [record]
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert secret.encode() not in on_disk
    assert secret[4:].encode() not in on_disk


async def test_secrets_and_ids_are_unique(tokens: TokenService) -> None:
    made = [await tokens.create(f"t{n}") for n in range(20)]
    assert len({secret for secret, _ in made}) == 20
    assert len({record.token_id for _, record in made}) == 20


async def test_authenticate_valid_token(tokens: TokenService, clock: FakeClock) -> None:
    secret, record = await tokens.create("ops", ttl_seconds=60)
    clock.advance(59.9)
    assert await tokens.authenticate(secret) == record


async def test_every_token_expires_within_the_cap(tokens: TokenService, clock: FakeClock) -> None:
    secret, record = await tokens.create("service", ttl_seconds=MAX_TTL_SECONDS)
    assert record.expires_at == clock.time() + MAX_TTL_SECONDS
    with pytest.raises(ValidationError, match="90 days"):
        await tokens.create("service", ttl_seconds=MAX_TTL_SECONDS + 1)
    clock.advance(MAX_TTL_SECONDS)
    assert await refused(tokens, secret) == "expired"


async def test_tokens_carry_several_roles(tokens: TokenService) -> None:
    secret, record = await tokens.create("ci", roles=("viewer", "registry-write"))
    assert (await tokens.authenticate(secret)).roles == ("viewer", "registry-write")
    for roles in ((), ("viewer", "viewer"), ("viewer",) * 9):
        with pytest.raises(ValidationError, match="roles"):
            await tokens.create("ci", roles=roles)
    assert record.operator is None


async def test_sessions_end_after_idle_time_and_lifetime(
    tokens: TokenService, clock: FakeClock
) -> None:
    policy = tokens.session_policy
    secret, record = await tokens.create_session("alice", ("viewer",), must_rotate=True)
    assert record.kind is TokenKind.SESSION
    assert record.actor == "alice"
    assert record.must_rotate
    assert record.expires_at == clock.time() + policy.absolute_lifetime_seconds
    # Used regularly, it lives until its absolute end.
    used = 0.0
    while used + 600 < policy.absolute_lifetime_seconds:
        clock.advance(600)
        used += 600
        await tokens.authenticate(secret)
    clock.advance(policy.absolute_lifetime_seconds - used)
    assert await refused(tokens, secret) == "expired"
    idle, _ = await tokens.create_session("alice", ("viewer",), must_rotate=False)
    clock.advance(policy.idle_timeout_seconds)
    assert await refused(tokens, idle) == "expired"
    kept, _ = await tokens.create_session("bob", ("viewer",), must_rotate=False)
    assert await tokens.revoke_sessions("alice") == 2
    assert (await tokens.authenticate(kept)).operator == "bob"


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "Bearer ihk_abc",
        "ihk_" + "A" * 42,
        "ihk_" + "A" * 44,
        "ihx_" + "A" * 43,
        "ihk_" + "A" * 42 + "=",
        "ihk_" + "A" * 42 + "é",
        "ihk_" + "A" * 42 + "\n",
        "ihk_" + "A" * 10_000,
        None,
        b"ihk_" + b"A" * 43,
    ],
    ids=lambda s: repr(s)[:20],
)
async def test_malformed_tokens(tokens: TokenService, secret: object) -> None:
    assert await refused(tokens, secret) == "malformed"


async def test_unknown_token(tokens: TokenService) -> None:
    await tokens.create("real")
    assert await refused(tokens, "ihk_" + "A" * 43) == "unknown"


async def test_expired_token(tokens: TokenService, clock: FakeClock) -> None:
    secret, _ = await tokens.create("short", ttl_seconds=60)
    clock.advance(60)
    assert await refused(tokens, secret) == "expired"


async def test_revoked_token(tokens: TokenService, clock: FakeClock) -> None:
    secret, record = await tokens.create("leaked", ttl_seconds=60)
    await tokens.revoke(record.token_id)
    assert await refused(tokens, secret) == "revoked"
    clock.advance(120)
    assert await refused(tokens, secret) == "revoked"  # revocation is the stronger reason
    assert (await tokens.list())[0].revoked


async def test_revoke_unknown_token(tokens: TokenService) -> None:
    with pytest.raises(NotFoundError):
        await tokens.revoke("no-such-token")


@pytest.mark.parametrize("name", ["", "x" * 65, "tab\there", "line\nbreak", "nul\x00"])
async def test_bad_names_are_refused(tokens: TokenService, name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        await tokens.create(name)


async def test_unknown_role_is_refused(tokens: TokenService) -> None:
    with pytest.raises(ValidationError, match="role"):
        await tokens.create("x", roles=("superuser",))


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("inf"), float("nan")])
async def test_bad_lifetimes_are_refused(tokens: TokenService, ttl: float) -> None:
    with pytest.raises(ValidationError, match="ttl_seconds"):
        await tokens.create("x", ttl_seconds=ttl)
    assert await tokens.list() == []


async def test_bootstrap_admin_only_on_first_start(tokens: TokenService) -> None:
    secret = await tokens.bootstrap_admin()
    assert secret is not None
    record = await tokens.authenticate(secret)
    assert record.roles == ("admin",)
    assert await tokens.bootstrap_admin() is None
    await tokens.revoke(record.token_id)
    assert await tokens.bootstrap_admin() is None  # revoking everything is not a fresh hub


async def test_bootstrap_after_tokens_exist_does_nothing(tokens: TokenService) -> None:
    await tokens.create("made by hand")
    assert await tokens.bootstrap_admin() is None


async def test_concurrent_bootstrap_creates_one_token(tokens: TokenService) -> None:
    results = await asyncio.gather(*(tokens.bootstrap_admin() for _ in range(5)))
    assert sum(r is not None for r in results) == 1
    assert len(await tokens.list()) == 1


async def test_bootstrap_survives_restart(tmp_path: Path, clock: FakeClock) -> None:
    for expected_new in (True, False):
        storage = SQLiteStorage(tmp_path / "hub.db", StorageConfig(), clock)
        await storage.open()
        secret = await TokenService(storage, clock).bootstrap_admin()
        assert (secret is not None) is expected_new
        await storage.close()
