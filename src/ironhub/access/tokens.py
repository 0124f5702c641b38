"""Operator API tokens: issue, check, list and revoke.

A token secret is ``ihk_`` followed by 32 random bytes in unpadded base64url (47 characters;
the prefix makes leaked tokens easy to recognise for secret scanners). Only its SHA-256 is
stored (ARCHITECTURE.md, Cryptography). A 256-bit random secret needs no slow password hash:
nobody can guess it, so a fast hash loses nothing, and lookups by hash keep every
authentication to one indexed read.

Timing: the secret is never compared directly. The store is searched by the *hash* of the
presented secret, which reveals nothing useful about any stored secret even if the index
lookup leaks timing, and the hash found is compared again in constant time.

Two kinds of token (docs/adr/0011): *automation* tokens, issued by name with a set of roles and
a lifetime of at most :data:`MAX_TTL_SECONDS` (90 days), for scripts and services; and
*session* tokens, issued only by an operator's login (:mod:`ironhub.access.operators`), carrying
that operator's roles, ending after the :class:`~ironhub.access.policy.SessionPolicy` lifetime
or idle time. Every token expires.

The first admin token is created on first start only (:meth:`TokenService.bootstrap_admin`),
and printed once by the caller; no default credential exists (secure by default).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import re
import secrets
from typing import TYPE_CHECKING, Final

from ironhub.access.policy import DEFAULT_SESSION_POLICY, SessionPolicy, session_expired
from ironhub.access.roles import parse_role
from ironhub.errors import AuthenticationError, NotFoundError, ValidationError
from ironhub.storage.interfaces import TokenKind, TokenRecord

if TYPE_CHECKING:
    import builtins

    from ironhub.clock import Clock
    from ironhub.storage.interfaces import Storage

__all__ = ["DEFAULT_TTL_SECONDS", "MAX_TTL_SECONDS", "TOKEN_PREFIX", "TokenService"]

logger = logging.getLogger(__name__)

#: Prefix of every token secret.
TOKEN_PREFIX: Final = "ihk_"  # noqa: S105 - a public prefix, not a credential
#: Random bytes in a token secret.
TOKEN_BYTES: Final = 32
#: Default lifetime of an automation token: 90 days.
DEFAULT_TTL_SECONDS: Final = 90 * 86400.0
#: Longest lifetime of any token: 90 days (the issue's cap; a longer-lived credential is a
#: standing risk, and rotation is one ``token create`` away).
MAX_TTL_SECONDS: Final = 90 * 86400.0
#: Most roles on one token.
MAX_ROLES: Final = 8
#: A session's last use is written at most this often (one write per request would be wasteful;
#: the idle timeout is minutes, so this costs at most this much precision).
_TOUCH_INTERVAL_SECONDS: Final = 30.0
#: Longest token name.
MAX_NAME_CHARS: Final = 64

_SECRET_CHARS: Final = len(TOKEN_PREFIX) + 43  # 32 bytes -> 43 base64url characters
_SECRET_PATTERN: Final = re.compile(r"ihk_[A-Za-z0-9_-]{43}")
_BOOTSTRAP_NAME: Final = "bootstrap-admin"


def _hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def _new_secret() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(
        b"="
    ).decode("ascii")


def _check_roles(roles: tuple[str, ...]) -> None:
    if not 1 <= len(roles) <= MAX_ROLES or len(set(roles)) != len(roles):
        raise ValidationError(f"a token has 1 to {MAX_ROLES} distinct roles")
    for name in roles:
        parse_role(name)


class TokenService:
    """Issues and checks operator API tokens.

    Args:
        storage: an open storage backend.
        clock: wall-clock time for creation and expiry.
        session_policy: lifetime and idle timeout of session tokens.
    """

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        session_policy: SessionPolicy = DEFAULT_SESSION_POLICY,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._session_policy = session_policy
        self._bootstrap_lock = asyncio.Lock()

    @property
    def session_policy(self) -> SessionPolicy:
        """The lifetime rules of session tokens."""
        return self._session_policy

    async def create(
        self,
        name: str,
        *,
        roles: tuple[str, ...] = ("admin",),
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        operator: str | None = None,
    ) -> tuple[str, TokenRecord]:
        """Issue an automation token.

        Whether the caller may grant ``roles`` is checked by the caller
        (:func:`~ironhub.access.roles.require_grantable`); this only checks that they exist.

        Args:
            name: what the token is for (1 to 64 printable characters); not secret.
            roles: role names (:class:`~ironhub.access.roles.Role`), 1 to 8, distinct.
            ttl_seconds: lifetime, at most :data:`MAX_TTL_SECONDS`.
            operator: who issued it (``None`` for the bootstrap token).

        Returns:
            The secret, to show once and never again, and the stored record.

        Raises:
            ValidationError: a malformed name, an unknown role, or a lifetime that is not
                positive or exceeds the cap.
            ConflictError: the random id or secret collided (practically never).
            StorageError: storage failed.
        """
        if not 1 <= len(name) <= MAX_NAME_CHARS or not name.isprintable():
            raise ValidationError(f"a token name is 1 to {MAX_NAME_CHARS} printable characters")
        _check_roles(roles)
        if not (math.isfinite(ttl_seconds) and 0 < ttl_seconds <= MAX_TTL_SECONDS):
            raise ValidationError("ttl_seconds must be more than 0 and at most 90 days")
        return await self._issue(
            name,
            roles=roles,
            expires_in=ttl_seconds,
            kind=TokenKind.AUTOMATION,
            operator=operator,
        )

    async def create_session(
        self, operator: str, roles: tuple[str, ...], *, must_rotate: bool
    ) -> tuple[str, TokenRecord]:
        """Issue a login session token for ``operator`` (called after a complete login).

        Raises:
            ValidationError: the roles are malformed.
            StorageError: storage failed.
        """
        _check_roles(roles)
        return await self._issue(
            f"session:{operator}",
            roles=roles,
            expires_in=self._session_policy.absolute_lifetime_seconds,
            kind=TokenKind.SESSION,
            operator=operator,
            must_rotate=must_rotate,
        )

    async def _issue(
        self,
        name: str,
        *,
        roles: tuple[str, ...],
        expires_in: float,
        kind: TokenKind,
        operator: str | None,
        must_rotate: bool = False,
    ) -> tuple[str, TokenRecord]:
        secret = _new_secret()
        now = self._clock.time()
        record = TokenRecord(
            token_id=secrets.token_hex(8),
            name=name,
            token_hash=_hash_secret(secret),
            roles=roles,
            created_at=now,
            expires_at=now + expires_in,
            kind=kind,
            operator=operator,
            last_used_at=now if kind is TokenKind.SESSION else None,
            must_rotate=must_rotate,
        )
        await self._storage.insert_token(record)
        logger.info(
            "token created: token_id=%s name=%s kind=%s roles=%s expires_at=%s",
            record.token_id,
            name,
            kind.value,
            ",".join(roles),
            record.expires_at,
        )
        return secret, record

    async def authenticate(self, secret: str) -> TokenRecord:
        """The record of a valid token.

        A session's last use is refreshed (at most every 30 seconds), so that it ends after
        the session policy's idle timeout.

        Raises:
            AuthenticationError: with ``reason`` ``"malformed"`` (not a token at all),
                ``"unknown"``, ``"revoked"`` or ``"expired"``.
            StorageError: storage failed (callers fail closed).
        """
        if (
            not isinstance(secret, str)
            or len(secret) != _SECRET_CHARS
            or _SECRET_PATTERN.fullmatch(secret) is None
        ):
            raise AuthenticationError("malformed", "the token is malformed")
        token_hash = _hash_secret(secret)
        record = await self._storage.find_token(token_hash)
        if record is None or not hmac.compare_digest(record.token_hash, token_hash):
            raise AuthenticationError("unknown", "the token is not known")
        if record.revoked:
            raise AuthenticationError("revoked", "the token was revoked")
        now = self._clock.time()
        if record.expires_at is not None and now >= record.expires_at:
            raise AuthenticationError("expired", "the token has expired")
        if record.kind is TokenKind.SESSION:
            last_seen = record.last_used_at if record.last_used_at is not None else now
            if session_expired(record.created_at, last_seen, now, self._session_policy):
                raise AuthenticationError("expired", "the session has expired")
            if now - last_seen >= _TOUCH_INTERVAL_SECONDS:
                await self._storage.touch_token(record.token_id, now)
        return record

    async def list(self) -> builtins.list[TokenRecord]:
        """Every token record, oldest first (hashes included: never expose them).

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.list_tokens()

    async def revoke(self, token_id: str) -> None:
        """Revoke a token; it fails authentication from now on.

        Raises:
            NotFoundError: no token has this id.
            StorageError: storage failed.
        """
        if not await self._storage.revoke_token(token_id):
            raise NotFoundError(f"token {token_id!r} does not exist")
        logger.info("token revoked: token_id=%s", token_id)

    async def revoke_sessions(self, operator: str) -> int:
        """End every session of ``operator`` (after a password change, disabling, MFA reset).

        Returns:
            How many sessions were ended.

        Raises:
            StorageError: storage failed.
        """
        count = await self._storage.revoke_operator_tokens(operator, TokenKind.SESSION)
        logger.info("sessions revoked: operator=%s count=%d", operator, count)
        return count

    async def bootstrap_admin(self) -> str | None:
        """Create the first admin token on first start.

        Returns:
            The secret of a new admin token if no token was ever created (not even one since
            revoked), else ``None``.

        Raises:
            StorageError: storage failed.
        """
        async with self._bootstrap_lock:
            if await self._storage.count_tokens() > 0:
                return None
            secret, _ = await self.create(_BOOTSTRAP_NAME, roles=("admin",))
            return secret
