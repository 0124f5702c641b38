"""Azure shared access signature (SAS) tokens, as the device SDKs build them.

Sans-IO: the caller passes the token, the expected resource URI (:func:`resource_uri_for`, for
device and module identities alike), the identity's raw keys and the current wall-clock time.
Every refusal raises :class:`~ironhub.errors.AuthenticationError` with a machine-readable
``reason``; messages never contain the token, the signature or a key.

Token format (azure-iot-mqtt.md §2.3, ``common/auth/sastoken.py`` in the SDK)::

    SharedAccessSignature sr={quote(uri, safe="")}&sig={quote(b64(hmac), safe="")}&se={expiry}
                          [&skn={key name}]

The string to sign is the **encoded** ``sr``, a newline and ``se``; the MAC is HMAC-SHA256
keyed with the raw (base64-decoded) device key.

Reasons raised by :func:`parse_sas_token` and :func:`verify_sas_token`:

=====================  =====================================================================
``malformed-token``    not a SAS token of the grammar above
``wrong-resource``     ``sr`` names another device, module or hub
``bad-signature``      no usable key of the device produces ``sig``
``expired``            validly signed, but ``se`` is in the past
``expiry-too-far``     validly signed, but ``se`` is further ahead than ``max_ttl_seconds``
=====================  =====================================================================

The signature is checked before the expiry on purpose: ``expired`` and ``expiry-too-far`` are
then reported only for tokens really made with the device's key, so an ``expired`` audit event
means a genuine credential replayed late (Defender's ``IoT_Expired_SAS_Token``) and a forgery
always reads ``bad-signature`` (``IoT_Invalid_SAS_Token``). Nothing about the order is secret:
all refusals become the same CONNACK 5.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ironhub.codec.azure import percent_decode, split_identity, validate_identity
from ironhub.errors import AuthenticationError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "MAX_SAS_TOKEN_BYTES",
    "MAX_TOKEN_TTL_SECONDS",
    "MIN_KEY_BYTES",
    "SAS_PREFIX",
    "SasToken",
    "generate_sas_token",
    "parse_sas_token",
    "resource_uri_for",
    "verify_sas_token",
]

#: The scheme prefix, with its single space, exactly as the SDK writes it.
SAS_PREFIX = "SharedAccessSignature "

#: Largest token accepted. A device token is about 150 bytes (the host name dominates); 1024
#: bounds the parsing done before authentication.
MAX_SAS_TOKEN_BYTES = 1024

#: Default limit on how far in the future ``se`` may lie: 365 days. The SDK asks for one hour
#: (``sastoken_ttl``, default 3600 s) and renews two minutes before expiry; longer tokens come
#: from tools (``az iot hub generate-sas-token``) and are bearer credentials that cannot be
#: revoked short of rotating the key, so a bound limits what a leaked token is worth.
MAX_TOKEN_TTL_SECONDS = 365 * 24 * 3600

#: Keys shorter than this never verify anything: Azure requires symmetric keys of 16 to 64
#: bytes, and an empty or tiny key would make signatures forgeable. Failing closed here keeps
#: a registry bug from becoming an authentication bypass.
MIN_KEY_BYTES = 16

_FIELDS = frozenset({"sr", "sig", "se", "skn"})

# Canonical decimal: no sign, no leading zeros, at most 12 digits (year 33658). Leading zeros
# are refused because the signature covers the text of se and we rebuild that text from the
# integer; the SDK writes str(int).
_SE_RE = re.compile(r"0|[1-9][0-9]{0,11}")

# The decoded signature is the standard base64 of a 32-byte HMAC-SHA256: 43 characters and
# one '=' of padding.
_SIG_RE = re.compile(r"[A-Za-z0-9+/]{43}=")

# After the prefix: printable ASCII without space; the SDK encodes everything else.
_TOKEN_BODY_RE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class SasToken:
    """A syntactically valid SAS token, not yet verified.

    Attributes:
        sr: the resource URI exactly as sent, still URL-encoded (it is what was signed).
        sig: the URL-decoded signature (base64 text); kept out of ``repr`` because the token is
            a bearer credential.
        se: the expiry, Unix seconds.
        skn: the URL-decoded key name, if the token has one. It is not part of the signed
            string and ironhub does not use it: device tokens are checked against the device's
            own keys, and hub-level shared-access-policy tokens are not device credentials.
    """

    sr: str
    sig: str = field(repr=False)
    se: int
    skn: str | None = None


def parse_sas_token(password: str | bytes) -> SasToken:
    """Parse the MQTT password of a SAS-authenticated CONNECT.

    Fields may come in any order (the SDK writes ``sr``, ``sig``, ``se``, then ``skn``), each at
    most once; ``sr``, ``sig`` and ``se`` are required, and no other field is allowed.

    Args:
        password: the CONNECT password (MQTT binary data) or its text.

    Returns:
        The parsed token.

    Raises:
        AuthenticationError: reason ``"malformed-token"``, for any deviation from the grammar,
            a token over :data:`MAX_SAS_TOKEN_BYTES`, or non-ASCII bytes.
    """
    if len(password) > MAX_SAS_TOKEN_BYTES:
        raise _malformed("token too long")
    if isinstance(password, bytes):
        try:
            text = password.decode("ascii")
        except UnicodeDecodeError:
            raise _malformed("token is not ASCII") from None
    else:
        text = password
    if not text.startswith(SAS_PREFIX):
        raise _malformed("not a SharedAccessSignature token")
    body = text[len(SAS_PREFIX) :]
    if not _TOKEN_BODY_RE.fullmatch(body):
        raise _malformed("token contains characters outside printable ASCII")
    fields = _split_fields(body)
    if not {"sr", "sig", "se"} <= fields.keys():
        raise _malformed("token lacks sr, sig or se")
    if not _SE_RE.fullmatch(fields["se"]):
        raise _malformed("se must be a canonical decimal integer")
    try:
        # Decode sr now so that garbage is reported as malformed, not as a wrong resource.
        percent_decode(fields["sr"])
        sig = percent_decode(fields["sig"])
        skn = percent_decode(fields["skn"]) if "skn" in fields else None
    except ValidationError:
        raise _malformed("malformed percent-encoding") from None
    if not _SIG_RE.fullmatch(sig):
        raise _malformed("sig is not a base64 HMAC-SHA256")
    return SasToken(sr=fields["sr"], sig=sig, se=int(fields["se"]), skn=skn)


def _split_fields(body: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in body.split("&"):
        name, equals, value = item.partition("=")
        if not equals or not value:
            raise _malformed("token fields must be name=value")
        if name not in _FIELDS:
            raise _malformed("unknown token field")
        if name in fields:
            raise _malformed("duplicate token field")
        fields[name] = value
    return fields


def _malformed(message: str) -> AuthenticationError:
    return AuthenticationError("malformed-token", f"malformed-token: {message}")


def resource_uri_for(hostname: str, client_id: str, module_id: str | None = None) -> str:
    """The resource URI a device or module token must name (azure-iot-mqtt.md §2.3).

    ``{hostname}/devices/{device_id}`` for a device, and
    ``{hostname}/devices/{device_id}/modules/{module_id}`` for a module, not encoded (the token
    carries it as ``quote(uri, safe="")``). The identity is given either as the MQTT ClientId
    (``"dev1"`` or ``"dev1/mod1"``, as the SDK sends it, §2.2) or as a device id with the module
    id passed separately.

    Args:
        hostname: the hub host name the device was configured with (``HostName``, never the
            gateway's).
        client_id: the ClientId ``device`` or ``device/module``; or the device id when
            ``module_id`` is given.
        module_id: the module id, when ``client_id`` is a bare device id.

    Returns:
        The resource URI.

    Raises:
        ValidationError: the ids break :func:`~ironhub.codec.azure.validate_identity` (so an id
            can never add a level to the URI).
    """
    if module_id is None:
        device_id, module_id = split_identity(client_id)
    else:
        device_id = client_id
        validate_identity(device_id, module_id)
    uri = f"{hostname}/devices/{device_id}"
    if module_id is not None:
        uri += f"/modules/{module_id}"
    return uri


def verify_sas_token(
    token: SasToken,
    *,
    expected_uri: str,
    keys: Sequence[bytes],
    now: float,
    max_ttl_seconds: float = MAX_TOKEN_TTL_SECONDS,
) -> int:
    """Verify a parsed token for one identity.

    Checks, in this order: the decoded ``sr`` names ``expected_uri`` (host part compared
    case-insensitively, ASCII only; the path exactly); some key signs it (HMAC-SHA256 over the
    raw encoded ``sr``, a newline and ``se``, compared in constant time with
    :func:`hmac.compare_digest`); ``now <= se``; ``se <= now + max_ttl_seconds``. See the module
    docstring for why the signature comes before the expiry.

    Args:
        token: the parsed token.
        expected_uri: the identity's resource URI, from :func:`resource_uri_for`.
        keys: the identity's raw keys, primary first. Keys shorter than :data:`MIN_KEY_BYTES`
            are never used.
        now: the current wall-clock time, Unix seconds.
        max_ttl_seconds: how far ahead ``se`` may lie.

    Returns:
        The index in ``keys`` of the key that signed the token (0 primary, 1 secondary).

    Raises:
        AuthenticationError: reason ``"malformed-token"``, ``"wrong-resource"``,
            ``"bad-signature"``, ``"expired"`` or ``"expiry-too-far"``.
    """
    try:
        resource = percent_decode(token.sr)
    except ValidationError:
        raise _malformed("malformed percent-encoding") from None
    if not _same_resource(resource, expected_uri):
        raise AuthenticationError("wrong-resource", "token is for another resource")
    matched: int | None = None
    expected_sig = token.sig.encode("ascii", errors="replace")
    for index, key in enumerate(keys):
        if len(key) < MIN_KEY_BYTES:
            continue
        # Every usable key is tried even after a match, so the time taken does not depend on
        # which key matched.
        if hmac.compare_digest(_signature(token.sr, token.se, key), expected_sig) and (
            matched is None
        ):
            matched = index
    if matched is None:
        raise AuthenticationError("bad-signature", "token signature does not verify")
    if token.se < now:
        raise AuthenticationError("expired", "token has expired")
    if token.se > now + max_ttl_seconds:
        raise AuthenticationError("expiry-too-far", "token expiry is too far in the future")
    return matched


def _same_resource(resource: str, expected_uri: str) -> bool:
    host, slash, path = resource.partition("/")
    expected_host, expected_slash, expected_path = expected_uri.partition("/")
    # Host names compare case-insensitively (the SDK preserves case, DNS ignores it), but only
    # in ASCII: Unicode case folding maps e.g. KELVIN SIGN to 'k' and would let a look-alike
    # host name match.
    return (
        host.isascii()
        and host.lower() == expected_host.lower()
        and slash == expected_slash
        and path == expected_path
    )


def _signature(encoded_sr: str, se: int, key: bytes) -> bytes:
    message = f"{encoded_sr}\n{se}".encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest())


def generate_sas_token(uri: str, key: bytes, expiry: int, key_name: str | None = None) -> str:
    """Build a SAS token byte for byte as the SDK's ``RenewableSasToken`` does.

    Used by tests, the bench and tools; a device with the same key, URI and expiry produces the
    same string.

    Args:
        uri: the resource URI (not encoded), e.g. from :func:`resource_uri_for`.
        key: the raw key (the base64-decoded device key).
        expiry: the expiry, Unix seconds.
        key_name: appended as ``skn`` when non-empty, unencoded, as the SDK does.

    Returns:
        The token, ``SharedAccessSignature sr=...&sig=...&se=...[&skn=...]``.
    """
    sr = urllib.parse.quote(uri, safe="")
    sig = urllib.parse.quote(_signature(sr, expiry, key).decode("ascii"), safe="")
    token = f"{SAS_PREFIX}sr={sr}&sig={sig}&se={expiry}"
    if key_name:
        token += f"&skn={key_name}"
    return token
