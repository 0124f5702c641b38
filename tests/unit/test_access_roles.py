"""Role-based access control: the exact role matrix, its invariants, and the route table."""

from __future__ import annotations

import itertools
import re

import pytest

from ironhub.access import roles as access_roles
from ironhub.access.roles import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    parse_role,
    permissions_of,
    require,
    require_grantable,
)
from ironhub.errors import AuthorizationError, ValidationError

P = Permission
ALL = frozenset(Permission)
READS = frozenset(p for p in Permission if p.value.endswith(":read"))
DEVICE_DATA_WRITES = frozenset(
    {P.DEVICES_WRITE, P.DEVICES_STATE, P.TWINS_WRITE, P.METHODS_INVOKE, P.C2D_SEND}
)
SECURITY_CONTROLS = frozenset({P.OPERATORS_MANAGE, P.TOKENS_MANAGE})

VIEWER = {
    P.DEVICES_READ,
    P.TWINS_READ,
    P.MESSAGES_READ,
    P.CAS_READ,
    P.AUDIT_READ,
    P.METRICS_READ,
    P.PROVISIONING_READ,
    P.ALERTS_READ,
    P.POSTURE_READ,
    P.ACCOUNT_SELF,
}
#: What every role for people holds besides reads: its own account.
SELF = frozenset({P.ACCOUNT_SELF})

# The whole matrix, written out once more by hand: a change to a role must change this too.
EXPECTED: dict[Role, set[Permission]] = {
    Role.VIEWER: VIEWER,
    Role.OPERATOR: VIEWER
    | {
        P.TWINS_WRITE,
        P.METHODS_INVOKE,
        P.C2D_SEND,
        P.DEVICES_STATE,
        P.CERTIFICATES_REVOKE,
        P.ALERTS_MANAGE,
    },
    Role.SECURITY_ADMIN: VIEWER
    | {
        P.AUDIT_EXPORT,
        P.OPERATORS_MANAGE,
        P.TOKENS_MANAGE,
        P.CAS_MANAGE,
        P.CERTIFICATES_REVOKE,
        P.ALERTS_MANAGE,
        P.POSTURE_MANAGE,
    },
    Role.ADMIN: set(Permission),
    Role.REGISTRY_READ: {P.DEVICES_READ},
    Role.REGISTRY_WRITE: {
        P.DEVICES_READ,
        P.DEVICES_WRITE,
        P.DEVICES_STATE,
        P.KEYS_DISCLOSE,
        P.PROVISIONING_READ,
        P.PROVISIONING_WRITE,
    },
    Role.SERVICE_CONNECT: {
        P.SERVICE_CONNECT,
        P.TWINS_READ,
        P.TWINS_WRITE,
        P.METHODS_INVOKE,
        P.C2D_SEND,
        P.MESSAGES_READ,
    },
    Role.DEVICE_CONNECT: {P.DEVICE_CONNECT},
}


def test_all_names_exist_once() -> None:
    assert len(set(access_roles.__all__)) == len(access_roles.__all__)
    for name in access_roles.__all__:
        assert hasattr(access_roles, name), name


def test_permission_names_are_stable() -> None:
    # Stored on credentials and shown in errors: renaming one is a migration.
    assert [p.value for p in Permission] == [
        "devices:read",
        "devices:write",
        "devices:state",
        "keys:disclose",
        "twins:read",
        "twins:write",
        "methods:invoke",
        "c2d:send",
        "messages:read",
        "cas:read",
        "cas:manage",
        "audit:read",
        "audit:export",
        "operators:manage",
        "tokens:manage",
        "metrics:read",
        "provisioning:read",
        "provisioning:write",
        "certificates:revoke",
        "alerts:read",
        "alerts:manage",
        "posture:read",
        "posture:manage",
        "service:connect",
        "device:connect",
        "account:self",
    ]


def test_role_names_are_stable() -> None:
    assert [r.value for r in Role] == [
        "viewer",
        "operator",
        "security-admin",
        "admin",
        "registry-read",
        "registry-write",
        "service-connect",
        "device-connect",
    ]


@pytest.mark.parametrize("role", list(Role))
def test_every_role_has_exactly_its_permissions(role: Role) -> None:
    assert ROLE_PERMISSIONS[role] == frozenset(EXPECTED[role])
    assert permissions_of([role.value]) == frozenset(EXPECTED[role])


def test_every_role_is_defined_and_nothing_else() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)


def test_role_permissions_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        ROLE_PERMISSIONS[Role.VIEWER] = ALL  # type: ignore[index]


# --------------------------------------------------------------------------------------------
# Invariants: what least privilege means here
# --------------------------------------------------------------------------------------------


def test_admin_holds_everything_and_every_other_role_strictly_less() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == ALL
    for role in Role:
        if role is not Role.ADMIN:
            assert ROLE_PERMISSIONS[role] < ALL, role


def test_operator_roles_form_a_hierarchy() -> None:
    viewer = ROLE_PERMISSIONS[Role.VIEWER]
    operator = ROLE_PERMISSIONS[Role.OPERATOR]
    security = ROLE_PERMISSIONS[Role.SECURITY_ADMIN]
    admin = ROLE_PERMISSIONS[Role.ADMIN]
    assert viewer < operator < admin
    assert viewer < security < admin
    # Neither of the two middle roles contains the other.
    assert not operator <= security
    assert not security <= operator


def test_read_only_roles_only_read() -> None:
    for role in (Role.VIEWER, Role.REGISTRY_READ):
        assert ROLE_PERMISSIONS[role] <= READS | SELF, role


def test_viewer_reads_everything_readable() -> None:
    assert ROLE_PERMISSIONS[Role.VIEWER] == READS | SELF


def test_only_admin_and_registry_write_disclose_keys() -> None:
    holders = {role for role in Role if P.KEYS_DISCLOSE in ROLE_PERMISSIONS[role]}
    assert holders == {Role.ADMIN, Role.REGISTRY_WRITE}


def test_security_admin_writes_no_device_data() -> None:
    security = ROLE_PERMISSIONS[Role.SECURITY_ADMIN]
    assert security.isdisjoint(DEVICE_DATA_WRITES | {P.KEYS_DISCLOSE})


def test_operator_cannot_mint_impersonate_or_administer() -> None:
    operator = ROLE_PERMISSIONS[Role.OPERATOR]
    forbidden = {
        P.DEVICES_WRITE,
        P.KEYS_DISCLOSE,
        P.OPERATORS_MANAGE,
        P.TOKENS_MANAGE,
        P.AUDIT_EXPORT,
        P.CAS_MANAGE,
        P.DEVICE_CONNECT,
        P.SERVICE_CONNECT,
        # Enrollments mint identities (and a symmetric one hands out keys); revoking a
        # certificate, incident response, is all of provisioning an operator may do.
        P.PROVISIONING_WRITE,
    }
    assert operator.isdisjoint(forbidden)


def test_separation_of_duties_only_admin_both_administers_and_acts() -> None:
    # Who decides who may act (operators, tokens) never also acts on devices or reads keys,
    # except the admin.
    for role in Role:
        granted = ROLE_PERMISSIONS[role]
        administers = not granted.isdisjoint(SECURITY_CONTROLS)
        acts = not granted.isdisjoint(DEVICE_DATA_WRITES | {P.KEYS_DISCLOSE})
        assert not (administers and acts) or role is Role.ADMIN, role


def test_audit_export_goes_with_audit_read() -> None:
    for role in Role:
        if P.AUDIT_EXPORT in ROLE_PERMISSIONS[role]:
            assert P.AUDIT_READ in ROLE_PERMISSIONS[role], role


def test_writes_come_with_the_matching_read() -> None:
    pairs = [
        (P.DEVICES_WRITE, P.DEVICES_READ),
        (P.DEVICES_STATE, P.DEVICES_READ),
        (P.TWINS_WRITE, P.TWINS_READ),
        (P.CAS_MANAGE, P.CAS_READ),
        (P.PROVISIONING_WRITE, P.PROVISIONING_READ),
        (P.CERTIFICATES_REVOKE, P.PROVISIONING_READ),
        (P.ALERTS_MANAGE, P.ALERTS_READ),
        (P.POSTURE_MANAGE, P.POSTURE_READ),
    ]
    for role in Role:
        granted = ROLE_PERMISSIONS[role]
        for write, read in pairs:
            assert write not in granted or read in granted, (role, write)


def test_connect_permissions_belong_to_their_azure_roles_only() -> None:
    for permission, role in ((P.SERVICE_CONNECT, Role.SERVICE_CONNECT),
                             (P.DEVICE_CONNECT, Role.DEVICE_CONNECT)):  # fmt: skip
        holders = {r for r in Role if permission in ROLE_PERMISSIONS[r]}
        assert holders == {role, Role.ADMIN}


def test_device_connect_grants_nothing_on_the_operator_api() -> None:
    assert ROLE_PERMISSIONS[Role.DEVICE_CONNECT] == {P.DEVICE_CONNECT}


def test_every_permission_is_held_by_some_role_besides_admin() -> None:
    # Otherwise it would be admin-only by accident rather than by a decision recorded here.
    held = frozenset().union(*(ROLE_PERMISSIONS[r] for r in Role if r is not Role.ADMIN))
    assert held == ALL


# --------------------------------------------------------------------------------------------
# The documented table
# --------------------------------------------------------------------------------------------

_ABBREVIATIONS = {
    "viewer": Role.VIEWER,
    "operator": Role.OPERATOR,
    "sec-admin": Role.SECURITY_ADMIN,
    "admin": Role.ADMIN,
    "reg-read": Role.REGISTRY_READ,
    "reg-write": Role.REGISTRY_WRITE,
    "svc-conn": Role.SERVICE_CONNECT,
    "dev-conn": Role.DEVICE_CONNECT,
}


def test_the_docstring_table_matches_the_code() -> None:
    doc = access_roles.__doc__
    assert doc is not None
    lines = doc.splitlines()
    header_index = next(i for i, line in enumerate(lines) if line.strip().startswith("permission "))
    header = lines[header_index]
    columns = [
        (match.start(), _ABBREVIATIONS[match.group()])
        for match in list(re.finditer(r"\S+", header))[1:]
    ]
    assert [role for _, role in columns] == list(Role)
    table: dict[Role, set[Permission]] = {role: set() for role in Role}
    rows = list(itertools.takewhile(str.strip, lines[header_index + 1 :]))
    assert [Permission(row.split()[0]) for row in rows] == list(Permission)
    for row in rows:
        permission = Permission(row.split()[0])
        first_column = columns[0][0]
        marks = {i for i, char in enumerate(row) if char == "x" and i >= first_column}
        for column, role in columns:
            if column in marks:
                table[role].add(permission)
        assert marks <= {column for column, _ in columns}, row
    assert table == {role: set(perms) for role, perms in ROLE_PERMISSIONS.items()}


# --------------------------------------------------------------------------------------------
# permissions_of, require, require_grantable, parse_role
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ([], frozenset()),
        (["nobody"], frozenset()),
        (["Admin"], frozenset()),  # names are exact
        ([" admin"], frozenset()),
        (["reader"], frozenset()),  # the API's old level name is not a role
        (["viewer", "nobody"], ROLE_PERMISSIONS[Role.VIEWER]),
        (["registry-read", "service-connect"],
         ROLE_PERMISSIONS[Role.REGISTRY_READ] | ROLE_PERMISSIONS[Role.SERVICE_CONNECT]),
        (["operator", "security-admin"],
         ROLE_PERMISSIONS[Role.OPERATOR] | ROLE_PERMISSIONS[Role.SECURITY_ADMIN]),
        ((r for r in ["viewer"]), ROLE_PERMISSIONS[Role.VIEWER]),  # any iterable
        ({Role.ADMIN}, ALL),  # members are names too
    ],
)  # fmt: skip
def test_permissions_of_is_the_union_and_unknown_names_grant_nothing(
    roles: list[str], expected: frozenset[Permission]
) -> None:
    assert permissions_of(roles) == expected


def test_a_bare_string_is_a_caller_bug() -> None:
    with pytest.raises(TypeError, match="not a single string"):
        permissions_of("admin")
    with pytest.raises(TypeError, match="not a single string"):
        require_grantable(ALL, "admin")


@pytest.mark.parametrize("permission", list(Permission))
def test_require_passes_with_the_permission_and_names_it_without(permission: Permission) -> None:
    require(frozenset({permission}), permission)
    require(ALL, permission)
    with pytest.raises(AuthorizationError) as exc:
        require(ALL - {permission}, permission)
    assert str(exc.value) == f"permission {permission.value!r} is required"


def test_require_with_nothing_granted_refuses_everything() -> None:
    for permission in Permission:
        with pytest.raises(AuthorizationError):
            require(permissions_of(["ghost"]), permission)


@pytest.mark.parametrize(("granter", "grantee"), list(itertools.product(Role, Role)))
def test_a_granter_can_hand_out_exactly_the_roles_it_covers(granter: Role, grantee: Role) -> None:
    granted = ROLE_PERMISSIONS[granter]
    if ROLE_PERMISSIONS[grantee] <= granted:
        require_grantable(granted, [grantee.value])
    else:
        with pytest.raises(AuthorizationError, match=f"granting role '{grantee.value}'"):
            require_grantable(granted, [grantee.value])


def test_security_admin_cannot_mint_admins_or_operators() -> None:
    security = ROLE_PERMISSIONS[Role.SECURITY_ADMIN]
    require_grantable(security, ["viewer", "security-admin", "registry-read"])
    for role in ("admin", "operator", "registry-write", "service-connect", "device-connect"):
        with pytest.raises(AuthorizationError):
            require_grantable(security, ["viewer", role])


def test_grant_refusal_names_the_first_missing_permission() -> None:
    with pytest.raises(AuthorizationError) as exc:
        require_grantable(ROLE_PERMISSIONS[Role.VIEWER], ["operator"])
    # The missing permissions, in order: alerts:manage, c2d:send, certificates:revoke,
    # devices:state, methods:invoke, twins:write.
    assert str(exc.value) == "granting role 'operator' needs permission 'alerts:manage'"


def test_granting_unknown_roles_is_an_error_not_a_no_op() -> None:
    with pytest.raises(ValidationError, match="unknown role"):
        require_grantable(ALL, ["viewer", "superuser"])
    require_grantable(frozenset(), [])


@pytest.mark.parametrize("role", list(Role))
def test_parse_role_round_trips(role: Role) -> None:
    assert parse_role(role.value) is role


@pytest.mark.parametrize("name", ["", "Admin", "root", "reader", "viewer "])
def test_parse_role_refuses_unknown_names_and_lists_the_known_ones(name: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_role(name)
    assert "admin, device-connect, operator" in str(exc.value)


# --------------------------------------------------------------------------------------------
# The route table: every route of the operator API maps to exactly one permission
# --------------------------------------------------------------------------------------------

# operationId -> the permission the route needs (None: public). The lead wires this into the
# route table; until then it records the decision and is checked against the served routes.
ROUTE_PERMISSIONS: dict[str, Permission | None] = {
    "healthz": None,
    "openapi": None,
    "metrics": P.METRICS_READ,
    "createDevice": P.DEVICES_WRITE,
    "listDevices": P.DEVICES_READ,
    "showDevice": P.DEVICES_READ,
    "deleteDevice": P.DEVICES_WRITE,
    "enableDevice": P.DEVICES_STATE,
    "disableDevice": P.DEVICES_STATE,
    "rotateDeviceKey": P.KEYS_DISCLOSE,
    "deviceConnectionString": P.KEYS_DISCLOSE,
    "createModule": P.DEVICES_WRITE,
    "listModules": P.DEVICES_READ,
    "showModule": P.DEVICES_READ,
    "deleteModule": P.DEVICES_WRITE,
    "rotateModuleKey": P.KEYS_DISCLOSE,
    "moduleConnectionString": P.KEYS_DISCLOSE,
    "showDeviceTwin": P.TWINS_READ,
    "patchDeviceTwin": P.TWINS_WRITE,
    "showModuleTwin": P.TWINS_READ,
    "patchModuleTwin": P.TWINS_WRITE,
    "queryTwins": P.TWINS_READ,
    "invokeDeviceMethod": P.METHODS_INVOKE,
    "invokeModuleMethod": P.METHODS_INVOKE,
    "sendCloudMessage": P.C2D_SEND,
    "listCloudMessages": P.MESSAGES_READ,
    "purgeCloudMessages": P.C2D_SEND,
    "sendModuleInput": P.C2D_SEND,
    "listModuleMessages": P.MESSAGES_READ,
    "purgeModuleMessages": P.C2D_SEND,
    "addCA": P.CAS_MANAGE,
    "listCAs": P.CAS_READ,
    "removeCA": P.CAS_MANAGE,
    "listMessages": P.MESSAGES_READ,
    "tailMessages": P.MESSAGES_READ,
    "listConnections": P.DEVICES_READ,
    "showAuditCheckpoint": P.AUDIT_READ,
    "showAuditKey": P.AUDIT_READ,
    "listAuditRecords": P.AUDIT_READ,
    "auditInclusionProof": P.AUDIT_READ,
    "auditConsistencyProof": P.AUDIT_READ,
    "exportAudit": P.AUDIT_EXPORT,
    "login": None,
    "logout": P.ACCOUNT_SELF,
    "rotatePassword": P.ACCOUNT_SELF,
    "beginMFA": P.ACCOUNT_SELF,
    "confirmMFA": P.ACCOUNT_SELF,
    "listOperators": P.OPERATORS_MANAGE,
    "createOperator": P.OPERATORS_MANAGE,
    "disableOperator": P.OPERATORS_MANAGE,
    "resetOperatorMFA": P.OPERATORS_MANAGE,
    "createToken": P.TOKENS_MANAGE,
    "listTokens": P.TOKENS_MANAGE,
    "revokeToken": P.TOKENS_MANAGE,
    "showProvisioning": P.PROVISIONING_READ,
    "createEnrollment": P.PROVISIONING_WRITE,
    "listEnrollments": P.PROVISIONING_READ,
    "showEnrollment": P.PROVISIONING_READ,
    "updateEnrollment": P.PROVISIONING_WRITE,
    "deleteEnrollment": P.PROVISIONING_WRITE,
    "createEnrollmentGroup": P.PROVISIONING_WRITE,
    "listEnrollmentGroups": P.PROVISIONING_READ,
    "showEnrollmentGroup": P.PROVISIONING_READ,
    "updateEnrollmentGroup": P.PROVISIONING_WRITE,
    "deleteEnrollmentGroup": P.PROVISIONING_WRITE,
    # A derived device key is a device credential: a disclosure like a connection string.
    "computeDeviceKey": P.KEYS_DISCLOSE,
    "createClaimToken": P.PROVISIONING_WRITE,
    "listClaimTokens": P.PROVISIONING_READ,
    "revokeClaimToken": P.PROVISIONING_WRITE,
    "listRegistrations": P.PROVISIONING_READ,
    "showRegistration": P.PROVISIONING_READ,
    "deleteRegistration": P.PROVISIONING_WRITE,
    "listCertificates": P.PROVISIONING_READ,
    "showCertificate": P.PROVISIONING_READ,
    "revokeCertificate": P.CERTIFICATES_REVOKE,
    "revokeDeviceCertificates": P.CERTIFICATES_REVOKE,
    # Public: relying parties fetch the CRL and its CA without an account (serials only).
    "showCRL": None,
    "showDeviceCA": None,
    "listAlerts": P.ALERTS_READ,
    "showAlert": P.ALERTS_READ,
    "acknowledgeAlert": P.ALERTS_MANAGE,
    "resolveAlert": P.ALERTS_MANAGE,
    # Ending a quarantine turns a device's telemetry back on: a change of device state.
    "releaseDevice": P.DEVICES_STATE,
    "openMaintenanceWindow": P.DEVICES_STATE,
    "releaseModule": P.DEVICES_STATE,
    "auditFleet": P.AUDIT_READ,
    # The exposure and compliance reports say where the hub is weak, like the fleet audit.
    "showExposureReport": P.AUDIT_READ,
    "showComplianceReport": P.AUDIT_READ,
    # Device profiles and advisories decide what devices are held to: a security control.
    "listProfiles": P.POSTURE_READ,
    "showProfile": P.POSTURE_READ,
    "listProfileDevices": P.POSTURE_READ,
    "listAdvisories": P.POSTURE_READ,
    "showPostureReport": P.POSTURE_READ,
    "createProfile": P.POSTURE_MANAGE,
    "replaceProfile": P.POSTURE_MANAGE,
    "deleteProfile": P.POSTURE_MANAGE,
    "assignProfile": P.POSTURE_MANAGE,
    "unassignProfile": P.POSTURE_MANAGE,
    "importAdvisories": P.POSTURE_MANAGE,
}


def test_route_permissions_use_read_permissions_for_gets_only() -> None:
    for operation_id, permission in ROUTE_PERMISSIONS.items():
        if permission in READS:
            assert operation_id.startswith(("list", "show", "query", "tail", "metrics", "audit")), (
                operation_id
            )


def test_every_served_route_maps_to_exactly_one_permission() -> None:
    # Imported here: the API pulls in Starlette, which the pure rules above do not need.
    from ironhub.api._handlers import OPERATIONS
    from ironhub.api._routes import is_read

    served = {op.operation_id: op for op in OPERATIONS}
    assert set(served) == set(ROUTE_PERMISSIONS), "a route was added or removed: map it here"
    public = {"healthz", "openapi", "login", "showCRL", "showDeviceCA"}
    for operation_id, op in served.items():
        # Every route declares exactly the permission of the table; only the public routes
        # (no token at all) declare none.
        assert op.permission == ROUTE_PERMISSIONS[operation_id], operation_id
        assert (op.permission is None) == (operation_id in public), operation_id
        # What is not a read is recorded in the audit log before it runs.
        assert is_read(op.permission) == (op.permission is None or op.permission in READS)
