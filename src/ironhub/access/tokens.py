"""Operator API tokens: issue, check, list and revoke.

A token secret is ``ihk_`` followed by 32 random bytes in unpadded base64url (47 characters;
the prefix makes leaked tokens easy to recognise for secret scanners). Only its SHA-256 is
stored (ARCHITECTURE.md, Cryptography). A 256-bit random secret needs no slow password hash:
nobody can guess it, so a fast hash loses nothing, and lookups by hash keep every
authentication to one indexed read.

Timing: the secret is never compared directly. The store is searched by the *hash* of the
presented secret, which reveals nothing useful about any stored secret even if the index
lookup leaks timing, and the hash found is compared again in constant time.

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

from ironhub.errors import AuthenticationError, NotFoundError, ValidationError
from ironhub.storage.interfaces import TokenRecord

if TYPE_CHECKING:
    import builtins

    from ironhub.clock import Clock
    from ironhub.storage.interfaces import Storage

__all__ = ["DEFAULT_TTL_SECONDS", "ROLES", "TOKEN_PREFIX", "TokenService"]

logger = logging.getLogger(__name__)

#: Prefix of every token secret.
TOKEN_PREFIX: Final = "ihk_"  # noqa: S105 - a public prefix, not a credential
#: Random bytes in a token secret.
TOKEN_BYTES: Final = 32
#: Default lifetime of a token: 90 days.
DEFAULT_TTL_SECONDS: Final = 90 * 86400.0
#: Roles a token may carry. Only ``admin`` until role-based access control arrives.
ROLES: Final = frozenset({"admin"})
#: Longest token name.
MAX_NAME_CHARS: Final = 64

_SECRET_CHARS: Final = len(TOKEN_PREFIX) + 43  # 32 bytes -> 43 base64url characters
_SECRET_PATTERN: Final = re.compile(r"ihk_[A-Za-z0-9_-]{43}")
_BOOTSTRAP_NAME: Final = "bootstrap-admin"


def _hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


class TokenService:
    """Issues and checks operator API tokens.

    Args:
        storage: an open storage backend.
        clock: wall-clock time for creation and expiry.
    """

    def __init__(self, storage: Storage, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock
        self._bootstrap_lock = asyncio.Lock()

    async def create(
        self,
        name: str,
        *,
        role: str = "admin",
        ttl_seconds: float | None = DEFAULT_TTL_SECONDS,
    ) -> tuple[str, TokenRecord]:
        """Issue a token.

        Args:
            name: what the token is for (1 to 64 printable characters); not secret.
            role: one of :data:`ROLES`.
            ttl_seconds: lifetime, or ``None`` for a token that never expires.

        Returns:
            The secret, to show once and never again, and the stored record.

        Raises:
            ValidationError: a malformed name, an unknown role, or a non-positive lifetime.
            ConflictError: the random id or secret collided (practically never).
            StorageError: storage failed.
        """
        if not 1 <= len(name) <= MAX_NAME_CHARS or not name.isprintable():
            raise ValidationError(f"a token name is 1 to {MAX_NAME_CHARS} printable characters")
        if role not in ROLES:
            raise ValidationError(f"unknown role; expected one of {', '.join(sorted(ROLES))}")
        if ttl_seconds is not None and not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
            raise ValidationError("ttl_seconds must be a positive number of seconds")
        secret = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(
            b"="
        ).decode("ascii")
        now = self._clock.time()
        record = TokenRecord(
            token_id=secrets.token_hex(8),
            name=name,
            token_hash=_hash_secret(secret),
            role=role,
            created_at=now,
            expires_at=None if ttl_seconds is None else now + ttl_seconds,
        )
        await self._storage.insert_token(record)
        logger.info(
            "token created: token_id=%s name=%s role=%s expires_at=%s",
            record.token_id,
            name,
            role,
            record.expires_at,
        )
        return secret, record

    async def authenticate(self, secret: str) -> TokenRecord:
        """The record of a valid token.

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
        if record.expires_at is not None and self._clock.time() >= record.expires_at:
            raise AuthenticationError("expired", "the token has expired")
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
            secret, _ = await self.create(_BOOTSTRAP_NAME, role="admin")
            return secret
