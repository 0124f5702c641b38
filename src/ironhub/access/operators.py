"""Operator accounts: add, list, disable, reset MFA, change passwords, log in. I/O around policy.

The rules live in :mod:`ironhub.access.policy` (pure); this service reads and writes accounts
(:class:`~ironhub.storage.interfaces.OperatorRecord`), runs argon2 in worker threads with
bounded concurrency, seals TOTP secrets under the key-encryption key (bound to the account
name, :func:`~ironhub.registry.sealing.operator_secret_aad`), issues session tokens through
:class:`~ironhub.access.tokens.TokenService`, and records every decision in the audit log.

Theory of operation of :meth:`OperatorService.login`, in this order:

1. :class:`~ironhub.access.policy.LoginThrottle` check (account and source): while locked,
   refuse without looking at anything (429);
2. the account: unknown or disabled accounts are refused exactly like a wrong password, after
   hashing the password against a dummy hash (same answer, similar time: the answer does not
   tell which names exist);
3. the account's allow-list of source networks (a refusal costs a dummy hash too);
4. the password (argon2id, in a thread, at most ``max_concurrent_hashes`` at once);
5. the TOTP code, if MFA is enrolled; a replayed code (at or before the stored last step) is
   refused;
6. a one-time or expired password: the login succeeds, but the session may only change the
   password (``must_rotate``);
7. a new source network or a long-inactive account: a security event (returned to the caller,
   which also publishes it on the security stream) and an audit record.

Every failure counts in the throttle (unknown accounts too) and is an audit record with the
machine reason; the client always gets the same error. Nothing here ever logs, records or
returns a password, a hash, a TOTP secret or code, or a token secret (except the one-time
displays: the initial password from :meth:`OperatorService.add`, the TOTP secret from
:meth:`OperatorService.begin_mfa`, the session secret from :meth:`OperatorService.login`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ironhub.access.policy import (
    DEFAULT_HASH_PARAMETERS,
    INACTIVE_AFTER_SECONDS,
    HashParameters,
    LockoutPolicy,
    LoginThrottle,
    PasswordPolicy,
    check_new_password,
    hash_password,
    inactive_for,
    is_new_source,
    must_change,
    needs_rehash,
    new_totp_secret,
    parse_allow_list,
    provisioning_uri,
    source_allowed,
    source_network,
    verify_password,
    verify_totp,
)
from ironhub.access.roles import Role, parse_role
from ironhub.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ThrottledError,
    ValidationError,
)
from ironhub.registry.sealing import operator_secret_aad, seal, unseal
from ironhub.storage.interfaces import OperatorRecord

if TYPE_CHECKING:
    import builtins

    from ironhub.access.tokens import TokenService
    from ironhub.audit.service import AuditLog
    from ironhub.clock import Clock
    from ironhub.storage.interfaces import Storage, TokenRecord

__all__ = ["FIRST_ADMIN", "LoginResult", "MFAEnrolment", "OperatorService"]

logger = logging.getLogger(__name__)

#: The account created at ``init``.
FIRST_ADMIN: Final = "admin"
#: Account names: lower case, digits, ``.``, ``_``, ``-``; 1 to 64 characters. ``me`` is the
#: API's name for the caller, so it cannot be an account.
_NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_RESERVED_NAMES: Final = frozenset({"me"})
#: Roles for people; an account needs at least one (the Azure-style roles are for services).
_PEOPLE_ROLES: Final = frozenset({Role.VIEWER, Role.OPERATOR, Role.SECURITY_ADMIN, Role.ADMIN})
#: Random bytes of a one-time password (shown once, changed at the first login).
_ONE_TIME_PASSWORD_BYTES: Final = 18
#: Networks remembered per account for new-source detection (the oldest are forgotten).
_MAX_KNOWN_NETWORKS: Final = 32
_MAX_ALLOW_LIST: Final = 32
_TOTP_SLOT: Final = "totp"
#: What the audit log names an account that does not exist (the submitted name may be a
#: password typed into the wrong field, so it is never recorded).
_UNKNOWN_ACCOUNT: Final = "(unknown)"
_LOGIN_REFUSED: Final = "the name, password or code is wrong"


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A successful login.

    Attributes:
        secret: the session token secret (show once).
        token: its record.
        must_rotate: the password is one-time or expired; the session may only change it.
        new_source: the login came from a network this account never used before.
        inactive: the account had not logged in for a long time.
    """

    secret: str
    token: TokenRecord
    must_rotate: bool
    new_source: bool
    inactive: bool


@dataclass(frozen=True, slots=True)
class MFAEnrolment:
    """A TOTP secret being enrolled (show once) and its ``otpauth://`` URI."""

    secret: str
    uri: str


def _check_name(name: str) -> None:
    if _NAME_PATTERN.fullmatch(name) is None or name in _RESERVED_NAMES:
        raise ValidationError(
            "an operator name is 1 to 64 characters: a-z, 0-9, '.', '_', '-' (not 'me')"
        )


def _check_roles(roles: tuple[str, ...]) -> None:
    if not roles or len(set(roles)) != len(roles):
        raise ValidationError("an operator has one or more distinct roles")
    parsed = {parse_role(name) for name in roles}
    if parsed.isdisjoint(_PEOPLE_ROLES):
        raise ValidationError(
            "an operator needs one of the roles viewer, operator, security-admin, admin"
        )


class OperatorService:
    """Operator accounts and their logins.

    Args:
        storage: an open storage backend.
        tokens: issues the session tokens.
        kek: the key-encryption key that seals TOTP secrets.
        clock: wall-clock time for stored timestamps and TOTP, monotonic for the throttle.
        audit: the audit log (``None`` only in tests that do not look at it).
        password_policy: rules for new passwords, maximum age and history.
        lockout_policy: when failed logins lock an account or a source.
        inactive_after_seconds: an account unused this long makes its next login an event.
        max_concurrent_hashes: argon2 computations at once (each holds 128 MiB).
        hash_parameters: argon2id cost of new hashes.
    """

    def __init__(
        self,
        storage: Storage,
        tokens: TokenService,
        kek: bytes,
        clock: Clock,
        audit: AuditLog | None,
        *,
        password_policy: PasswordPolicy,
        lockout_policy: LockoutPolicy,
        inactive_after_seconds: float = INACTIVE_AFTER_SECONDS,
        max_concurrent_hashes: int = 2,
        hash_parameters: HashParameters = DEFAULT_HASH_PARAMETERS,
    ) -> None:
        self._storage = storage
        self._tokens = tokens
        self._kek = kek
        self._clock = clock
        self._audit = audit
        self._policy = password_policy
        self._throttle = LoginThrottle(lockout_policy)
        self._inactive_after = inactive_after_seconds
        self._hashing = asyncio.Semaphore(max(1, max_concurrent_hashes))
        self._hash_parameters = hash_parameters
        self._dummy_hash: str | None = None

    @property
    def throttle(self) -> LoginThrottle:
        """The login throttle (for statistics)."""
        return self._throttle

    # --- hashing, off the event loop and bounded ------------------------------------------
    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(
                hash_password, password, parameters=self._hash_parameters
            )

    async def _verify(self, stored_hash: str, password: str) -> bool:
        async with self._hashing:
            return await asyncio.to_thread(verify_password, stored_hash, password)

    async def _verify_dummy(self, password: str) -> None:
        # Spend what a real verification costs, so that refusing an unknown account (or a
        # refused source) takes as long as refusing a wrong password.
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
        await self._verify(self._dummy_hash, password)

    async def _check_new_password(self, password: str, record: OperatorRecord) -> None:
        history = (record.password_hash, *record.password_history)
        async with self._hashing:
            await asyncio.to_thread(
                check_new_password,
                password,
                name=record.name,
                history_hashes=history,
                policy=self._policy,
            )

    # --- audit ---------------------------------------------------------------------------
    async def _record(
        self,
        actor: str,
        action: str,
        *,
        target: str = "-",
        outcome: str = "ok",
        source: str = "-",
        reason: str = "-",
    ) -> None:
        if self._audit is not None:
            await self._audit.record(
                actor_kind="operator",
                actor=actor,
                action=action,
                target=target,
                outcome=outcome,
                source=source,
                reason=reason,
            )

    # --- accounts ------------------------------------------------------------------------
    async def add(
        self,
        name: str,
        roles: tuple[str, ...],
        *,
        allow_list: tuple[str, ...] = (),
        by: str | None = None,
    ) -> tuple[str, OperatorRecord]:
        """Create an account with a one-time password, to be changed at the first login.

        Whether the caller may grant ``roles`` is the caller's check
        (:func:`~ironhub.access.roles.require_grantable`). ``by`` is the operator who adds the
        account, ``None`` for the hub itself (the first ``admin`` at ``init``; recorded as an
        operator action by the actor ``hub``, since the hub's own records are start and stop).

        Returns:
            The one-time password (show once) and the stored record.

        Raises:
            ValidationError: a malformed name, unknown roles, no role for people, or a
                malformed allow-list.
            ConflictError: the name is taken.
            StorageError: storage failed.
        """
        _check_name(name)
        _check_roles(roles)
        if len(allow_list) > _MAX_ALLOW_LIST:
            raise ValidationError(f"an allow-list has at most {_MAX_ALLOW_LIST} networks")
        networks = tuple(str(n) for n in parse_allow_list(allow_list))
        password = secrets.token_urlsafe(_ONE_TIME_PASSWORD_BYTES)
        now = self._clock.time()
        record = OperatorRecord(
            name=name,
            password_hash=await self._hash(password),
            password_changed_at=now,
            one_time=True,
            roles=roles,
            created_at=now,
            allow_list=networks,
        )
        await self._storage.insert_operator(record)
        await self._record(
            by or "hub",
            "operator-add",
            target=name,
            reason=",".join(roles),
        )
        logger.info("operator added: name=%s roles=%s by=%s", name, ",".join(roles), by or "hub")
        return password, record

    async def get(self, name: str) -> OperatorRecord:
        """The account called ``name``.

        Raises:
            NotFoundError: no such account.
            StorageError: storage failed.
        """
        record = await self._storage.get_operator(name)
        if record is None:
            raise NotFoundError(f"operator {name!r} does not exist")
        return record

    async def list(self) -> builtins.list[OperatorRecord]:
        """Every account, by name (hashes and sealed secrets included: never expose them).

        Raises:
            StorageError: storage failed.
        """
        return await self._storage.list_operators()

    async def disable(self, name: str, *, by: str) -> OperatorRecord:
        """Disable an account and end its sessions; it can no longer log in.

        Raises:
            NotFoundError: no such account.
            ConflictError: the account changed meanwhile.
            StorageError: storage failed.
        """
        record = await self.get(name)
        updated = dataclasses.replace(record, disabled=True, version=record.version + 1)
        await self._storage.update_operator(updated)
        await self._tokens.revoke_sessions(name)
        await self._record(by, "operator-disable", target=name)
        logger.info("operator disabled: name=%s by=%s", name, by)
        return updated

    async def reset_mfa(self, name: str, *, by: str) -> OperatorRecord:
        """Remove an account's TOTP enrolment and end its sessions (a lost phone).

        Raises:
            NotFoundError: no such account.
            ConflictError: the account changed meanwhile.
            StorageError: storage failed.
        """
        record = await self.get(name)
        updated = dataclasses.replace(
            record,
            totp_secret_sealed=None,
            totp_pending_sealed=None,
            totp_last_step=None,
            version=record.version + 1,
        )
        await self._storage.update_operator(updated)
        await self._tokens.revoke_sessions(name)
        await self._record(by, "operator-reset-mfa", target=name)
        logger.info("operator MFA reset: name=%s by=%s", name, by)
        return updated

    async def rotate_password(self, name: str, old: str, new: str, *, source: str) -> None:
        """Change an account's password (the old one is required) and end its sessions.

        Raises:
            AuthenticationError: the old password is wrong (``reason`` ``"bad-password"``).
            ValidationError: the new password breaks the policy (the message says which rule).
            NotFoundError: no such account.
            ConflictError: the account changed meanwhile.
            StorageError: storage failed.
        """
        record = await self.get(name)
        if not await self._verify(record.password_hash, old):
            await self._record(
                name,
                "password-rotate",
                target=name,
                outcome="refused",
                source=source,
                reason="bad-password",
            )
            raise AuthenticationError("bad-password", "the current password is wrong")
        try:
            await self._check_new_password(new, record)
        except ValidationError as exc:
            await self._record(
                name,
                "password-rotate",
                target=name,
                outcome="refused",
                source=source,
                reason=str(exc)[:200],
            )
            raise
        history = (record.password_hash, *record.password_history)[: self._policy.history]
        updated = dataclasses.replace(
            record,
            password_hash=await self._hash(new),
            password_changed_at=self._clock.time(),
            one_time=False,
            password_history=history,
            version=record.version + 1,
        )
        await self._storage.update_operator(updated)
        await self._tokens.revoke_sessions(name)
        await self._record(name, "password-rotate", target=name, source=source)
        logger.info("operator password changed: name=%s", name)

    # --- MFA -----------------------------------------------------------------------------
    async def begin_mfa(self, name: str) -> MFAEnrolment:
        """Start TOTP enrolment: a new secret, active once a first code confirms it.

        Raises:
            ConflictError: MFA is already enabled (a security admin resets it first).
            NotFoundError: no such account.
            StorageError: storage failed.
        """
        record = await self.get(name)
        if record.totp_secret_sealed is not None:
            raise ConflictError("MFA is already enabled; a security admin can reset it")
        secret = new_totp_secret()
        sealed = seal(self._kek, secret.encode("ascii"), aad=operator_secret_aad(name, _TOTP_SLOT))
        updated = dataclasses.replace(
            record, totp_pending_sealed=sealed, version=record.version + 1
        )
        await self._storage.update_operator(updated)
        await self._record(name, "mfa-enrol", target=name)
        return MFAEnrolment(secret=secret, uri=provisioning_uri(secret, name))

    async def confirm_mfa(self, name: str, code: str) -> None:
        """Enable the pending TOTP secret once ``code`` proves the authenticator has it.

        Raises:
            ValidationError: no enrolment is pending, or the code is wrong.
            NotFoundError: no such account.
            StorageError: storage failed.
        """
        record = await self.get(name)
        if record.totp_pending_sealed is None:
            raise ValidationError("no MFA enrolment is pending")
        secret = self._unseal_totp(name, record.totp_pending_sealed)
        try:
            step = verify_totp(secret, code, now=self._clock.time(), last_used_step=None)
        except AuthenticationError:
            await self._record(
                name, "mfa-confirm", target=name, outcome="refused", reason="totp-invalid"
            )
            raise ValidationError("the code is wrong") from None
        updated = dataclasses.replace(
            record,
            totp_secret_sealed=record.totp_pending_sealed,
            totp_pending_sealed=None,
            totp_last_step=step,
            version=record.version + 1,
        )
        await self._storage.update_operator(updated)
        await self._record(name, "mfa-confirm", target=name)
        logger.info("operator MFA enabled: name=%s", name)

    def _unseal_totp(self, name: str, blob: bytes) -> str:
        return unseal(self._kek, blob, aad=operator_secret_aad(name, _TOTP_SLOT)).decode("ascii")

    # --- login ---------------------------------------------------------------------------
    async def _refuse(
        self, name: str, source: str, reason: str, *, known: bool = True
    ) -> AuthenticationError:
        outcome = self._throttle.record_failure(name, source, self._clock.monotonic())
        actor = name if known else _UNKNOWN_ACCOUNT
        await self._record(
            actor, "login", target=actor, outcome="refused", source=source, reason=reason
        )
        if outcome.account_locked or outcome.source_locked:
            what = "account" if outcome.account_locked else "source"
            await self._record(
                actor,
                "login-lockout",
                target=actor,
                outcome="refused",
                source=source,
                reason=f"{what}-locked",
            )
        logger.warning(
            "operator login refused: known=%s source=%s reason=%s", known, source, reason
        )
        return AuthenticationError("login-failed", _LOGIN_REFUSED)

    async def login(
        self, name: str, password: str, totp_code: str | None, *, source: str
    ) -> LoginResult:
        """Check a login and open a session (see the module docstring for the order).

        Raises:
            ThrottledError: the account or the source is locked out.
            AuthenticationError: refused (``reason`` ``"login-failed"``, whatever the cause).
            ConflictError: the account changed meanwhile (a concurrent login).
            StorageError: storage failed.
        """
        try:
            self._throttle.check(name, source, self._clock.monotonic())
        except ThrottledError:
            await self._record(
                _UNKNOWN_ACCOUNT, "login", outcome="refused", source=source, reason="locked"
            )
            raise
        record = await self._storage.get_operator(name)
        if record is None or record.disabled:
            await self._verify_dummy(password)
            reason = "unknown-account" if record is None else "disabled"
            raise await self._refuse(name, source, reason, known=record is not None)
        if not source_allowed(record.allow_list, source):
            await self._verify_dummy(password)
            raise await self._refuse(name, source, "source-not-allowed")
        if not await self._verify(record.password_hash, password):
            raise await self._refuse(name, source, "bad-password")
        step = record.totp_last_step
        if record.totp_secret_sealed is not None:
            secret = self._unseal_totp(name, record.totp_secret_sealed)
            try:
                step = verify_totp(
                    secret,
                    (totp_code or "").replace(" ", ""),
                    now=self._clock.time(),
                    last_used_step=record.totp_last_step,
                )
            except AuthenticationError as exc:
                raise await self._refuse(name, source, exc.reason) from None
        return await self._open_session(record, password, step, source)

    async def _open_session(
        self, record: OperatorRecord, password: str, step: int | None, source: str
    ) -> LoginResult:
        now = self._clock.time()
        rotate = must_change(record.password_changed_at, now, record.one_time, self._policy)
        # The first login has nothing to compare with: it is recorded, but it is no event.
        new_source = is_new_source(record.known_networks, source)
        event = new_source and bool(record.known_networks)
        inactive = record.last_login_at is not None and inactive_for(
            record.last_login_at, now, self._inactive_after
        )
        known = record.known_networks
        if new_source:
            # A source that is not an IP address (a test client) is not remembered.
            with contextlib.suppress(ValidationError):
                known = (*known, source_network(source))[-_MAX_KNOWN_NETWORKS:]
        password_hash = record.password_hash
        if needs_rehash(password_hash, parameters=self._hash_parameters):
            password_hash = await self._hash(password)
        updated = dataclasses.replace(
            record,
            password_hash=password_hash,
            totp_last_step=step,
            last_login_at=now,
            known_networks=known,
            version=record.version + 1,
        )
        # Storing the accepted TOTP step before answering is what refuses a replay.
        await self._storage.update_operator(updated)
        self._throttle.record_success(record.name, source, self._clock.monotonic())
        secret, token = await self._tokens.create_session(
            record.name, record.roles, must_rotate=rotate
        )
        reason = "must-rotate" if rotate else "-"
        await self._record(record.name, "login", target=record.name, source=source, reason=reason)
        if event:
            await self._record(record.name, "login-new-source", target=record.name, source=source)
        if inactive:
            await self._record(
                record.name, "login-after-inactivity", target=record.name, source=source
            )
        logger.info(
            "operator login: name=%s source=%s must_rotate=%s new_source=%s inactive=%s",
            record.name,
            source,
            rotate,
            new_source,
            inactive,
        )
        return LoginResult(
            secret=secret,
            token=token,
            must_rotate=rotate,
            new_source=event,
            inactive=inactive,
        )
