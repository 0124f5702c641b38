"""Role-based access control for operators and service credentials: pure rules, no I/O.

A credential (an operator account or an API token) carries role *names*; a role grants a fixed
set of :class:`Permission`; every API route needs exactly one permission (public routes need
none). Authorisation is the question "is the needed permission in the union of the caller's
roles' permissions?", answered by :func:`permissions_of` and :func:`require`. Unknown role names
grant nothing (fail closed), so a role removed from a future version, or mistyped in storage,
locks its holder out instead of granting something.

Roles, least privilege first. Operator roles are for people, the Azure-style roles mirror the
IoT Hub shared access policies (``registryRead``, ``registryReadWrite``, ``service``,
``device``) for back-end services ported from Azure::

    permission        viewer operator sec-admin admin reg-read reg-write svc-conn dev-conn
    devices:read      x      x        x         x     x        x
    devices:write                               x              x
    devices:state            x                  x              x
    keys:disclose                               x              x
    twins:read        x      x        x         x                        x
    twins:write              x                  x                        x
    methods:invoke           x                  x                        x
    c2d:send                 x                  x                        x
    messages:read     x      x        x         x                        x
    cas:read          x      x        x         x
    cas:manage                        x         x
    audit:read        x      x        x         x
    audit:export                      x         x
    operators:manage                  x         x
    tokens:manage                     x         x
    metrics:read      x      x        x         x
    provisioning:read x      x        x         x              x
    provisioning:write                          x              x
    certificates:revoke      x        x         x
    alerts:read       x      x        x         x
    alerts:manage            x        x         x
    posture:read      x      x        x         x
    posture:manage                    x         x
    service:connect                             x                        x
    device:connect                              x                                 x
    account:self      x      x        x         x

(``sec-admin`` is ``security-admin``, ``reg-read`` / ``reg-write`` are ``registry-read`` /
``registry-write``, ``svc-conn`` / ``dev-conn`` are ``service-connect`` / ``device-connect``; a
test checks this table against :data:`ROLE_PERMISSIONS`.)

Why:

- ``viewer`` reads everything an investigation needs (devices, twins, messages, CAs, the audit
  log, metrics) and nothing that is a secret (``keys:disclose``) or a bulk copy of the audit log
  (``audit:export``). Like every role for people it also holds ``account:self`` (one's own
  password, MFA and session); the Azure-style roles, for services, do not.
- ``operator`` is the viewer plus day-to-day device work: twin desired properties, direct
  methods, cloud-to-device messages, enabling and disabling a device, releasing it from
  quarantine, handling alerts. It cannot create or delete identities, see keys, manage
  operators or tokens, or export the audit log: a stolen operator credential can disturb
  devices but not mint or impersonate them.
- ``security-admin`` is the viewer plus the security controls: operators, tokens, trusted CAs
  and the audit export. It writes no device data (no twins, methods, C2D, identities, keys): the
  people who decide who may act are not the people who act (separation of duties, as in NIST
  SP 800-53 AC-5). It can disable no device either; automatic responses (quarantine) and the
  ``operator`` role do that. It may revoke issued device certificates (incident response
  against a stolen key), which takes a credential away and grants nothing.
- Provisioning: every role for people reads enrollments, registrations, claim tokens and issued
  certificates (``provisioning:read``, no secret in any of them); ``operator`` and
  ``security-admin`` may revoke certificates (``certificates:revoke``); only ``admin`` and
  ``registry-write`` create enrollments and claim tokens (``provisioning:write``): an
  enrollment mints device identities and its creation answer carries keys, which is what
  ``registry-write`` already does.
- Security monitoring: every role for people reads the alerts (``alerts:read``: type, device,
  summary, evidence sequence numbers, never a payload); ``operator`` and ``security-admin``
  acknowledge and resolve them (``alerts:manage``), since both answer incidents and marking an
  alert handled changes no device. Ending a device's quarantine turns its telemetry back on:
  it is a change of device state (``devices:state``), so the ``operator`` may and the
  ``security-admin`` may not, as for enabling and disabling. The Azure-style roles have no
  counterpart and get neither.
- Device posture: every role for people reads device profiles, imported advisories and the
  outdated/vulnerable-device report (``posture:read``); ``security-admin`` defines profiles,
  assigns them and imports advisories (``posture:manage``): they decide what the detectors
  hold devices to, a security control like the trusted CAs, and write no device data beyond
  the ``ironhub.profile`` tag.
- ``admin`` holds every permission. It is the only role that combines managing operators or
  tokens with writing device data or reading keys.
- ``registry-read`` / ``registry-write`` are Azure's ``RegistryRead`` / ``RegistryReadWrite``:
  the identity registry. Azure's registry read also returns device keys; here only
  ``registry-write`` (which creates identities and must hand out their keys anyway) discloses
  keys, and ``registry-read`` does not.
- ``service-connect`` is Azure's ``ServiceConnect``: the service-facing endpoints (receive
  device-to-cloud messages, send cloud-to-device messages, twins and their queries, direct
  methods), without the registry.
- ``device-connect`` is Azure's ``DeviceConnect``: the device-facing endpoints, acting as any
  device. It is powerful (it impersonates the fleet) and grants nothing on the operator API.

Granting: a holder of ``operators:manage`` or ``tokens:manage`` may only hand out roles whose
permissions it holds itself (:func:`require_grantable`), so a security-admin cannot mint an admin
or an operator, and no credential can raise its own privileges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ironhub.errors import AuthorizationError, ValidationError

__all__ = [
    "ROLE_PERMISSIONS",
    "Permission",
    "Role",
    "parse_role",
    "permissions_of",
    "require",
    "require_grantable",
]


class Permission(StrEnum):
    """One thing a credential may do. The value is the stable wire and storage name."""

    #: List and show devices, modules and live connections (states, thumbprints; no keys).
    DEVICES_READ = "devices:read"
    #: Create and delete device and module identities. A SAS identity's new keys are in the
    #: creation answer only; keys of existing identities need ``keys:disclose``.
    DEVICES_WRITE = "devices:write"
    #: Enable or disable a device (day-to-day operations and incident response).
    DEVICES_STATE = "devices:state"
    #: Disclose a key of an existing identity: connection strings and key rotation answers.
    KEYS_DISCLOSE = "keys:disclose"
    #: Read device and module twins, and query them.
    TWINS_READ = "twins:read"
    #: Patch twins (tags and desired properties).
    TWINS_WRITE = "twins:write"
    #: Invoke direct methods on devices and modules.
    METHODS_INVOKE = "methods:invoke"
    #: Send, and purge, cloud-to-device messages and module input messages.
    C2D_SEND = "c2d:send"
    #: Read message payloads: the message log, its live tail, pending cloud-to-device queues.
    MESSAGES_READ = "messages:read"
    #: List the trusted X.509 CAs (public certificates).
    CAS_READ = "cas:read"
    #: Add and remove trusted X.509 CAs.
    CAS_MANAGE = "cas:manage"
    #: Read audit records, checkpoints, the checkpoint key and proofs.
    AUDIT_READ = "audit:read"
    #: Export the whole audit log.
    AUDIT_EXPORT = "audit:export"
    #: Create, change, lock and delete operator accounts; reset their MFA.
    OPERATORS_MANAGE = "operators:manage"
    #: Issue, list and revoke API tokens.
    TOKENS_MANAGE = "tokens:manage"
    #: Read the Prometheus metrics.
    METRICS_READ = "metrics:read"
    #: List enrollments, groups, registrations, claim tokens and issued certificates (no keys).
    PROVISIONING_READ = "provisioning:read"
    #: Create, change and delete enrollments and groups; issue and revoke claim tokens. A new
    #: symmetric enrollment's keys are in the creation answer only.
    PROVISIONING_WRITE = "provisioning:write"
    #: Revoke issued device certificates (incident response).
    CERTIFICATES_REVOKE = "certificates:revoke"
    #: List and show security alerts (type, device, evidence sequence numbers; no payload).
    ALERTS_READ = "alerts:read"
    #: Acknowledge and resolve security alerts. Ending a device's quarantine is a change of
    #: device state: ``devices:state``.
    ALERTS_MANAGE = "alerts:manage"
    #: Read device profiles, imported advisories and the outdated/vulnerable-device report.
    POSTURE_READ = "posture:read"
    #: Create, change, assign and delete device profiles; import advisories.
    POSTURE_MANAGE = "posture:manage"
    #: Azure ``ServiceConnect``: connect to the service-facing endpoints.
    SERVICE_CONNECT = "service:connect"
    #: Azure ``DeviceConnect``: connect to the device-facing endpoints as any device.
    DEVICE_CONNECT = "device:connect"
    #: Manage one's own login: change one's password, enrol one's MFA, end one's session (the
    #: routes under ``/operators/me`` also need an operator session, not an automation token).
    ACCOUNT_SELF = "account:self"


class Role(StrEnum):
    """A named set of permissions (see the table in the module docstring)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    SECURITY_ADMIN = "security-admin"
    ADMIN = "admin"
    REGISTRY_READ = "registry-read"
    REGISTRY_WRITE = "registry-write"
    SERVICE_CONNECT = "service-connect"
    DEVICE_CONNECT = "device-connect"


_P = Permission

_VIEWER: Final = frozenset(
    {
        _P.DEVICES_READ,
        _P.TWINS_READ,
        _P.MESSAGES_READ,
        _P.CAS_READ,
        _P.AUDIT_READ,
        _P.METRICS_READ,
        _P.PROVISIONING_READ,
        _P.ALERTS_READ,
        _P.POSTURE_READ,
        _P.ACCOUNT_SELF,
    }
)

#: The permissions of each role. Read-only; a role missing here would grant nothing.
ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = MappingProxyType(
    {
        Role.VIEWER: _VIEWER,
        Role.OPERATOR: _VIEWER
        | {
            _P.TWINS_WRITE,
            _P.METHODS_INVOKE,
            _P.C2D_SEND,
            _P.DEVICES_STATE,
            _P.CERTIFICATES_REVOKE,
            _P.ALERTS_MANAGE,
        },
        Role.SECURITY_ADMIN: _VIEWER
        | {
            _P.AUDIT_EXPORT,
            _P.OPERATORS_MANAGE,
            _P.TOKENS_MANAGE,
            _P.CAS_MANAGE,
            _P.CERTIFICATES_REVOKE,
            _P.ALERTS_MANAGE,
            _P.POSTURE_MANAGE,
        },
        Role.ADMIN: frozenset(Permission),
        Role.REGISTRY_READ: frozenset({_P.DEVICES_READ}),
        Role.REGISTRY_WRITE: frozenset(
            {
                _P.DEVICES_READ,
                _P.DEVICES_WRITE,
                _P.DEVICES_STATE,
                _P.KEYS_DISCLOSE,
                _P.PROVISIONING_READ,
                _P.PROVISIONING_WRITE,
            }
        ),
        Role.SERVICE_CONNECT: frozenset(
            {
                _P.SERVICE_CONNECT,
                _P.TWINS_READ,
                _P.TWINS_WRITE,
                _P.METHODS_INVOKE,
                _P.C2D_SEND,
                _P.MESSAGES_READ,
            }
        ),
        Role.DEVICE_CONNECT: frozenset({_P.DEVICE_CONNECT}),
    }
)

_BY_NAME: Final[Mapping[str, Role]] = MappingProxyType({role.value: role for role in Role})


def _reject_bare_string(roles: object) -> None:
    # A bare string is an iterable of one-letter "role names": it would silently grant nothing
    # (or, worse, be validated letter by letter). That is always a bug in the caller.
    if isinstance(roles, str):
        raise TypeError("pass a collection of role names, not a single string")


def parse_role(name: str) -> Role:
    """The role called ``name``, for configuration, the CLI and grants.

    Raises:
        ValidationError: no role has this name (the message lists the known roles).
    """
    role = _BY_NAME.get(name)
    if role is None:
        raise ValidationError(f"unknown role; expected one of {', '.join(sorted(_BY_NAME))}")
    return role


def permissions_of(roles: Iterable[str]) -> frozenset[Permission]:
    """The union of the permissions of ``roles``.

    Unknown role names grant nothing (fail closed): a credential stored with a role this
    version does not know keeps only what its known roles give.

    Raises:
        TypeError: ``roles`` is a single string rather than a collection of names.
    """
    _reject_bare_string(roles)
    granted: frozenset[Permission] = frozenset()
    for name in roles:
        role = _BY_NAME.get(name)
        if role is not None:
            granted |= ROLE_PERMISSIONS[role]
    return granted


def require(granted: frozenset[Permission], needed: Permission) -> None:
    """Refuse unless ``needed`` is among the ``granted`` permissions.

    Raises:
        AuthorizationError: the permission is missing; the message names it (and nothing else).
    """
    if needed not in granted:
        raise AuthorizationError(f"permission {needed.value!r} is required")


def require_grantable(granted: frozenset[Permission], roles: Iterable[str]) -> None:
    """Refuse to hand out ``roles`` unless the granter holds every permission they carry.

    Call it when an operator creates or changes an account (after
    ``require(granted, Permission.OPERATORS_MANAGE)``) or issues a token (after
    ``require(granted, Permission.TOKENS_MANAGE)``). It stops privilege escalation through
    delegation: nobody can give a role more than they have themselves.

    Raises:
        TypeError: ``roles`` is a single string rather than a collection of names.
        ValidationError: a role name is unknown (a grant is explicit: it is not silently
            ignored the way :func:`permissions_of` ignores it).
        AuthorizationError: a role carries a permission the granter lacks; the message names
            the role and the first such permission.
    """
    _reject_bare_string(roles)
    for name in roles:
        role = parse_role(name)
        missing = ROLE_PERMISSIONS[role] - granted
        if missing:
            first = min(missing)
            raise AuthorizationError(
                f"granting role {role.value!r} needs permission {first.value!r}"
            )
