"""Operator access routes: login and logout, operator accounts, MFA enrolment, API tokens.

The rules are :mod:`ironhub.access.policy` and :mod:`ironhub.access.roles`; the accounts
:mod:`ironhub.access.operators`; the tokens :mod:`ironhub.access.tokens`. What this module adds
is the wire: strict request bodies, answers that never carry a hash or a sealed secret, and
the checks that need the caller:

- a caller may grant (to an account or a token) only roles whose permissions it holds itself
  (:func:`~ironhub.access.roles.require_grantable`);
- the routes under ``/operators/me`` act on the caller's own account, so they need an operator
  *session*: an automation token has no account (403);
- ``POST /login`` is public and throttled per account and per source
  (:class:`~ironhub.access.policy.LoginThrottle`) before any hash is computed.

Secrets appear in exactly three answers, once each: a new account's one-time password, a new
token's (or session's) secret, and the TOTP secret of an enrolment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import msgspec

from ironhub.access.roles import Permission, permissions_of, require_grantable
from ironhub.access.tokens import MAX_TTL_SECONDS
from ironhub.api._http import RequestError, json_response
from ironhub.api._routes import Operation
from ironhub.errors import AuthenticationError, AuthorizationError, StorageError
from ironhub.storage.interfaces import LogEntry, Stream, TokenKind

if TYPE_CHECKING:
    from starlette.responses import Response

    from ironhub.access.operators import OperatorService
    from ironhub.api._routes import Context
    from ironhub.storage.interfaces import OperatorRecord, TokenRecord

__all__ = ["ACCESS_OPERATIONS"]

_DAY = 86400.0
_NAME = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_SECRET = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
_ROLES = Annotated[list[Annotated[str, msgspec.Meta(max_length=32)]], msgspec.Meta(max_length=8)]
_CODE = Annotated[str, msgspec.Meta(max_length=16)]


class _Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies refuse unknown fields."""


class LoginRequest(_Request):
    """Name, password and (when MFA is enrolled) the current TOTP code."""

    name: _NAME
    password: _SECRET
    totp: _CODE | None = None


class SessionView(msgspec.Struct, kw_only=True):
    """A new session. ``token`` is shown in this answer only."""

    token: str
    token_id: str
    operator: str
    roles: list[str]
    expires_at: float | None
    must_rotate: bool


class CreateOperatorRequest(_Request):
    """A new account: its name, roles and optional allow-list of source networks (CIDR)."""

    name: _NAME
    roles: _ROLES
    allow_list: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=32)
    ] = []


class OperatorView(msgspec.Struct, kw_only=True):
    """An account, without any secret."""

    name: str
    roles: list[str]
    disabled: bool
    mfa: bool
    one_time_password: bool
    password_changed_at: float
    last_login_at: float | None
    allow_list: list[str]
    created_at: float


class OperatorList(msgspec.Struct, kw_only=True):
    """Every account, by name."""

    operators: list[OperatorView]


class CreatedOperatorView(msgspec.Struct, kw_only=True):
    """A new account and its one-time password, shown in this answer only."""

    operator: OperatorView
    password: str


class RotatePasswordRequest(_Request):
    """The current password and the new one."""

    old_password: _SECRET
    new_password: _SECRET


class MFAEnrolmentView(msgspec.Struct, kw_only=True):
    """A TOTP secret to enrol (shown once) and its ``otpauth://`` URI (QR code)."""

    secret: str
    uri: str


class ConfirmMFARequest(_Request):
    """A first code from the authenticator, which enables MFA."""

    totp: _CODE


class CreateTokenRequest(_Request):
    """An automation token: what it is for, its roles, its lifetime in days (1 to 90)."""

    name: _NAME
    roles: _ROLES
    ttl_days: Annotated[int, msgspec.Meta(ge=1, le=int(MAX_TTL_SECONDS // _DAY))] = 90


class TokenView(msgspec.Struct, kw_only=True):
    """A token, without its secret or hash."""

    token_id: str
    name: str
    kind: str
    roles: list[str]
    operator: str | None
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked: bool


class TokenList(msgspec.Struct, kw_only=True):
    """Every token, oldest first."""

    tokens: list[TokenView]


class CreatedTokenView(msgspec.Struct, kw_only=True):
    """A new token; ``token`` is its secret, shown in this answer only."""

    token: str
    info: TokenView


class DoneView(msgspec.Struct, kw_only=True):
    """An action that answers nothing else."""

    status: str


def _operators(ctx: Context) -> OperatorService:
    operators = ctx.services.operators
    if operators is None:  # pragma: no cover - every hub wires it; a bug otherwise
        raise StorageError("operator accounts are not available")
    return operators


def _caller(ctx: Context) -> TokenRecord:
    actor = ctx.actor
    if actor is None:  # pragma: no cover - protected routes always have one
        raise AuthorizationError("authentication required")
    return actor


def _own_account(ctx: Context) -> str:
    """The caller's account name; only an operator session has one."""
    actor = _caller(ctx)
    if actor.kind is not TokenKind.SESSION or actor.operator is None:
        raise AuthorizationError("only an operator session (ironhub login) may do this")
    return actor.operator


def _host(ctx: Context) -> str:
    return ctx.peer.rpartition(":")[0] or ctx.peer


def operator_view(record: OperatorRecord) -> OperatorView:
    """The public view of an account."""
    return OperatorView(
        name=record.name,
        roles=list(record.roles),
        disabled=record.disabled,
        mfa=record.totp_secret_sealed is not None,
        one_time_password=record.one_time,
        password_changed_at=record.password_changed_at,
        last_login_at=record.last_login_at,
        allow_list=list(record.allow_list),
        created_at=record.created_at,
    )


def token_view(record: TokenRecord) -> TokenView:
    """The public view of a token."""
    return TokenView(
        token_id=record.token_id,
        name=record.name,
        kind=record.kind.value,
        roles=list(record.roles),
        operator=record.operator,
        created_at=record.created_at,
        expires_at=record.expires_at,
        last_used_at=record.last_used_at,
        revoked=record.revoked,
    )


async def _security_event(ctx: Context, properties: tuple[tuple[str, str], ...]) -> None:
    # The audit record was written by the operator service; this is the live security stream.
    await ctx.services.log.append(
        LogEntry(
            stream=Stream.SECURITY,
            device_id=None,
            enqueued_at=ctx.services.clock.time(),
            payload=b"",
            properties=properties,
        )
    )


# --- login ------------------------------------------------------------------------------------


async def login(ctx: Context) -> Response:
    """``POST /login``: name, password, TOTP code → a session token."""
    request = await ctx.body(LoginRequest)
    source = _host(ctx)
    try:
        result = await _operators(ctx).login(
            request.name, request.password, request.totp, source=source
        )
    except AuthenticationError as exc:
        # The same answer whatever failed (account, source, password or code).
        raise RequestError(401, "login-failed", str(exc)) from None
    for flag, event in ((result.new_source, "login-new-source"),
                        (result.inactive, "login-after-inactivity")):  # fmt: skip
        if flag:
            await _security_event(
                ctx, (("event", event), ("actor", result.token.actor), ("peer", ctx.peer))
            )
    return json_response(
        SessionView(
            token=result.secret,
            token_id=result.token.token_id,
            operator=result.token.actor,
            roles=list(result.token.roles),
            expires_at=result.token.expires_at,
            must_rotate=result.must_rotate,
        ),
        status=201,
    )


async def logout(ctx: Context) -> Response:
    """``POST /logout``: end the caller's session."""
    _own_account(ctx)
    actor = _caller(ctx)
    await ctx.services.tokens.revoke(actor.token_id)
    await ctx.audit("logout", actor.actor)
    return json_response(DoneView(status="logged-out"))


# --- accounts ---------------------------------------------------------------------------------


async def list_operators(ctx: Context) -> Response:
    """``GET /operators``."""
    records = await _operators(ctx).list()
    return json_response(OperatorList(operators=[operator_view(r) for r in records]))


async def create_operator(ctx: Context) -> Response:
    """``POST /operators``: a new account with a one-time password, shown once."""
    request = await ctx.body(CreateOperatorRequest)
    actor = _caller(ctx)
    require_grantable(permissions_of(actor.roles), request.roles)
    password, record = await _operators(ctx).add(
        request.name, tuple(request.roles), allow_list=tuple(request.allow_list), by=actor.actor
    )
    await ctx.audit("operator-password-disclose", record.name)
    return json_response(
        CreatedOperatorView(operator=operator_view(record), password=password), status=201
    )


async def _manageable(ctx: Context) -> str:
    """The account named in the path, if the caller could grant every role it holds.

    Disabling an account or resetting its MFA weakens or removes it: a caller may do that only
    to accounts whose roles it could have granted (a security admin cannot reset an admin).
    """
    name = ctx.path_param("name")
    record = await _operators(ctx).get(name)
    require_grantable(permissions_of(_caller(ctx).roles), record.roles)
    return name


async def disable_operator(ctx: Context) -> Response:
    """``POST /operators/{name}/disable``."""
    name = await _manageable(ctx)
    record = await _operators(ctx).disable(name, by=_caller(ctx).actor)
    return json_response(operator_view(record))


async def reset_operator_mfa(ctx: Context) -> Response:
    """``POST /operators/{name}/reset-mfa``."""
    name = await _manageable(ctx)
    record = await _operators(ctx).reset_mfa(name, by=_caller(ctx).actor)
    return json_response(operator_view(record))


async def rotate_password(ctx: Context) -> Response:
    """``POST /operators/me/password``: change one's own password; every session ends."""
    name = _own_account(ctx)
    request = await ctx.body(RotatePasswordRequest)
    await _operators(ctx).rotate_password(
        name, request.old_password, request.new_password, source=_host(ctx)
    )
    return json_response(DoneView(status="password-changed; log in again"))


async def begin_mfa(ctx: Context) -> Response:
    """``POST /operators/me/mfa``: a new TOTP secret, enabled once confirmed."""
    name = _own_account(ctx)
    enrolment = await _operators(ctx).begin_mfa(name)
    return json_response(MFAEnrolmentView(secret=enrolment.secret, uri=enrolment.uri), status=201)


async def confirm_mfa(ctx: Context) -> Response:
    """``POST /operators/me/mfa/confirm``: the first code enables MFA."""
    name = _own_account(ctx)
    request = await ctx.body(ConfirmMFARequest)
    await _operators(ctx).confirm_mfa(name, request.totp)
    return json_response(DoneView(status="mfa-enabled"))


# --- tokens -----------------------------------------------------------------------------------


async def create_token(ctx: Context) -> Response:
    """``POST /tokens``: an automation token, its secret shown once."""
    request = await ctx.body(CreateTokenRequest)
    actor = _caller(ctx)
    require_grantable(permissions_of(actor.roles), request.roles)
    secret, record = await ctx.services.tokens.create(
        request.name,
        roles=tuple(request.roles),
        ttl_seconds=request.ttl_days * _DAY,
        operator=actor.actor,
    )
    await ctx.audit("token-create", record.token_id)
    return json_response(CreatedTokenView(token=secret, info=token_view(record)), status=201)


async def list_tokens(ctx: Context) -> Response:
    """``GET /tokens``."""
    records = await ctx.services.tokens.list()
    return json_response(TokenList(tokens=[token_view(r) for r in records]))


async def revoke_token(ctx: Context) -> Response:
    """``DELETE /tokens/{token_id}``."""
    token_id = ctx.path_param("token_id")
    await ctx.services.tokens.revoke(token_id)
    await ctx.audit("token-revoke", token_id)
    return json_response(DoneView(status="revoked"))


_BODY_ERRORS = (400, 413, 415)
_P = Permission

ACCESS_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="POST",
        path="/login",
        operation_id="login",
        summary="Log in with name, password and TOTP code; a short-lived session token",
        permission=None,
        handler=login,
        request=LoginRequest,
        response=SessionView,
        status=201,
        errors=(*_BODY_ERRORS, 401, 429, 503),
    ),
    Operation(
        method="POST",
        path="/logout",
        operation_id="logout",
        summary="End the caller's session",
        permission=_P.ACCOUNT_SELF,
        handler=logout,
        response=DoneView,
    ),
    Operation(
        method="GET",
        path="/operators",
        operation_id="listOperators",
        summary="List operator accounts",
        permission=_P.OPERATORS_MANAGE,
        handler=list_operators,
        response=OperatorList,
    ),
    Operation(
        method="POST",
        path="/operators",
        operation_id="createOperator",
        summary="Create an operator account; its one-time password is in this answer only",
        permission=_P.OPERATORS_MANAGE,
        handler=create_operator,
        request=CreateOperatorRequest,
        response=CreatedOperatorView,
        status=201,
        errors=(*_BODY_ERRORS, 409),
    ),
    Operation(
        method="POST",
        path="/operators/me/password",
        operation_id="rotatePassword",
        summary="Change the caller's password (every session of the account ends)",
        permission=_P.ACCOUNT_SELF,
        handler=rotate_password,
        request=RotatePasswordRequest,
        response=DoneView,
        errors=_BODY_ERRORS,
    ),
    Operation(
        method="POST",
        path="/operators/me/mfa",
        operation_id="beginMFA",
        summary="Start TOTP enrolment: a new secret, shown once",
        permission=_P.ACCOUNT_SELF,
        handler=begin_mfa,
        response=MFAEnrolmentView,
        status=201,
        errors=(409,),
    ),
    Operation(
        method="POST",
        path="/operators/me/mfa/confirm",
        operation_id="confirmMFA",
        summary="Enable TOTP with a first code",
        permission=_P.ACCOUNT_SELF,
        handler=confirm_mfa,
        request=ConfirmMFARequest,
        response=DoneView,
        errors=_BODY_ERRORS,
    ),
    Operation(
        method="POST",
        path="/operators/{name}/disable",
        operation_id="disableOperator",
        summary="Disable an operator account and end its sessions",
        permission=_P.OPERATORS_MANAGE,
        handler=disable_operator,
        response=OperatorView,
        errors=(404, 409),
    ),
    Operation(
        method="POST",
        path="/operators/{name}/reset-mfa",
        operation_id="resetOperatorMFA",
        summary="Remove an operator's TOTP enrolment and end its sessions",
        permission=_P.OPERATORS_MANAGE,
        handler=reset_operator_mfa,
        response=OperatorView,
        errors=(404, 409),
    ),
    Operation(
        method="POST",
        path="/tokens",
        operation_id="createToken",
        summary="Create an automation token; its secret is in this answer only",
        permission=_P.TOKENS_MANAGE,
        handler=create_token,
        request=CreateTokenRequest,
        response=CreatedTokenView,
        status=201,
        errors=_BODY_ERRORS,
    ),
    Operation(
        method="GET",
        path="/tokens",
        operation_id="listTokens",
        summary="List API tokens (automation and sessions), without secrets",
        permission=_P.TOKENS_MANAGE,
        handler=list_tokens,
        response=TokenList,
    ),
    Operation(
        method="DELETE",
        path="/tokens/{token_id}",
        operation_id="revokeToken",
        summary="Revoke an API token",
        permission=_P.TOKENS_MANAGE,
        handler=revoke_token,
        response=DoneView,
        errors=(404,),
    ),
)
