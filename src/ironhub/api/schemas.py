"""The wire schemas of the operator API, as :class:`msgspec.Struct` types.

Every request body is decoded with ``msgspec.json.decode(body, type=...)`` into one of the
``*Request`` types below; they all forbid unknown fields, so a typo in a field name is a 400
rather than a silently ignored option. Responses are encoded from the other types. The OpenAPI
document (:mod:`ironhub.api.openapi`) is generated from these same classes, so the document
and the wire cannot drift apart.

Timestamps are seconds since the Unix epoch (floats), as stored. Nothing here ever carries a
sealed key, a token hash or a token secret, except the fields whose docstrings say they are
shown once (``primary_key``, ``secondary_key``, ``key``, ``connection_string``; for
provisioning ``primaryKey``, ``secondaryKey``, ``deviceKey`` and a claim token's ``token``).

The provisioning schemas use camelCase member names, as Azure DPS does (``registrationId``,
``initialTwin``), so that scripts written against DPS read them without a translation table.
The alert schemas do too, so that an alert has the same member names and values in the API as
in the monitor's JSON-lines file and webhook bodies (the API adds who handled it).

msgspec resolves the (string) annotations of these classes when it first encodes or decodes
them, so every name used in an annotation here is imported at runtime, never under
``TYPE_CHECKING``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ironhub.codec.dps import MAX_REGISTRATION_ID_CHARS
from ironhub.hub.methods import (
    DEFAULT_METHOD_TIMEOUT_SECONDS,
    MAX_METHOD_TIMEOUT_SECONDS,
    MIN_METHOD_TIMEOUT_SECONDS,
)
from ironhub.registry.query import MAX_QUERY_CHARS

__all__ = [
    "MAX_CERTIFICATE_PEM_CHARS",
    "MAX_DEVICE_ID_CHARS",
    "MAX_TWINS_PER_PAGE",
    "MAX_TWIN_QUERY_CHARS",
    "AddCARequest",
    "AdvisoryImportView",
    "AdvisoryList",
    "AdvisoryPackageView",
    "AdvisoryView",
    "AlertList",
    "AlertView",
    "AssignProfileRequest",
    "AssignedDevicesView",
    "CAList",
    "CAView",
    "CertificateDetailView",
    "CertificateList",
    "CertificateView",
    "ChangeAlertRequest",
    "ClaimTokenList",
    "ClaimTokenView",
    "CloudMessageList",
    "CloudMessageView",
    "ComplianceReportView",
    "ComputeDeviceKeyRequest",
    "ConnectionList",
    "ConnectionStringView",
    "ConnectionView",
    "CreateClaimTokenRequest",
    "CreateDeviceRequest",
    "CreateEnrollmentGroupRequest",
    "CreateEnrollmentRequest",
    "CreateModuleRequest",
    "CreateProfileRequest",
    "CreatedClaimTokenView",
    "CreatedDeviceView",
    "CreatedEnrollmentGroupView",
    "CreatedEnrollmentView",
    "CreatedModuleView",
    "DeviceKeyView",
    "DeviceList",
    "DevicePostureView",
    "DeviceView",
    "EnrollmentGroupList",
    "EnrollmentGroupStateView",
    "EnrollmentGroupView",
    "EnrollmentList",
    "EnrollmentStateView",
    "EnrollmentView",
    "ErrorBody",
    "ErrorDetail",
    "ExposureEntryView",
    "ExposureReportView",
    "FleetAuditView",
    "FleetFindingView",
    "HealthView",
    "InvokeMethodRequest",
    "MaintenanceRequest",
    "MaintenanceView",
    "MessagePage",
    "MessageView",
    "MethodResultView",
    "ModuleList",
    "ModuleView",
    "PostureReportView",
    "ProfileList",
    "ProfileView",
    "ProvisionView",
    "ProvisioningInfoView",
    "PurgedView",
    "QueuedCloudMessageView",
    "RefusedAdvisoryView",
    "RegistrationList",
    "RegistrationView",
    "ReplaceProfileRequest",
    "RevokeCertificateRequest",
    "RevokedCertificatesView",
    "RotatedKeyView",
    "SendCloudMessageRequest",
    "SetEnrollmentRequest",
    "TailLagged",
    "TwinList",
    "TwinPatchRequest",
    "TwinProperties",
    "TwinQueryRequest",
    "TwinView",
    "VulnerabilityView",
]

#: Azure allows device ids of up to 128 characters; longer ids are refused before any lookup.
MAX_DEVICE_ID_CHARS = 128
#: A PEM certificate is a few kilobytes; 16 KiB leaves room for long chains of extensions.
MAX_CERTIFICATE_PEM_CHARS = 16 * 1024
#: ``POST /twins/query`` answers at most this many twins per page (as ``GET /devices``).
MAX_TWINS_PER_PAGE = 1000
#: A twin filter is refused early when longer than the query language accepts.
MAX_TWIN_QUERY_CHARS = MAX_QUERY_CHARS

AuthName = Literal["sas", "x509-ca", "x509-thumbprint"]
#: ``quarantined``: connected, but only security messages are accepted (issue 6); an operator
#: ends it with ``POST /devices/{device_id}/release``.
StateName = Literal["enabled", "disabled", "quarantined"]
StreamName = Literal["telemetry", "security", "lifecycle", "feedback"]
DeviceId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_DEVICE_ID_CHARS)]
CertificatePEM = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CERTIFICATE_PEM_CHARS)]


class _Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are refused."""


class _Response(msgspec.Struct, kw_only=True):
    """Base of response bodies."""


# --- errors ------------------------------------------------------------------------------------


class ErrorDetail(_Response):
    """What went wrong, in a machine-readable code and a sentence for humans."""

    code: str
    message: str


class ErrorBody(_Response):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


class HealthView(_Response):
    """The answer of ``GET /healthz``."""

    status: str


# --- devices -----------------------------------------------------------------------------------


class CreateDeviceRequest(_Request):
    """Create a device identity.

    ``certificates_pem`` holds the primary (and optionally secondary) self-signed certificate
    of an ``x509-thumbprint`` device; it must be empty for the other kinds.
    """

    device_id: DeviceId
    auth: AuthName = "sas"
    certificates_pem: Annotated[list[CertificatePEM], msgspec.Meta(max_length=2)] = []


class DeviceView(_Response):
    """A device identity as the operator sees it: never a key, sealed or not.

    ``connected`` is ``null`` when this process has no device endpoint to ask.
    """

    device_id: str
    auth: AuthName
    state: StateName
    version: int
    created_at: float
    updated_at: float
    primary_thumbprint: str | None = None
    secondary_thumbprint: str | None = None
    connected: bool | None = None


class DeviceList(_Response):
    """One page of devices ordered by id; pass ``next_after`` as ``after`` for the next one."""

    devices: list[DeviceView]
    next_after: str | None


class CreatedDeviceView(_Response, omit_defaults=True):
    """A new device; the keys and the connection string are shown this once only."""

    device: DeviceView
    primary_key: str | None = None
    secondary_key: str | None = None
    connection_string: str | None = None


class RotatedKeyView(_Response):
    """A regenerated SAS key (shown once) and the connection string that uses it."""

    key: str
    connection_string: str


class ConnectionStringView(_Response):
    """An Azure-style device connection string (it contains a key for SAS devices)."""

    connection_string: str


# --- certificate authorities -------------------------------------------------------------------


class AddCARequest(_Request):
    """Register a CA certificate for ``x509-ca`` devices."""

    pem: CertificatePEM


class CAView(_Response):
    """A registered CA certificate (public material only)."""

    fingerprint: str
    subject: str
    created_at: float
    pem: str


class CAList(_Response):
    """Every registered CA."""

    cas: list[CAView]


# --- messages ----------------------------------------------------------------------------------


class MessageView(_Response):
    """One committed message of the log.

    ``payload_text`` is the payload decoded as UTF-8, or ``null`` when it is not valid UTF-8;
    ``payload_base64`` always holds the exact bytes. When a property name occurs more than once
    in the stored property bag, the last value is shown.
    """

    seq: int
    stream: StreamName
    device_id: str | None
    enqueued_at: float
    properties: dict[str, str]
    payload_base64: str
    payload_text: str | None


class MessagePage(_Response):
    """Messages with ``seq > after`` in order; pass ``next_after`` as ``after`` to continue."""

    messages: list[MessageView]
    next_after: int


class TailLagged(_Response):
    """Data of the ``lagged`` event that ends a tail whose reader fell behind."""

    reason: str
    last_seq: int


# --- connections -------------------------------------------------------------------------------


class ConnectionView(_Response):
    """One live, authenticated device connection."""

    device_id: str
    peer: str
    auth_kind: str
    connected_at: float
    keep_alive_seconds: int


class ConnectionList(_Response):
    """The live connections of this hub process (empty when it runs no device endpoint)."""

    connections: list[ConnectionView]


# --- modules -----------------------------------------------------------------------------------


class CreateModuleRequest(_Request):
    """Create a module identity of an existing device (same rules as a device identity)."""

    module_id: DeviceId
    auth: AuthName = "sas"
    certificates_pem: Annotated[list[CertificatePEM], msgspec.Meta(max_length=2)] = []


class ModuleView(_Response):
    """A module identity as the operator sees it: never a key, sealed or not."""

    device_id: str
    module_id: str
    auth: AuthName
    state: StateName
    version: int
    created_at: float
    updated_at: float
    primary_thumbprint: str | None = None
    secondary_thumbprint: str | None = None
    connected: bool | None = None


class ModuleList(_Response):
    """Every module identity of one device, ordered by module id."""

    modules: list[ModuleView]


class CreatedModuleView(_Response, omit_defaults=True):
    """A new module; the keys and the connection string are shown this once only."""

    module: ModuleView
    primary_key: str | None = None
    secondary_key: str | None = None
    connection_string: str | None = None


# --- twins -------------------------------------------------------------------------------------


class TwinPatchRequest(_Request):
    """Change a twin's desired properties and/or tags (JSON merge: ``null`` deletes a member).

    The members are free-form JSON objects; the twin rules (key characters, depth, sizes) are
    checked by the twin service. ``version`` makes the change conditional, like an ``If-Match``
    header: it applies only if the twin's current ``version`` is this one (else 412).
    """

    desired: dict[str, Any] | None = None
    tags: dict[str, Any] | None = None
    version: Annotated[int, msgspec.Meta(ge=1)] | None = None


class TwinProperties(_Response):
    """The desired and reported sections, each with its ``$version`` member."""

    desired: dict[str, Any]
    reported: dict[str, Any]


class TwinView(_Response, rename="camel", omit_defaults=True):
    """A device or module twin, in the Azure service's document shape.

    ``moduleId`` is present for module twins only. ``version`` changes with every change of
    any section and is the answer's ``ETag``.
    """

    device_id: str
    version: int
    tags: dict[str, Any]
    properties: TwinProperties
    module_id: str | None = None


class TwinQueryRequest(_Request):
    """Twins matching a filter, ordered by identity (``device`` or ``device/module``).

    ``after`` continues a previous page (pass its ``next_after``).
    """

    where: Annotated[str, msgspec.Meta(max_length=MAX_TWIN_QUERY_CHARS)]
    after: Annotated[str, msgspec.Meta(max_length=2 * MAX_DEVICE_ID_CHARS + 1)] = ""
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_TWINS_PER_PAGE)] = 100


class TwinList(_Response):
    """One page of twins; ``next_after`` is ``null`` on the last page."""

    twins: list[TwinView]
    next_after: str | None


# --- direct methods ----------------------------------------------------------------------------


class InvokeMethodRequest(_Request):
    """Call a direct method on a connected device or module and wait for its answer.

    ``payload`` is any JSON value, at most 128 KiB once encoded (checked by the method
    service); ``timeout_seconds`` is how long the hub waits for the answer.
    """

    payload: Any = None
    timeout_seconds: Annotated[
        float, msgspec.Meta(ge=MIN_METHOD_TIMEOUT_SECONDS, le=MAX_METHOD_TIMEOUT_SECONDS)
    ] = DEFAULT_METHOD_TIMEOUT_SECONDS


class MethodResultView(_Response):
    """The device's answer: the status it chose and its JSON payload."""

    status: int
    payload: Any


# --- cloud-to-device messages ------------------------------------------------------------------


class SendCloudMessageRequest(_Request):
    """Queue a cloud-to-device (or module input) message.

    Exactly one of ``body`` (text, sent as UTF-8) and ``body_base64`` (any bytes) is required.
    ``properties`` are application properties; ``ttl_seconds`` defaults to the hub's; sizes,
    property names and the TTL range are checked by the cloud-to-device service.
    """

    body: str | None = None
    body_base64: str | None = None
    properties: dict[str, str] = {}
    ttl_seconds: float | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None


class CloudMessageView(_Response):
    """A queued cloud-to-device message, without its payload.

    ``properties`` are those that go on the wire: system (``$.mid``, ``$.exp``, ...) and
    application properties; when a name occurs twice the last value is shown.
    """

    seq: int
    device_id: str
    module_id: str | None
    input_name: str | None
    message_id: str | None
    enqueued_at: float
    expires_at: float
    size: int
    properties: dict[str, str]
    delivery_count: int


class QueuedCloudMessageView(CloudMessageView):
    """A queued message with its payload: base64 always, and as text when it is UTF-8."""

    payload_base64: str
    payload_text: str | None


class CloudMessageList(_Response):
    """The messages queued for one device or module, oldest first (expired ones included)."""

    messages: list[QueuedCloudMessageView]


class PurgedView(_Response):
    """How many queued messages a purge removed."""

    purged: int


# --- provisioning ------------------------------------------------------------------------------

AttestationName = Literal["symmetric", "x509"]
ReprovisionName = Literal["keep-twin", "reset-twin"]
RegistrationId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REGISTRATION_ID_CHARS)]
#: An individual enrollment takes one or two device certificates, a group up to ten CAs (the
#: service applies the exact rule); this bound only keeps the body small.
_EnrollmentCertificates = Annotated[list[CertificatePEM], msgspec.Meta(max_length=10)]


class ProvisioningInfoView(_Response, rename="camel"):
    """What a device is configured with to provision itself (``ironhub provisioning info``).

    ``enabled`` is false when the hub serves no DPS-shaped connections; enrollments can still
    be managed. ``deviceCaPem`` is the CA of every certificate issued from a CSR.
    """

    id_scope: str
    provisioning_host: str
    port: int
    assigned_hub: str
    enabled: bool
    device_ca_pem: str


class CreateEnrollmentRequest(_Request, rename="camel"):
    """Create an individual enrollment for one registration id.

    ``symmetric``: two keys are generated and shown in the answer only. ``x509``:
    ``certificates`` holds one or two self-signed device certificates (PEM), matched by
    thumbprint. ``initialTwin`` is ``{"tags": {...}, "properties": {"desired": {...}}}``;
    ``allocationPayload`` a JSON object handed to the device when it registers.
    """

    registration_id: RegistrationId
    attestation: AttestationName
    certificates: _EnrollmentCertificates = []
    device_id: DeviceId | None = None
    initial_twin: dict[str, Any] | None = None
    allocation_payload: dict[str, Any] | None = None
    reprovision: ReprovisionName = "keep-twin"
    enabled: bool = True


class CreateEnrollmentGroupRequest(_Request, rename="camel"):
    """Create an enrollment group.

    ``symmetric``: two group keys are generated and shown in the answer only; each device's
    key is derived from them (``compute-device-key``). ``x509``: ``certificates`` holds the CA
    certificates (PEM) the devices' leaves chain to; the registration id is the leaf's CN.
    """

    group_id: DeviceId
    attestation: AttestationName
    certificates: _EnrollmentCertificates = []
    initial_twin: dict[str, Any] | None = None
    allocation_payload: dict[str, Any] | None = None
    reprovision: ReprovisionName = "keep-twin"
    enabled: bool = True


class SetEnrollmentRequest(_Request, rename="camel"):
    """Enable or disable an enrollment (disabling also disables the devices it provisioned)."""

    enabled: bool


class EnrollmentView(_Response, rename="camel"):
    """An individual enrollment: never a key, sealed or not. ``certificates`` are public PEMs."""

    registration_id: str
    attestation: AttestationName
    enabled: bool
    device_id: str | None
    certificates: list[str]
    initial_twin: dict[str, Any]
    allocation_payload: dict[str, Any] | None
    reprovision: ReprovisionName
    version: int
    created_at: float
    updated_at: float


class EnrollmentGroupView(_Response, rename="camel"):
    """An enrollment group: never a key, sealed or not. ``certificates`` are its CA PEMs."""

    group_id: str
    attestation: AttestationName
    enabled: bool
    certificates: list[str]
    initial_twin: dict[str, Any]
    allocation_payload: dict[str, Any] | None
    reprovision: ReprovisionName
    version: int
    created_at: float
    updated_at: float


class CreatedEnrollmentView(_Response, rename="camel", omit_defaults=True):
    """A new enrollment; a symmetric one's keys (base64) are shown this once only."""

    enrollment: EnrollmentView
    primary_key: str | None = None
    secondary_key: str | None = None


class CreatedEnrollmentGroupView(_Response, rename="camel", omit_defaults=True):
    """A new group; a symmetric group's keys (base64) are shown this once only."""

    group: EnrollmentGroupView
    primary_key: str | None = None
    secondary_key: str | None = None


class EnrollmentStateView(_Response, rename="camel"):
    """An enrollment after enabling or disabling it, and the devices that were disabled."""

    enrollment: EnrollmentView
    disabled_devices: list[str]


class EnrollmentGroupStateView(_Response, rename="camel"):
    """A group after enabling or disabling it, and the devices that were disabled."""

    group: EnrollmentGroupView
    disabled_devices: list[str]


class EnrollmentList(_Response, rename="camel"):
    """One page of enrollments by id; pass ``nextAfter`` as ``after`` for the next one."""

    enrollments: list[EnrollmentView]
    next_after: str | None


class EnrollmentGroupList(_Response, rename="camel"):
    """One page of groups by id; pass ``nextAfter`` as ``after`` for the next one."""

    groups: list[EnrollmentGroupView]
    next_after: str | None


class ComputeDeviceKeyRequest(_Request, rename="camel"):
    """The registration id whose key a symmetric group derives."""

    registration_id: RegistrationId


class DeviceKeyView(_Response, rename="camel"):
    """A derived device key (base64 of HMAC-SHA256(group primary key, registration id))."""

    registration_id: str
    device_key: str


class CreateClaimTokenRequest(_Request, rename="camel"):
    """A claim token for a group: how many devices it may register, and for how long.

    The upper bounds are the hub's configuration (``provisioning.claim_token_max_uses``,
    ``claim_token_max_lifetime_days``).
    """

    uses: Annotated[int, msgspec.Meta(ge=1, le=2**31)] = 1
    expires_in_seconds: Annotated[int, msgspec.Meta(ge=1, le=2**31)] = 86400


class ClaimTokenView(_Response, rename="camel"):
    """A claim token without its secret or hash.

    ``state`` is ``active``, ``revoked``, ``expired`` or ``exhausted`` (all uses spent), as of
    the answer.
    """

    token_id: str
    group_id: str
    max_uses: int
    uses: int
    created_at: float
    expires_at: float
    created_by: str
    revoked: bool
    state: Literal["active", "revoked", "expired", "exhausted"]


class CreatedClaimTokenView(ClaimTokenView, rename="camel"):
    """A new claim token; ``token`` is its secret, shown this once only."""

    token: str


class ClaimTokenList(_Response, rename="camel"):
    """Claim tokens, oldest first."""

    claim_tokens: list[ClaimTokenView]


class RegistrationView(_Response, rename="camel"):
    """The outcome of the last registration of one registration id.

    ``enrollmentId`` names the individual enrollment or, when ``group`` is true, the group
    that admitted it; ``certificateSerial`` the certificate issued at that registration.
    """

    registration_id: str
    enrollment_id: str
    group: bool
    device_id: str
    status: str
    substatus: str
    version: int
    created_at: float
    updated_at: float
    error_code: int | None
    error_message: str | None
    certificate_serial: str | None


class RegistrationList(_Response, rename="camel"):
    """One page of registrations by id; pass ``nextAfter`` as ``after`` for the next one."""

    registrations: list[RegistrationView]
    next_after: str | None


class CertificateView(_Response, rename="camel"):
    """A certificate issued by the device CA (never a private key: the hub has none).

    ``serial`` and ``thumbprint`` (SHA-256 of the DER) are upper-case hex.
    """

    serial: str
    device_id: str
    registration_id: str
    thumbprint: str
    not_before: float
    not_after: float
    issued_at: float
    revoked: bool
    revoked_at: float | None
    revocation_reason: str | None


class CertificateDetailView(CertificateView, rename="camel"):
    """An issued certificate with its PEM."""

    pem: str


class CertificateList(_Response, rename="camel"):
    """One page of certificates by serial; pass ``nextAfter`` as ``after`` for the next one."""

    certificates: list[CertificateView]
    next_after: str | None


class RevokeCertificateRequest(_Request, rename="camel"):
    """Why a certificate is revoked: an RFC 5280 reason name (default ``unspecified``)."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "unspecified"


class RevokedCertificatesView(_Response, rename="camel"):
    """The serials a device's revocation revoked (those revoked before are not repeated)."""

    revoked: list[str]


# --- fleet audit -------------------------------------------------------------------------------


class FleetFindingView(_Response, rename="camel"):
    """One finding of the fleet audit (:mod:`ironhub.monitor.fleet` lists the checks).

    ``subject`` names what it is about (an identity, several, an account, a setting);
    ``problem`` and ``fix`` are one sentence each and never hold a secret.
    """

    check: str
    severity: SeverityName
    subject: str
    problem: str
    fix: str


class FleetAuditView(_Response, rename="camel"):
    """The fleet audit: findings most severe first, when it ran, what it looked at.

    ``devices`` counts the identities audited, devices and modules.
    """

    findings: list[FleetFindingView]
    checked_at: float
    devices: int


# --- security monitoring -----------------------------------------------------------------------

AlertStateName = Literal["open", "acknowledged", "resolved"]
SeverityName = Literal["low", "medium", "high", "critical"]


class ChangeAlertRequest(_Request, rename="camel"):
    """The body of an acknowledgement or a resolution: ``{}`` (room for later members).

    The actor recorded on the alert is the caller, never a name given in the body.
    """


class AlertView(_Response, rename="camel"):
    """A security alert raised by the monitor (issue 6).

    One alert stands for every finding of the same ``alertType`` and ``deviceId`` while it is
    not resolved: ``count`` findings, the first at ``createdAt``, the last at ``lastSeenAt``.
    ``evidence`` holds message-log sequence numbers (``GET /messages?after=seq-1&limit=1``),
    newest last; ``details`` small facts of the detector (never a payload or a secret);
    ``actions`` the response actions the playbook took (``quarantine``, ``disable``,
    ``revoke``, ``notify``). ``acknowledgedBy`` and ``resolvedBy`` name the operators.
    ``deviceId`` is ``null`` for an alert about a source address rather than a device.
    """

    alert_id: str
    alert_type: str
    severity: SeverityName
    device_id: str | None
    detector: str
    summary: str
    state: AlertStateName
    created_at: float
    updated_at: float
    last_seen_at: float
    count: int
    evidence: list[int]
    details: dict[str, Any]
    actions: list[str]
    acknowledged_by: str | None
    resolved_by: str | None
    version: int


class AlertList(_Response, rename="camel"):
    """One page of alerts, oldest first; pass ``nextAfter`` as ``after`` for the next one."""

    alerts: list[AlertView]
    next_after: str | None


class MaintenanceRequest(_Request, rename="camel"):
    """Open a maintenance window: USB devices and console logins pass unalerted in it.

    ``startsAt`` (Unix seconds) defaults to now; the window lasts ``durationSeconds`` (at
    most a week).
    """

    duration_seconds: int
    starts_at: float | None = None


class MaintenanceView(_Response, rename="camel"):
    """A maintenance window that was opened."""

    device_id: str
    starts_at: float
    ends_at: float


# --- device posture: profiles, advisories, the vulnerable-device report (issue 6) ---------------


class CreateProfileRequest(_Request, rename="camel"):
    """Create a device profile: ``profile`` is the document (ironhub.monitor.profiles)."""

    name: str
    profile: dict[str, Any]


class ReplaceProfileRequest(_Request, rename="camel"):
    """Replace a device profile's document."""

    profile: dict[str, Any]


class ProfileView(_Response, rename="camel"):
    """A device profile: its document as stored (canonical form) and its version."""

    name: str
    profile: dict[str, Any]
    created_at: float
    updated_at: float
    version: int


class ProfileList(_Response, rename="camel"):
    """Every device profile, by name."""

    profiles: list[ProfileView]


class AssignProfileRequest(_Request, rename="camel"):
    """Devices to assign a profile to (1 to 1000 device ids; modules share their device's)."""

    device_ids: list[str]


class AssignedDevicesView(_Response, rename="camel"):
    """The devices whose twin tag ``ironhub.profile`` names a profile."""

    profile: str
    device_ids: list[str]


class RefusedAdvisoryView(_Response, rename="camel"):
    """One entry of an import that was not taken, and why."""

    entry: str
    reason: str


class AdvisoryImportView(_Response, rename="camel"):
    """What an advisory import did; ``total`` is the number stored afterwards."""

    source: str
    added: int
    updated: int
    unchanged: int
    withdrawn: int
    refused: int
    refused_entries: list[RefusedAdvisoryView]
    total: int
    imported_at: float


class AdvisoryPackageView(_Response, rename="camel"):
    """A package an advisory covers."""

    ecosystem: str
    name: str


class AdvisoryView(_Response, rename="camel"):
    """An imported advisory (normalised; the OSV document itself is not kept)."""

    id: str
    modified: str
    severity: str
    summary: str
    aliases: list[str]
    packages: list[AdvisoryPackageView]


class AdvisoryList(_Response, rename="camel"):
    """Imported advisories in id order, with the total and the last import's time."""

    advisories: list[AdvisoryView]
    total: int
    imported_at: float | None


class VulnerabilityView(_Response, rename="camel"):
    """A package on a device that an advisory covers."""

    advisory_id: str
    aliases: list[str]
    severity: str
    summary: str
    package: str
    installed_version: str
    fixed: str | None


class DevicePostureView(_Response, rename="camel"):
    """One device's problems: below baseline, vulnerable, anti-malware, hardware drift."""

    device_id: str
    profile: str | None
    profile_missing: bool
    inventory_at: float | None
    outdated: bool
    vulnerable: bool
    below_baseline: list[str]
    vulnerabilities: list[VulnerabilityView]
    antimalware: list[str]
    drift: list[str]


class PostureReportView(_Response, rename="camel"):
    """The outdated/vulnerable-device report: devices with a problem, worst first."""

    devices: list[DevicePostureView]
    checked: int
    advisories: int
    checked_at: float


# --- reports: exposure and compliance (issue 6)


class ExposureEntryView(_Response, rename="camel"):
    """One enabled listener, protocol or API route (:func:`ironhub.monitor.compliance.exposure`).

    ``authentication`` says in words what a caller must present (``none`` for a public route);
    ``notes`` what deserves care (``public: no token``, ``binds beyond loopback``), or ``""``.
    """

    kind: Literal["listener", "protocol", "route"]
    name: str
    where: str
    authentication: str
    notes: str


class ExposureReportView(_Response, rename="camel"):
    """Everything the hub exposes: listeners, then protocols, then routes in table order."""

    entries: list[ExposureEntryView]
    checked_at: float


class ProvisionView(_Response, rename="camel"):
    """One provision of ETSI EN 303 645 or capability of NISTIR 8259A, judged from the facts.

    ``evidence`` cites the facts it was judged on, one sentence each; ``fix`` says what would
    make it pass (``""`` when it passes). The rules are in :mod:`ironhub.monitor.compliance`.
    """

    framework: Literal["ETSI EN 303 645", "NISTIR 8259A"]
    ref: str
    title: str
    status: Literal["pass", "fail"]
    evidence: list[str]
    fix: str


class ComplianceReportView(_Response, rename="camel"):
    """The 13 ETSI EN 303 645 provisions, then the six NISTIR 8259A capabilities."""

    provisions: list[ProvisionView]
    passed: int
    failed: int
    checked_at: float
