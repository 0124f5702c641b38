"""The DPS wire codec (src/ironhub/codec/dps.py): grammar, builders, credentials and vectors.

What the SDK sends is rebuilt here the way azure-iot-device 2.14.0 builds it
(``provisioning/pipeline/mqtt_topic_provisioning.py``, ``pipeline_stages_provisioning_mqtt.py``,
``DeviceRegistrationPayload.get_json_string``), and what the service sends is read back the way
the SDK reads it (the split at ``$`` of ``extract_properties_from_dps_response_topic`` and
``extract_status_code_from_dps_response_topic``, and ``_form_complete_result``), by replicas:
the SDK lives in another virtualenv. The worked examples of azure-iot-mqtt.md §5.4 are tests.

Every case of tests/vectors/dps.json runs here too; tests/fuzz/fuzz_dps.py mutates them, and a
short run of it closes the file.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import urllib.parse
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ironhub.codec import dps, sas
from ironhub.codec.azure import MAX_REQUEST_ID_CHARS, is_dps_username
from ironhub.codec.dps import (
    DPS_API_VERSION,
    DPS_KEY_NAME,
    MAX_CLAIM_TOKEN_CHARS,
    MAX_CSR_CHARS,
    MAX_DPS_JSON_DEPTH,
    MAX_DPS_MESSAGE_BYTES,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_OPERATION_ID_CHARS,
    MAX_REGISTRATION_ID_CHARS,
    MAX_RETRY_AFTER_SECONDS,
    OPERATION_STATUSES,
    REGISTRATION_SUBSTATUSES,
    RESPONSE_FILTER,
    DpsUsername,
    RegisterBody,
    RegisterRequest,
    RegistrationState,
    StatusRequest,
    default_id_scope,
    derive_device_key,
    dps_resource_uri,
    error_body,
    format_timestamp,
    operation_body,
    parse_dps_request,
    parse_dps_username,
    parse_register_body,
    parse_response_topic,
    register_body,
    register_topic,
    response_topic,
    status_topic,
    validate_registration_id,
    verify_dps_token,
)
from ironhub.codec.sas import SasToken, generate_sas_token, parse_sas_token
from ironhub.errors import AuthenticationError, ValidationError

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType

HARNESS: ModuleType = importlib.import_module("tests.fuzz.fuzz_dps")
VECTORS = HARNESS.load_dps_vectors()

SCOPE = "0ne000ABCDE"
RID = "sensor-0042"
GROUP_KEY = b"enrollment-group-secret-32bytes!"
SE = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW = SE - 3600.0
UUID = "6f1c0b5e-2d4a-4f5b-9c1e-1a2b3c4d5e6f"
OPERATION_ID = "4.002305f54fc89692.b1f11200-df3b-4cc3-8a5b-70b4e2b1f6e8"
# azure-iot-mqtt.md §5.4, the worked example, accepted by the SDK end to end.
DERIVED_KEY_B64 = "XeHpLfV+o3P8zs3WE0RtTKBoGFDrj3qQzrmsh5FIS2o="
WORKED_TOKEN = (
    "SharedAccessSignature sr=0ne000ABCDE%2Fregistrations%2Fsensor-0042"
    "&sig=qygHoxY7Hj9RfCp7Q0qBX1YbJkNJZ2piwITj7C%2FiOtA%3D&se=1767225600"
)
USER_AGENT = (
    "azure-iot-device-provisioning-py/2.14.0(3.11.7;Linux #1 SMP PREEMPT_DYNAMIC @0;x86_64)"
)
PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))


# --- replicas of the SDK ---------------------------------------------------------------------------


def sdk_username(id_scope: str, registration_id: str) -> str:
    """pipeline_stages_provisioning_mqtt.py: the CONNECT username."""
    query = urllib.parse.urlencode(
        [("api-version", DPS_API_VERSION), ("ClientVersion", USER_AGENT)],
        quote_via=urllib.parse.quote,
    )
    return f"{id_scope}/registrations/{registration_id}/{query}"


def sdk_register_topic(request_id: str) -> str:
    """mqtt_topic_provisioning.get_register_topic_for_publish."""
    return "$dps/registrations/PUT/iotdps-register/?$rid={}".format(
        urllib.parse.quote(str(request_id), safe="")
    )


def sdk_query_topic(request_id: str, operation_id: str) -> str:
    """mqtt_topic_provisioning.get_query_topic_for_publish."""
    return "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={}&operationId={}".format(
        urllib.parse.quote(str(request_id), safe=""),
        urllib.parse.quote(str(operation_id), safe=""),
    )


def sdk_register_body(registration_id: str, payload: object) -> bytes:
    """DeviceRegistrationPayload.get_json_string, encoded as the MQTT transport does."""
    return json.dumps(
        {"registrationId": registration_id, "payload": payload}, sort_keys=True
    ).encode()


def sdk_read_result(body: bytes) -> dict[str, Any]:
    """pipeline_stages_provisioning.py: _decode_response and _form_complete_result."""
    decoded = json.loads(body.decode("utf-8"))
    state = decoded.get("registrationState", None)
    result: dict[str, Any] = {
        "operation_id": decoded.get("operationId", None),
        "status": decoded.get("status", None),
        "registration_state": None,
    }
    if state is not None:
        result["registration_state"] = {
            "device_id": state.get("deviceId", None),
            "assigned_hub": state.get("assignedHub", None),
            "sub_status": state.get("substatus", None),
            "created_date_time": state.get("createdDateTimeUtc", None),
            "last_update_date_time": state.get("lastUpdatedDateTimeUtc", None),
            "etag": state.get("etag", None),
            # RegistrationState.response_payload
            "payload": json.dumps(state.get("payload", None), sort_keys=True),
        }
    return result


def worked_key() -> bytes:
    return base64.b64decode(DERIVED_KEY_B64)


def state(**changes: Any) -> RegistrationState:
    fields: dict[str, Any] = {
        "registration_id": RID,
        "status": "assigned",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "updated_at": "2026-01-01T00:00:02.500000Z",
        "assigned_hub": "hub.example.net",
        "device_id": RID,
        "substatus": "initialAssignment",
        "etag": "IjE0MDAzZTk5LTAwMDAtMDgwMC0wMDAwLTVkMGNhNGYzMDAwMCI=",
    }
    fields.update(changes)
    return RegistrationState(**fields)


# --- the public surface ----------------------------------------------------------------------------


def test_constants() -> None:
    assert MAX_DPS_MESSAGE_BYTES == 96 * 1024
    assert RESPONSE_FILTER == "$dps/registrations/res/#"
    assert DPS_API_VERSION == "2019-03-31"
    assert DPS_KEY_NAME == "registration"
    assert MAX_REGISTRATION_ID_CHARS == MAX_OPERATION_ID_CHARS == 128
    assert MAX_DPS_JSON_DEPTH == 16
    assert MAX_CSR_CHARS == 16 * 1024
    assert MAX_CLAIM_TOKEN_CHARS == 256
    assert {"assigning", "assigned", "failed", "disabled"} <= OPERATION_STATUSES
    assert "initialAssignment" in REGISTRATION_SUBSTATUSES


def test_all_is_public_documented_and_complete() -> None:
    assert len(set(dps.__all__)) == len(dps.__all__)
    assert not any(name.startswith("_") for name in dps.__all__)
    for name in dps.__all__:
        value = getattr(dps, name)
        if callable(value):
            assert value.__doc__, name
    public_functions = {
        name
        for name, value in vars(dps).items()
        if callable(value) and getattr(value, "__module__", None) == dps.__name__
        if not name.startswith("_")
    }
    assert public_functions <= set(dps.__all__)


def test_public_functions_state_what_they_raise() -> None:
    for name in dps.__all__:
        value = getattr(dps, name)
        if callable(value) and not isinstance(value, type):
            assert "Raises:" in (value.__doc__ or ""), name


def test_records_are_frozen() -> None:
    request = RegisterRequest("1")
    with pytest.raises(FrozenInstanceError):
        request.request_id = "2"  # type: ignore[misc]


def test_register_body_repr_hides_the_claim_token() -> None:
    body = RegisterBody(registration_id=RID, payload_json=None, csr=None, claim_token="secret-ct")
    assert "secret-ct" not in repr(body)
    assert RID in repr(body)


# --- registration ids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "registration_id",
    [
        "sensor-0042",
        "a",
        "0",
        "Sensor-0042",
        "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",  # Azure's documented example
        "a.b_c:d-e",
        "ends-with-dash-",
        "a" * 128,
    ],
)
def test_valid_registration_ids(registration_id: str) -> None:
    assert validate_registration_id(registration_id) is registration_id


@pytest.mark.parametrize(
    ("registration_id", "rule"),
    [
        ("", "1 to 128"),
        ("a" * 129, "1 to 128"),
        ("sensor.", "must end"),
        ("sensor_", "must end"),
        ("sensor:", "must end"),
        ("a@b", "may contain only"),
        ("a/b", "may contain only"),
        ("a+b", "may contain only"),
        ("a#b", "may contain only"),
        ("a$b", "may contain only"),
        ("a%2D", "may contain only"),
        ("a b", "may contain only"),
        ("a\x00", "may contain only"),
        ("s\u00e9nsor", "may contain only"),
        ("\u0661\u0662", "may contain only"),
        ("-sensor", "start with"),
        (".sensor", "start with"),
        (":sensor", "start with"),
    ],
)
def test_invalid_registration_ids(registration_id: str, rule: str) -> None:
    with pytest.raises(ValidationError, match=rule) as raised:
        validate_registration_id(registration_id)
    assert "registration id" in str(raised.value)


def test_registration_id_must_be_text() -> None:
    with pytest.raises(ValidationError, match="string"):
        validate_registration_id(b"sensor")  # type: ignore[arg-type]


# --- usernames ---------------------------------------------------------------------------------


def test_the_sdk_username_parses() -> None:
    username = sdk_username(SCOPE, RID)
    assert "?" not in username
    assert "ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%283.11.7%3BLinux" in username
    assert parse_dps_username(username, client_id=RID) == DpsUsername(SCOPE, RID, "2019-03-31")


@given(
    st.text(alphabet="abcdefXYZ0123456789", min_size=1, max_size=64),
    st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,126}[A-Za-z0-9-])?", fullmatch=True),
)
def test_every_valid_sdk_username_parses(id_scope: str, registration_id: str) -> None:
    parsed = parse_dps_username(sdk_username(id_scope, registration_id), client_id=registration_id)
    assert (parsed.id_scope, parsed.registration_id) == (id_scope, registration_id)


@pytest.mark.parametrize(
    ("username", "client_id", "rule"),
    [
        (f"{SCOPE}/registrations/{RID}/api-version=2019-03-31&x=" + "a" * 4096, RID, "too long"),
        (f"{SCOPE}/registrations/{RID}/?api-version=2019-03-31", RID, "must be"),
        (f"{SCOPE}/registrations/{RID}/api-version=2019-03-31", "sensor-0043", "ClientId"),
        (f"{SCOPE}/registrations/Sensor-0042/api-version=2019-03-31", RID, "ClientId"),
        (f"{SCOPE}/registrations/sensor./api-version=2019-03-31", "sensor.", "must end"),
        (f"{SCOPE}/registrations/{RID}/api-version=&ClientVersion=x", RID, "api-version"),
        (f"{SCOPE}/registrations/{RID}/api-version=2019 03 31", RID, "api-version"),
        (f"{SCOPE}/registrations/{RID}/api-version=2019-03-31&api-version=1", RID, "duplicate"),
        (f"{SCOPE}/registrations/{RID}/api-version=2019-03-31&ClientVersion=%zz", RID, "percent"),
        (f"{SCOPE}/registrations/{RID}/api-version=2019-03-31&", RID, "key=value"),
        (f"{SCOPE}/registrations/{RID}/api-version=1" + "&a=b" * 16, RID, "too many"),
    ],
)
def test_invalid_usernames(username: str, client_id: str, rule: str) -> None:
    with pytest.raises(ValidationError, match=rule) as raised:
        parse_dps_username(username, client_id=client_id)
    assert RID not in str(raised.value)


def test_username_api_version_may_be_encoded_and_others_are_ignored() -> None:
    username = f"{SCOPE}/registrations/{RID}/api-version=2016%2D11%2D14-preview&z=%C3%A9"
    parsed = parse_dps_username(username, client_id=RID)
    assert parsed.api_version == "2016-11-14-preview"


def test_accepted_usernames_are_routed_to_dps() -> None:
    for vector in VECTORS:
        if vector.kind == "username" and vector.expect == "ok":
            assert is_dps_username(vector.text), vector.name


# --- request topics ----------------------------------------------------------------------------


def test_the_sdk_topics_parse() -> None:
    assert parse_dps_request(sdk_register_topic(UUID)) == RegisterRequest(UUID)
    assert parse_dps_request(sdk_query_topic(UUID, OPERATION_ID)) == StatusRequest(
        UUID, OPERATION_ID
    )


@given(st.text(alphabet=PRINTABLE, min_size=1, max_size=MAX_REQUEST_ID_CHARS))
def test_request_topics_round_trip(request_id: str) -> None:
    assert register_topic(request_id) == sdk_register_topic(request_id)
    assert parse_dps_request(register_topic(request_id)) == RegisterRequest(request_id)
    topic = status_topic(request_id, OPERATION_ID)
    assert topic == sdk_query_topic(request_id, OPERATION_ID)
    assert parse_dps_request(topic) == StatusRequest(request_id, OPERATION_ID)


@given(st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True))
def test_operation_ids_round_trip(operation_id: str) -> None:
    assert parse_dps_request(status_topic("1", operation_id)) == StatusRequest("1", operation_id)


def test_request_query_items_come_in_any_order_and_decoded() -> None:
    topic = "$dps/registrations/GET/iotdps-get-operationstatus/?operationId=op%2E1&%24rid=a%26b"
    assert parse_dps_request(topic) == StatusRequest("a&b", "op.1")


@pytest.mark.parametrize(
    ("topic", "rule"),
    [
        ("$dps/registrations/PUT/iotdps-register/?$rid=a+", "wildcards"),
        ("$dps/registrations/PUT/iotdps-register/#", "wildcards"),
        ("$dps/registrations/PUT/iotdps-register/", "not a DPS"),
        ("$dps/registrations/res/200/?$rid=1", "not a DPS"),
        ("$dps/registrations/PUT/iotdps-register/?" + "a=b&" * 300 + "$rid=1", "too long"),
        ("$dps/registrations/PUT/iotdps-register/?$rid=a b", "percent-encoded"),
        ("$dps/registrations/PUT/iotdps-register/?$rid=a/b", "percent-encoded"),
        ("$dps/registrations/PUT/iotdps-register/?$rid=1?", "percent-encoded"),
        ("$dps/registrations/PUT/iotdps-register/?$rid", "key=value"),
        ("$dps/registrations/PUT/iotdps-register/?$rid=a=b", "key=value"),
        ("$dps/registrations/PUT/iotdps-register/?$rid=1&%24rid=1", "duplicate"),
        ("$dps/registrations/PUT/iotdps-register/?$rid=%zz", "percent"),
        ("$dps/registrations/PUT/iotdps-register/?rid=1", "lacks \\$rid"),
        ("$dps/registrations/PUT/iotdps-register/?$rid=", "request id"),
        ("$dps/registrations/PUT/iotdps-register/?$rid=%7F", "request id"),
        ("$dps/registrations/PUT/iotdps-register/?$rid=1&$version=1", "only \\$rid"),
        ("$dps/registrations/PUT/iotdps-register/?$rid=1&operationId=o", "no operationId"),
        ("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1", "needs an operationId"),
        ("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=a$b", "operation"),
        ("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=", "operation"),
    ],
)
def test_invalid_request_topics(topic: str, rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        parse_dps_request(topic)


# --- answer topics -----------------------------------------------------------------------------


def test_response_topic_shapes() -> None:
    assert response_topic(202, UUID, retry_after=3) == (
        f"$dps/registrations/res/202/?$rid={UUID}&retry-after=3"
    )
    assert response_topic(200, "a$b/c") == "$dps/registrations/res/200/?$rid=a%24b%2Fc"
    assert response_topic(599, "1", retry_after=0).endswith("&retry-after=0")
    assert response_topic(100, "1", retry_after=MAX_RETRY_AFTER_SECONDS).endswith("=3600")


@given(
    st.integers(100, 599),
    st.text(alphabet=PRINTABLE, min_size=1, max_size=MAX_REQUEST_ID_CHARS),
    st.none() | st.integers(0, MAX_RETRY_AFTER_SECONDS),
)
def test_the_sdk_reads_our_answers(status: int, request_id: str, retry_after: int | None) -> None:
    topic = response_topic(status, request_id, retry_after=retry_after)
    # §5.3: exactly two '$' (the prefix and $rid), so the SDK's third piece is our query.
    assert topic.count("$") == 2
    assert "+" not in topic
    assert "#" not in topic
    expected = {"rid": request_id}
    if retry_after is not None:
        expected["retry-after"] = str(retry_after)
    assert HARNESS.sdk_read_answer(topic) == (status, expected)
    assert parse_response_topic(topic) == (status, request_id, retry_after)


@pytest.mark.parametrize(
    ("status", "request_id", "retry_after"),
    [
        (99, "1", None),
        (600, "1", None),
        (True, "1", None),
        (200.0, "1", None),
        (200, "", None),
        (200, "a b", None),
        (200, "r" * 129, None),
        (200, "\u00e9", None),
        (200, "1", -1),
        (200, "1", MAX_RETRY_AFTER_SECONDS + 1),
        (200, "1", False),
    ],
)
def test_invalid_answers_are_not_built(status: Any, request_id: str, retry_after: Any) -> None:
    with pytest.raises(ValidationError):
        response_topic(status, request_id, retry_after=retry_after)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("$dps/registrations/res/202/?$rid=1&retry-after=3", (202, "1", 3)),
        ("$dps/registrations/res/200/?$rid=1", (200, "1", None)),
        ("$dps/registrations/res/429/?retry-after=10&$rid=x%24y", (429, "x$y", 10)),
        ("$dps/registrations/res/401/?$rid=1&other=ignored", (401, "1", None)),
    ],
)
def test_parse_response_topic(topic: str, expected: tuple[int, str, int | None]) -> None:
    assert parse_response_topic(topic) == expected


@pytest.mark.parametrize(
    ("topic", "rule"),
    [
        ("$dps/registrations/PUT/iotdps-register/?$rid=1", "not a DPS response"),
        ("$dps/registrations/res/200?$rid=1", "res/\\{status\\}"),
        ("$dps/registrations/res/2000/?$rid=1", "res/\\{status\\}"),
        ("$dps/registrations/res/099/?$rid=1", "res/\\{status\\}"),
        ("$dps/registrations/res/+200/?$rid=1", "res/\\{status\\}"),
        ("$dps/registrations/res/200/?retry-after=1", "lacks \\$rid"),
        ("$dps/registrations/res/200/?$rid=", "request id"),
        ("$dps/registrations/res/200/?$rid=1&retry-after=-1", "retry-after"),
        ("$dps/registrations/res/200/?$rid=1&retry-after=01", "retry-after"),
        ("$dps/registrations/res/200/?$rid=1&$rid=2", "duplicate"),
    ],
)
def test_invalid_answer_topics(topic: str, rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        parse_response_topic(topic)


# --- register bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [None, {"modelId": "dtmi:com:example:Thermostat;1"}, "text", 42, [1, {"b": None}], {}],
)
def test_the_sdk_register_body(payload: object) -> None:
    body = register_body(RID, payload)
    assert body == sdk_register_body(RID, payload)
    parsed = parse_register_body(body, registration_id=RID)
    assert parsed.registration_id == RID
    assert parsed.csr is None
    assert parsed.claim_token is None
    if payload is None:
        assert parsed.payload_json is None
    else:
        assert parsed.payload_json is not None
        assert json.loads(parsed.payload_json) == payload


def test_the_sdk_body_is_byte_exact() -> None:
    assert register_body(RID, None) == b'{"payload": null, "registrationId": "sensor-0042"}'
    assert register_body(RID, {"b": 1, "a": "\u00e9"}) == (
        b'{"payload": {"a": "\\u00e9", "b": 1}, "registrationId": "sensor-0042"}'
    )


def test_register_body_extensions_round_trip() -> None:
    body = register_body(RID, {"x": 1}, csr="MIIBCDCBrwIBADA=", claim_token="ct_1.A-b")
    assert body == (
        b'{"claimToken": "ct_1.A-b", "csr": "MIIBCDCBrwIBADA=", "payload": {"x": 1}, '
        b'"registrationId": "sensor-0042"}'
    )
    assert parse_register_body(body, registration_id=RID) == RegisterBody(
        RID, '{"x":1}', "MIIBCDCBrwIBADA=", "ct_1.A-b"
    )


def test_extensions_inside_the_payload_are_taken_out_of_it() -> None:
    body = json.dumps(
        {"registrationId": RID, "payload": {"claimToken": "ct", "csr": "QUFB", "site": "\u00e9"}}
    ).encode()
    parsed = parse_register_body(body, registration_id=RID)
    assert parsed.claim_token == "ct"
    assert parsed.csr == "QUFB"
    # Compact, UTF-8, and without the claim token.
    assert parsed.payload_json == '{"site":"\u00e9"}'


def test_payload_keeps_its_order_and_values() -> None:
    body = b'{"registrationId":"sensor-0042","payload":{"z":1.5,"a":[true,false,null],"m":-0}}'
    parsed = parse_register_body(body, registration_id=RID)
    assert parsed.payload_json == '{"z":1.5,"a":[true,false,null],"m":0}'


def test_body_limits_are_inclusive() -> None:
    prefix = b'{"registrationId":"sensor-0042","payload":"'
    exact = prefix + b"a" * (MAX_DPS_MESSAGE_BYTES - len(prefix) - 2) + b'"}'
    assert len(exact) == MAX_DPS_MESSAGE_BYTES
    assert parse_register_body(exact, registration_id=RID).payload_json is not None
    deep = b'{"registrationId":"sensor-0042","payload":' + b"[" * 15 + b"]" * 15 + b"}"
    assert parse_register_body(deep, registration_id=RID).payload_json == "[" * 15 + "]" * 15
    csr = "A" * MAX_CSR_CHARS
    token = "t" * MAX_CLAIM_TOKEN_CHARS
    body = register_body(RID, None, csr=csr, claim_token=token)
    assert parse_register_body(body, registration_id=RID).csr == csr


def test_depth_scan_ignores_escaped_quotes_and_brackets_in_strings() -> None:
    tricky = '[[[[[[[[[[[[[[[[[[[[\\"\\\\' + "{" * 20
    body = json.dumps({"registrationId": RID, "payload": {"s": tricky}}).encode()
    assert json.loads(parse_register_body(body, registration_id=RID).payload_json or "")["s"] == (
        tricky
    )


def test_depth_seventeen_is_refused_before_decoding() -> None:
    body = b'{"registrationId":"sensor-0042","payload":' + b"{" * 16 + b"x"
    with pytest.raises(ValidationError, match="deeper than 16"):
        parse_register_body(body, registration_id=RID)


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b"[]", "JSON object"),
        (b'{"registrationId":"sensor-0042","tpm":{}}', "TPM attestation is not supported"),
        (b'{"tpm":{}}', "TPM attestation is not supported"),
        (b'{"registrationId":"sensor-0042","x509":{}}', "allows only"),
        (b'{"payload":null}', "registrationId"),
        (b'{"registrationId":"sensor-0043"}', "registrationId"),
        (b'{"registrationId":["sensor-0042"]}', "registrationId"),
        (b'{"registrationId":"sensor-0042","csr":""}', "csr"),
        (b'{"registrationId":"sensor-0042","csr":null}', "csr"),
        (b'{"registrationId":"sensor-0042","csr":"\xc3\xa9"}', "csr"),
        (b'{"registrationId":"sensor-0042","payload":{"csr":7}}', "csr"),
        (b'{"registrationId":"sensor-0042","claimToken":5}', "claimToken"),
        (b'{"registrationId":"sensor-0042","claimToken":"a\\u0000"}', "claimToken"),
        (b'{"registrationId":"sensor-0042","payload":{"claimToken":"a b"}}', "claimToken"),
        (
            b'{"registrationId":"sensor-0042","claimToken":"a","payload":{"claimToken":"a"}}',
            "both",
        ),
        (b'{"registrationId":"sensor-0042","payload":NaN}', "NaN"),
        (b'{"registrationId":"sensor-0042","payload":1e999}', "out of range"),
        (b'{"registrationId":"sensor-0042","payload":"\\udc00"}', "surrogate"),
        (b'{"registrationId":"sensor-0042","registrationId":"sensor-0042"}', "duplicate"),
        (b'{"registrationId":"sensor-0042"', "not valid JSON"),
        (b'{"registrationId":"sensor-0042"}\xff', "UTF-8"),
        (b'{"registrationId":"sensor-0042","payload":' + b"1" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_invalid_register_bodies(body: bytes, rule: str) -> None:
    with pytest.raises(ValidationError, match=rule) as raised:
        parse_register_body(body, registration_id=RID)
    assert RID not in str(raised.value)


def test_csr_and_claim_token_length_limits() -> None:
    for body in (
        register_body(RID, None, csr="A" * (MAX_CSR_CHARS + 1)),
        register_body(RID, None, claim_token="t" * (MAX_CLAIM_TOKEN_CHARS + 1)),
    ):
        with pytest.raises(ValidationError):
            parse_register_body(body, registration_id=RID)


def test_the_connection_registration_id_is_checked_too() -> None:
    with pytest.raises(ValidationError, match="registration id"):
        parse_register_body(b'{"registrationId":"a@b"}', registration_id="a@b")


@pytest.mark.parametrize("payload", [{1, 2}, {"k": math.nan}, {1: "a", "b": 2}, b"bytes"])
def test_register_body_refuses_what_json_cannot_carry(payload: object) -> None:
    with pytest.raises(ValidationError, match="cannot be encoded"):
        register_body(RID, payload)


def test_register_body_refuses_a_deep_payload_and_a_bad_id() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValidationError, match="cannot be encoded"):
        register_body(RID, deep)
    with pytest.raises(ValidationError, match="registration id"):
        register_body("a/b", None)


# --- operation and error bodies ----------------------------------------------------------------


def test_assigning_body() -> None:
    body = operation_body(OPERATION_ID, "assigning", None)
    assert body == f'{{"operationId":"{OPERATION_ID}","status":"assigning"}}'.encode()
    assert sdk_read_result(body) == {
        "operation_id": OPERATION_ID,
        "status": "assigning",
        "registration_state": None,
    }


def test_assigned_body_has_azure_key_order_and_the_sdk_reads_it() -> None:
    body = operation_body(
        OPERATION_ID,
        "assigned",
        state(
            payload_json='{"hello": "world", "n": [1]}', issued_certificate_chain=("TUlJ", "QUI=")
        ),
    )
    document = json.loads(body)
    assert list(document) == ["operationId", "status", "registrationState"]
    assert list(document["registrationState"]) == [
        "registrationId",
        "createdDateTimeUtc",
        "assignedHub",
        "deviceId",
        "status",
        "substatus",
        "lastUpdatedDateTimeUtc",
        "etag",
        "payload",
        "issuedCertificateChain",
    ]
    assert document["registrationState"]["payload"] == {"hello": "world", "n": [1]}
    assert document["registrationState"]["issuedCertificateChain"] == ["TUlJ", "QUI="]
    assert b" " not in body
    assert sdk_read_result(body)["registration_state"] == {
        "device_id": RID,
        "assigned_hub": "hub.example.net",
        "sub_status": "initialAssignment",
        "created_date_time": "2026-01-01T00:00:00.000000Z",
        "last_update_date_time": "2026-01-01T00:00:02.500000Z",
        "etag": "IjE0MDAzZTk5LTAwMDAtMDgwMC0wMDAwLTVkMGNhNGYzMDAwMCI=",
        "payload": '{"hello": "world", "n": [1]}',
    }


def test_failed_body_omits_empty_fields() -> None:
    failed = RegistrationState(
        registration_id=RID,
        status="failed",
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00.1234567Z",
        error_code=401002,
        error_message="The enrollment is disabled.",
    )
    assert json.loads(operation_body(OPERATION_ID, "failed", failed)) == {
        "operationId": OPERATION_ID,
        "status": "failed",
        "registrationState": {
            "registrationId": RID,
            "createdDateTimeUtc": "2026-01-01T00:00:00Z",
            "status": "failed",
            "lastUpdatedDateTimeUtc": "2026-01-01T00:00:00.1234567Z",
            "errorCode": 401002,
            "errorMessage": "The enrollment is disabled.",
        },
    }


@pytest.mark.parametrize(
    ("operation_id", "status", "changes", "rule"),
    [
        ("a$b", "assigned", None, "operation id"),
        ("", "assigned", None, "operation id"),
        ("o" * 129, "assigned", None, "operation id"),
        (7, "assigned", None, "operation id"),
        ("op", "done", None, "status"),
        ("op", ["assigned"], None, "status"),
        ("op", "assigned", {"registration_id": "a/b"}, "registration id"),
        ("op", "assigned", {"status": "ok"}, "status"),
        ("op", "assigned", {"created_at": "2026-01-01 00:00:00"}, "timestamps"),
        ("op", "assigned", {"updated_at": "2026-01-01T00:00:00+00:00"}, "timestamps"),
        ("op", "assigned", {"updated_at": 1767225600}, "timestamps"),
        ("op", "assigned", {"assigned_hub": "hub/x"}, "host name"),
        ("op", "assigned", {"assigned_hub": 5}, "host name"),
        ("op", "assigned", {"device_id": "-dev"}, "device id"),
        ("op", "assigned", {"device_id": 5}, "device id"),
        ("op", "assigned", {"substatus": "whatever"}, "substatus"),
        ("op", "assigned", {"substatus": ["initialAssignment"]}, "substatus"),
        ("op", "assigned", {"etag": "a b"}, "etag"),
        ("op", "assigned", {"etag": "e" * 257}, "etag"),
        ("op", "assigned", {"payload_json": "[1]"}, "JSON object"),
        ("op", "assigned", {"payload_json": {"a": 1}}, "JSON text"),
        ("op", "assigned", {"payload_json": '{"a":1,"a":2}'}, "duplicate"),
        ("op", "assigned", {"payload_json": '{"a":NaN}'}, "NaN"),
        ("op", "assigned", {"payload_json": '{"a":"\ud800"}'}, "UTF-8"),
        ("op", "assigned", {"payload_json": '{"a":"\\ud800"}'}, "surrogate"),
        ("op", "assigned", {"error_code": -1}, "error code"),
        ("op", "assigned", {"error_code": True}, "error code"),
        ("op", "assigned", {"error_message": "line\nbreak"}, "control"),
        ("op", "assigned", {"error_message": "m" * 1025}, "at most"),
        ("op", "assigned", {"issued_certificate_chain": ("not base64!",)}, "base64"),
        ("op", "assigned", {"issued_certificate_chain": ("",)}, "base64"),
        ("op", "assigned", {"issued_certificate_chain": "TUlJ"}, "base64"),
        ("op", "assigned", {"issued_certificate_chain": (b"TUlJ",)}, "base64"),
    ],
)
def test_invalid_operation_bodies(
    operation_id: Any, status: Any, changes: dict[str, Any] | None, rule: str
) -> None:
    registration_state = None if changes is None else state(**changes)
    with pytest.raises(ValidationError, match=rule):
        operation_body(operation_id, status, registration_state)


def test_operation_body_respects_the_message_limit() -> None:
    near = '{"k":"' + "a" * (MAX_DPS_MESSAGE_BYTES - 600) + '"}'
    assert len(operation_body("op", "assigned", state(payload_json=near))) <= MAX_DPS_MESSAGE_BYTES
    # The payload alone fits; with the rest of the answer it does not.
    over = '{"k":"' + "a" * (MAX_DPS_MESSAGE_BYTES - 10) + '"}'
    with pytest.raises(ValidationError, match="DPS message exceeds"):
        operation_body("op", "assigned", state(payload_json=over))
    too_big = '{"k":"' + "\u00e9" * (MAX_DPS_MESSAGE_BYTES // 2) + '"}'
    with pytest.raises(ValidationError, match="payload exceeds"):
        operation_body("op", "assigned", state(payload_json=too_big))


def test_error_body() -> None:
    body = error_body(
        401002,
        "The device is unauthorized.",
        tracking_id="c9d8e7f6-0000-4000-8000-000000000001",
        timestamp="2026-01-01T00:00:00.000000Z",
    )
    assert body == (
        b'{"errorCode":401002,"trackingId":"c9d8e7f6-0000-4000-8000-000000000001",'
        b'"message":"The device is unauthorized.","timestampUtc":"2026-01-01T00:00:00.000000Z"}'
    )


@pytest.mark.parametrize(
    ("code", "message", "tracking_id", "timestamp"),
    [
        (-1, "m", "t", "2026-01-01T00:00:00Z"),
        (2**31, "m", "t", "2026-01-01T00:00:00Z"),
        ("401002", "m", "t", "2026-01-01T00:00:00Z"),
        (401002, "m\x1b[31m", "t", "2026-01-01T00:00:00Z"),
        (401002, "m" * (MAX_ERROR_MESSAGE_CHARS + 1), "t", "2026-01-01T00:00:00Z"),
        (401002, 5, "t", "2026-01-01T00:00:00Z"),
        (401002, "m", "", "2026-01-01T00:00:00Z"),
        (401002, "m", "t t", "2026-01-01T00:00:00Z"),
        (401002, "m", "t" * 129, "2026-01-01T00:00:00Z"),
        (401002, "m", "t", "yesterday"),
    ],
)
def test_invalid_error_bodies(code: Any, message: Any, tracking_id: str, timestamp: str) -> None:
    with pytest.raises(ValidationError):
        error_body(code, message, tracking_id=tracking_id, timestamp=timestamp)


# --- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "1970-01-01T00:00:00.000000Z"),
        (SE, "2026-01-01T00:00:00.000000Z"),
        (1_795_309_323.456789, "2026-11-22T01:02:03.456789Z"),
        (1.0000004, "1970-01-01T00:00:01.000000Z"),
        (1.9999996, "1970-01-01T00:00:02.000000Z"),
        (253_402_300_799.99997, "9999-12-31T23:59:59.999969Z"),
    ],
)
def test_format_timestamp(seconds: float, text: str) -> None:
    assert format_timestamp(seconds) == text
    # What it formats, the bodies accept.
    assert error_body(1, "m", tracking_id="t", timestamp=text)


@pytest.mark.parametrize(
    "seconds", [-1, -0.5, math.nan, math.inf, -math.inf, 253_402_300_800, 10**30, True, "0", None]
)
def test_format_timestamp_refuses_what_is_not_a_time(seconds: Any) -> None:
    with pytest.raises(ValidationError):
        format_timestamp(seconds)


# --- credentials ------------------------------------------------------------------------------


def test_derived_key_worked_example() -> None:
    key = derive_device_key(GROUP_KEY, RID)
    assert base64.b64encode(key).decode() == DERIVED_KEY_B64
    assert base64.b64decode("ZW5yb2xsbWVudC1ncm91cC1zZWNyZXQtMzJieXRlcyE=") == GROUP_KEY


def test_derived_keys_differ_per_registration_and_case() -> None:
    assert derive_device_key(GROUP_KEY, "Sensor-0042") != derive_device_key(GROUP_KEY, RID)


@pytest.mark.parametrize(
    ("group_key", "registration_id", "rule"),
    [
        (b"", RID, "at least 16"),
        (b"k" * 15, RID, "at least 16"),
        ("k" * 32, RID, "at least 16"),
        (GROUP_KEY, "a/b", "registration id"),
    ],
)
def test_derive_device_key_refusals(group_key: Any, registration_id: str, rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        derive_device_key(group_key, registration_id)


def test_dps_token_worked_example_verifies() -> None:
    token = parse_sas_token(WORKED_TOKEN)
    assert dps_resource_uri(SCOPE, RID) == "0ne000ABCDE/registrations/sensor-0042"
    assert generate_sas_token(dps_resource_uri(SCOPE, RID), worked_key(), SE) == WORKED_TOKEN
    assert (
        verify_dps_token(token, id_scope=SCOPE, registration_id=RID, keys=[worked_key()], now=NOW)
        == 0
    )


def test_dps_token_from_the_group_key_and_the_secondary_key() -> None:
    token = parse_sas_token(WORKED_TOKEN)
    keys = [
        derive_device_key(b"another-group-key-of-32-bytes!!!", RID),
        derive_device_key(GROUP_KEY, RID),
    ]
    assert verify_dps_token(token, id_scope=SCOPE, registration_id=RID, keys=keys, now=NOW) == 1


def test_dps_token_with_the_documented_key_name() -> None:
    uri = dps_resource_uri(SCOPE, RID)
    token = parse_sas_token(generate_sas_token(uri, worked_key(), SE, key_name=DPS_KEY_NAME))
    assert token.skn == "registration"
    assert (
        verify_dps_token(token, id_scope=SCOPE, registration_id=RID, keys=[worked_key()], now=NOW)
        == 0
    )


@pytest.mark.parametrize(
    ("token", "id_scope", "registration_id", "now", "reason"),
    [
        # skn: absent or "registration" only.
        (
            generate_sas_token(
                f"{SCOPE}/registrations/{RID}", b"x" * 32, SE, key_name="iothubowner"
            ),
            SCOPE,
            RID,
            NOW,
            "wrong-key-name",
        ),
        # The ID scope compares exactly (ironhub decision), unlike a hub host name.
        (
            generate_sas_token(f"{SCOPE.lower()}/registrations/{RID}", b"x" * 32, SE),
            SCOPE,
            RID,
            NOW,
            "wrong-resource",
        ),
        (
            generate_sas_token(f"{SCOPE}/registrations/{RID}", b"x" * 32, SE),
            SCOPE.lower(),
            RID,
            NOW,
            "wrong-resource",
        ),
        # The registration id compares exactly, case included.
        (WORKED_TOKEN, SCOPE, "Sensor-0042", NOW, "wrong-resource"),
        (WORKED_TOKEN, SCOPE, "sensor-0043", NOW, "wrong-resource"),
        (WORKED_TOKEN, "0ne000ABCDF", RID, NOW, "wrong-resource"),
        # A hub token for the same name is not a DPS token.
        (
            generate_sas_token(f"{SCOPE}/devices/{RID}", b"x" * 32, SE),
            SCOPE,
            RID,
            NOW,
            "wrong-resource",
        ),
        (WORKED_TOKEN, SCOPE, RID, SE + 1.0, "expired"),
        (WORKED_TOKEN, SCOPE, RID, SE - 366 * 86400.0, "expiry-too-far"),
    ],
)
def test_dps_token_refusals(
    token: str, id_scope: str, registration_id: str, now: float, reason: str
) -> None:
    parsed = parse_sas_token(token)
    with pytest.raises(AuthenticationError) as raised:
        verify_dps_token(
            parsed, id_scope=id_scope, registration_id=registration_id, keys=[worked_key()], now=now
        )
    assert raised.value.reason == reason
    assert parsed.sig not in str(raised.value)


def test_dps_token_signed_with_another_key() -> None:
    token = parse_sas_token(WORKED_TOKEN)
    with pytest.raises(AuthenticationError) as raised:
        verify_dps_token(token, id_scope=SCOPE, registration_id=RID, keys=[GROUP_KEY], now=NOW)
    assert raised.value.reason == "bad-signature"


def test_dps_token_with_garbage_sr() -> None:
    token = SasToken(sr="%zz", sig="x" * 43 + "=", se=SE)
    with pytest.raises(AuthenticationError) as raised:
        verify_dps_token(token, id_scope=SCOPE, registration_id=RID, keys=[worked_key()], now=NOW)
    assert raised.value.reason == "malformed-token"


def test_dps_token_max_ttl_is_passed_on() -> None:
    token = parse_sas_token(WORKED_TOKEN)
    with pytest.raises(AuthenticationError) as raised:
        verify_dps_token(
            token,
            id_scope=SCOPE,
            registration_id=RID,
            keys=[worked_key()],
            now=NOW,
            max_ttl_seconds=60,
        )
    assert raised.value.reason == "expiry-too-far"
    assert sas.MAX_TOKEN_TTL_SECONDS == 365 * 86400


@pytest.mark.parametrize(
    ("id_scope", "registration_id"),
    [("", RID), ("0ne/x", RID), ("a" * 65, RID), (None, RID), (SCOPE, "a/b"), (SCOPE, "")],
)
def test_resource_uri_refusals(id_scope: Any, registration_id: str) -> None:
    with pytest.raises(ValidationError):
        dps_resource_uri(id_scope, registration_id)
    with pytest.raises(ValidationError):
        verify_dps_token(
            parse_sas_token(WORKED_TOKEN),
            id_scope=id_scope,
            registration_id=registration_id,
            keys=[worked_key()],
            now=NOW,
        )


def test_default_id_scope() -> None:
    scope = default_id_scope("hub.example.net")
    assert scope == default_id_scope("HUB.Example.NET")
    assert scope != default_id_scope("hub2.example.net")
    assert len(scope) == 11
    assert scope.startswith("0ne")
    assert scope[3:] == scope[3:].upper()
    int(scope[3:], 16)
    assert default_id_scope("localhost") == "0ne49960DE5"
    assert dps_resource_uri(scope, RID).startswith(scope)


@pytest.mark.parametrize("hostname", ["", "hub example", "h\u00e9b", "a" * 254, None])
def test_default_id_scope_refuses_bad_host_names(hostname: Any) -> None:
    with pytest.raises(ValidationError):
        default_id_scope(hostname)


# --- the whole flow, as the SDK would run it ----------------------------------------------------


def test_the_flow_of_section_5_1() -> None:
    username = sdk_username(SCOPE, RID)
    connect = parse_dps_username(username, client_id=RID)
    token = parse_sas_token(WORKED_TOKEN)
    keys = [derive_device_key(GROUP_KEY, connect.registration_id)]
    verify_dps_token(token, id_scope=connect.id_scope, registration_id=RID, keys=keys, now=NOW)
    register = parse_dps_request(sdk_register_topic(UUID))
    assert isinstance(register, RegisterRequest)
    body = parse_register_body(sdk_register_body(RID, None), registration_id=RID)
    assert body.payload_json is None
    answer = response_topic(202, register.request_id, retry_after=2)
    assert HARNESS.sdk_read_answer(answer) == (202, {"rid": UUID, "retry-after": "2"})
    assigning = operation_body(OPERATION_ID, "assigning", None)
    operation_id = sdk_read_result(assigning)["operation_id"]
    poll = parse_dps_request(sdk_query_topic("7f1c0b5e-0000-4000-8000-000000000000", operation_id))
    assert isinstance(poll, StatusRequest)
    assert poll.operation_id == OPERATION_ID
    final = operation_body(poll.operation_id, "assigned", state())
    assert sdk_read_result(final)["registration_state"]["assigned_hub"] == "hub.example.net"
    assert parse_response_topic(response_topic(200, poll.request_id)) == (
        200,
        poll.request_id,
        None,
    )


# --- the vectors (tests/vectors/dps.json) ------------------------------------------------------


def test_there_are_enough_vectors_of_every_kind() -> None:
    assert len(VECTORS) >= 40
    for kind in HARNESS.KINDS:
        outcomes = {v.expect for v in VECTORS if v.kind == kind}
        assert outcomes == {"ok", "error"}, kind


def run_vector(vector: Any) -> object:
    if vector.kind == "username":
        return parse_dps_username(vector.text, client_id=vector.client_id)
    if vector.kind == "topic":
        return parse_dps_request(vector.text)
    return parse_register_body(vector.body, registration_id=vector.registration_id)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: vector.name)
def test_vector(vector: Any) -> None:
    if vector.expect == "ok":
        result = run_vector(vector)
        if vector.rid is not None:
            assert isinstance(result, RegisterRequest | StatusRequest)
            assert result.request_id == vector.rid
        if vector.operation_id is not None:
            assert isinstance(result, StatusRequest)
            assert result.operation_id == vector.operation_id
        return
    with pytest.raises(ValidationError) as raised:
        run_vector(vector)
    # Refusals name the rule, never the input (STYLE.md).
    message = str(raised.value)
    sample = (
        vector.text if vector.kind != "register-body" else vector.body.decode("utf-8", "replace")
    )
    if len(sample) >= 12:
        assert sample not in message


def test_the_loader_checks_the_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HARNESS, "VECTORS_DIR", tmp_path)
    good = {"name": "a", "kind": "topic", "input": "x", "expect": "error"}
    cases: list[object] = [
        {"not": "a list"},
        ["not an object"],
        [good, good],
        [{**good, "kind": "token"}],
        [{**good, "expect": "maybe"}],
        [{**good, "extra": 1}],
        [{"name": "b", "kind": "username", "input": "x", "expect": "ok"}],
        [{"name": "c", "kind": "register-body", "expect": "ok", "registration_id": "r"}],
        [
            {
                "name": "d",
                "kind": "register-body",
                "expect": "ok",
                "registration_id": "r",
                "input": "",
                "hex": "",
            }
        ],
        [{**good, "rid": "1"}],
    ]
    for index, case in enumerate(cases):
        (tmp_path / f"case{index}.json").write_text(json.dumps(case), encoding="utf-8")
        with pytest.raises(ValueError, match="case"):
            HARNESS.load_dps_vectors(f"case{index}")
    (tmp_path / "fine.json").write_text(
        json.dumps(
            [
                {**good, "input": ["x", {"repeat": "y", "times": 3}], "note": "n", "ref": "r"},
                {
                    "name": "h",
                    "kind": "register-body",
                    "hex": "7b7d",
                    "registration_id": "r",
                    "expect": "error",
                },
            ]
        ),
        encoding="utf-8",
    )
    loaded = HARNESS.load_dps_vectors("fine.json")
    assert loaded[0].text == "xyyy"
    assert loaded[1].body == b"{}"


# --- the fuzz harness (tests/fuzz/fuzz_dps.py), briefly -------------------------------------


def test_a_short_fuzz_run_finds_no_violation() -> None:
    report = HARNESS.run(iterations=3000, seed=11)
    assert report.cases == 3000
    assert report.violations == []
    for target in ("username", "RegisterRequest", "register-body", "answer", "token"):
        assert report.accepted[target] > 0, target
    assert report.refusals.total() > 0


def test_the_same_fuzz_seed_replays_the_same_cases() -> None:
    first = HARNESS.run(iterations=300, seed=5)
    second = HARNESS.run(iterations=300, seed=5)
    assert (first.accepted, first.refusals) == (second.accepted, second.refusals)


def test_fuzz_main_prints_a_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert HARNESS.main(["--iterations", "50", "--seed", "1", "--max-seconds", "60"]) == 0
    output = capsys.readouterr().out
    assert "cases=50" in output
    assert "violations=0" in output


def test_the_harness_oracles_catch_violations() -> None:
    report = HARNESS.Report()
    HARNESS.check_answer("$dps/registrations/res/200/?$rid=1", report)
    assert report.violations == []
    # A forged acceptance must be reported: feed the body oracle a body the codec never accepts.
    problem = HARNESS._body_problem(b"[]", RID, RegisterBody(RID, None, None, None))
    assert problem is not None
