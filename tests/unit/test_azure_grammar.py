"""The Azure topic and username grammar, identity rule, and device authorisation rules.

Topic strings are built the way azure-iot-device 2.14.0 builds them
(``iothub/pipeline/mqtt_topic_iothub.py``: ``encode_message_properties_in_topic``), by a local
replica below, and cross-checked against literal strings captured from the SDK itself.

Hub-to-device topics are checked the other way round: a replica of the SDK's parsing functions
(``extract_message_properties_from_topic``, ``get_input_name_from_topic``,
``get_method_name_from_topic``, ``get_method_request_id_from_topic``,
``get_twin_request_id_from_topic``, ``get_twin_status_code_from_topic`` and the dispatch order of
``IoTHubMQTTTranslationStage._handle_pipeline_event``) reads what our builders produce. The SDK
itself cannot be imported here (it lives in another virtualenv and needs paho-mqtt < 2); the
replica was checked against it on 3000 random builder outputs, and the literal vectors below
were decoded by the real SDK functions.
"""

from __future__ import annotations

import datetime as dt
import http
import itertools
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironhub.codec import azure
from ironhub.codec.azure import (
    MAX_METHOD_NAME_CHARS,
    MAX_PROPERTIES,
    MAX_PROPERTY_BAG_CHARS,
    MAX_PROPERTY_KEY_CHARS,
    MAX_REQUEST_ID_CHARS,
    MAX_USERNAME_CHARS,
    SECURITY_INTERFACE_ID,
    SECURITY_MESSAGE_MARKERS,
    DevicePublish,
    HubUsername,
    SubscriptionKind,
    c2d_topic,
    check_device_subscribe,
    classify_device_publish,
    decode_property_bag,
    desired_patch_topic,
    encode_property_bag,
    is_dps_username,
    is_security_message,
    method_request_topic,
    module_input_topic,
    parse_hub_username,
    percent_decode,
    split_identity,
    twin_response_topic,
    validate_cloud_properties,
    validate_identity,
    validate_input_name,
    validate_method_name,
)
from ironhub.errors import AuthenticationError, AuthorizationError, ValidationError

# --- a replica of the SDK's topic building (do not import the SDK from tests) ----------------

_SYSTEM_ORDER = (
    ("output_name", "$.on"),
    ("message_id", "$.mid"),
    ("correlation_id", "$.cid"),
    ("user_id", "$.uid"),
    ("content_type", "$.ct"),
    ("content_encoding", "$.ce"),
    ("iothub_interface_id", "$.ifid"),
    ("expiry_time_utc", "$.exp"),
)


def sdk_telemetry_topic(
    device_id: str,
    module_id: str | None = None,
    custom_properties: dict[str, str] | None = None,
    **system: object,
) -> str:
    """``get_telemetry_topic_for_publish`` + ``encode_message_properties_in_topic``."""
    topic = f"devices/{device_id}"
    if module_id:
        topic += f"/modules/{module_id}"
    topic += "/messages/events/"
    system_properties = []
    for attribute, key in _SYSTEM_ORDER:
        value = system.get(attribute)
        if value:
            if isinstance(value, dt.date):
                value = value.isoformat()
            system_properties.append((key, str(value)))
    topic += urllib.parse.urlencode(system_properties, quote_via=urllib.parse.quote)
    if custom_properties:
        if system_properties:
            topic += "&"
        custom = sorted((str(k), str(v)) for k, v in custom_properties.items())
        topic += urllib.parse.urlencode(custom, quote_via=urllib.parse.quote)
    return topic


# Captured from azure-iot-device 2.14.0 (Message objects encoded by the SDK's own function).
SDK_CAPTURED_FULL = (
    "devices/dev1/messages/events/%24.mid=msg-0001&%24.cid=corr-0001&%24.uid=user-1"
    "&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00%2B00%3A00"
    "&%24weird=%25&alert=true&emoji=%C3%A9%E2%82%AC&empty=&plus=1%2B1&zone%20name=a%2Fb%26c%3Dd"
)
SDK_CAPTURED_SECURITY = (
    "devices/dev1/messages/events/%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1"
)
SDK_CAPTURED_MODULE = (
    "devices/dev1/modules/filter-mod/messages/events/%24.on=alerts&%24.ct=application%2Fjson"
)
SDK_CAPTURED_PLAIN = "devices/dev1/messages/events/"

FULL_CUSTOM = {
    "zone name": "a/b&c=d",
    "alert": "true",
    "emoji": "\u00e9\u20ac",
    "plus": "1+1",
    "empty": "",
    "$weird": "%",
}
FULL_SYSTEM: dict[str, object] = {
    "message_id": "msg-0001",
    "correlation_id": "corr-0001",
    "user_id": "user-1",
    "content_type": "application/json",
    "content_encoding": "utf-8",
    "expiry_time_utc": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
}


def test_replica_reproduces_the_sdk_captures() -> None:
    assert sdk_telemetry_topic("dev1", None, FULL_CUSTOM, **FULL_SYSTEM) == SDK_CAPTURED_FULL
    assert (
        sdk_telemetry_topic("dev1", iothub_interface_id=SECURITY_INTERFACE_ID)
        == SDK_CAPTURED_SECURITY
    )
    assert (
        sdk_telemetry_topic(
            "dev1", "filter-mod", output_name="alerts", content_type="application/json"
        )
        == SDK_CAPTURED_MODULE
    )
    assert sdk_telemetry_topic("dev1") == SDK_CAPTURED_PLAIN


# --- percent decoding --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("", ""),
        ("plain", "plain"),
        ("%24.ct", "$.ct"),
        ("%2f%2F", "//"),
        ("1+1", "1+1"),  # '+' is not a space (the SDK never uses quote_plus)
        ("%C3%A9", "\u00e9"),
        ("%00", "\x00"),  # decoding is faithful; callers decide about controls
    ],
)
def test_percent_decode(encoded: str, decoded: str) -> None:
    assert percent_decode(encoded) == decoded


@pytest.mark.parametrize("encoded", ["%", "%2", "%G0", "a%zz", "%C3", "%FF", "\u00e9"])
def test_percent_decode_is_strict(encoded: str) -> None:
    with pytest.raises(ValidationError):
        percent_decode(encoded)


# --- identities --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "identity",
    ["d", "dev1", "D", "0", "dev-1.x_y:z@w", "a" * 128, "9lives", "a.", "a-"],
)
def test_valid_identities(identity: str) -> None:
    validate_identity(identity)
    validate_identity("dev1", identity)


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 129, id="too-long"),
        pytest.param("-dev", id="leading-hyphen"),
        pytest.param(".dev", id="leading-dot"),
        pytest.param("..", id="dotdot"),
        pytest.param("_dev", id="leading-underscore"),
        pytest.param("dev#", id="hash"),
        pytest.param("dev+", id="plus"),
        pytest.param("dev/x", id="slash"),
        pytest.param("$SYS", id="dollar-first"),
        pytest.param("dev$", id="dollar"),
        pytest.param("dev%2F", id="percent"),
        pytest.param("dev 1", id="space"),
        pytest.param("dev\t1", id="tab"),
        pytest.param("dev\n1", id="newline"),
        pytest.param("dev\x001", id="nul"),
        pytest.param("dev\x7f", id="del"),
        pytest.param("dev*", id="star"),
        pytest.param("dev?", id="question"),
        pytest.param("a=b", id="equals"),
        pytest.param("a,b", id="comma"),
        pytest.param("a;b", id="semicolon"),
        pytest.param("a'b", id="quote"),
        pytest.param("a(b)", id="parens"),
        pytest.param("d\u00e9v", id="non-ascii"),
        pytest.param("\u0661dev", id="arabic-digit-first"),
        pytest.param("\uff44ev", id="fullwidth"),
    ],
)
def test_invalid_identities(identity: str) -> None:
    with pytest.raises(ValidationError):
        validate_identity(identity)
    with pytest.raises(ValidationError, match="module id"):
        validate_identity("dev1", identity)


def test_identity_errors_do_not_echo_the_identity() -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate_identity("evil\x1b[31m#")
    assert "evil" not in str(excinfo.value)


@pytest.mark.parametrize("wildcard", ["+", "#", "dev/+", "dev/#", "+/x"])
def test_wildcard_identities_are_refused_cve_2017_7650(wildcard: str) -> None:
    # SECURITY-TESTS.md §3.4 item 23: refused at validation, never expanded into a filter.
    with pytest.raises(ValidationError):
        validate_identity(wildcard)


# --- usernames ---------------------------------------------------------------------------------

UA = urllib.parse.quote(
    "azure-iot-device-iothub-py/2.14.0(3.11.7;Linux #1 SMP PREEMPT_DYNAMIC @0;x86_64)", safe=""
)


def sdk_username(
    hostname: str, client_id: str, product_info: str = "", *, dtmi: bool = False
) -> str:
    """``pipeline_stages_iothub_mqtt.py`` username construction."""
    user_agent = urllib.parse.unquote(UA)
    if dtmi:
        params = [
            ("api-version", "2020-09-30"),
            ("DeviceClientType", user_agent),
            ("model-id", product_info),
        ]
    else:
        params = [("api-version", "2019-10-01"), ("DeviceClientType", user_agent + product_info)]
    query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    return f"{hostname}/{client_id}/?{query}"


def test_parse_captured_username() -> None:
    # azure-iot-mqtt.md §2.2, captured on the wire.
    captured = (
        "myhub.example.net/dev1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py"
        "%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%20PREEMPT_DYNAMIC%20%400%3Bx86_64%29"
    )
    assert sdk_username("myhub.example.net", "dev1") == captured
    parsed = parse_hub_username(captured)
    assert parsed == HubUsername(
        hostname="myhub.example.net",
        device_id="dev1",
        module_id=None,
        api_version="2019-10-01",
        params={
            "api-version": "2019-10-01",
            "DeviceClientType": (
                "azure-iot-device-iothub-py/2.14.0(3.11.7;Linux #1 SMP PREEMPT_DYNAMIC @0;x86_64)"
            ),
        },
    )
    assert parsed.client_id == "dev1"


def test_parse_module_username_with_model_id() -> None:
    # azure-iot-mqtt.md §7 E10.
    username = sdk_username("localhost", "dev1/filter-mod", "dtmi:example:thermostat;1", dtmi=True)
    assert "model-id=dtmi%3Aexample%3Athermostat%3B1" in username
    parsed = parse_hub_username(username)
    assert parsed.hostname == "localhost"
    assert parsed.device_id == "dev1"
    assert parsed.module_id == "filter-mod"
    assert parsed.client_id == "dev1/filter-mod"
    assert parsed.api_version == "2020-09-30"
    assert parsed.params["model-id"] == "dtmi:example:thermostat;1"


def test_parsed_params_are_read_only() -> None:
    parsed = parse_hub_username(sdk_username("h", "dev1"))
    with pytest.raises(TypeError):
        parsed.params["api-version"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    "hostname", ["127.0.0.1", "localhost", "my-hub.example.net", "::1", "[::1]", "a_b.local"]
)
def test_parse_username_hostnames(hostname: str) -> None:
    assert parse_hub_username(sdk_username(hostname, "dev1")).hostname == hostname


def test_parse_username_accepts_empty_values_and_unknown_params() -> None:
    parsed = parse_hub_username("h/dev1/?api-version=2019-10-01&DeviceClientType=&x%20y=%26")
    assert parsed.params == {"api-version": "2019-10-01", "DeviceClientType": "", "x y": "&"}


@pytest.mark.parametrize(
    "username",
    [
        pytest.param("", id="empty"),
        pytest.param("h/dev1/", id="no-query"),
        pytest.param("h/dev1/api-version=2019-10-01", id="no-question-mark"),
        pytest.param("h/dev1?api-version=2019-10-01", id="no-trailing-slash"),
        pytest.param("h/?api-version=2019-10-01", id="no-device"),
        pytest.param("h//?api-version=2019-10-01", id="empty-device"),
        pytest.param("/dev1/?api-version=2019-10-01", id="empty-host"),
        pytest.param("h/dev1/m1/x/?api-version=2019-10-01", id="too-many-levels"),
        pytest.param("h/dev1//?api-version=2019-10-01", id="empty-module"),
        pytest.param("h/dev#/?api-version=2019-10-01", id="wildcard-device"),
        pytest.param("h/dev1/m+/?api-version=2019-10-01", id="wildcard-module"),
        pytest.param("h/dev1/?", id="empty-query"),
        pytest.param("h/dev1/?DeviceClientType=x", id="no-api-version"),
        pytest.param("h/dev1/?api-version=", id="empty-api-version"),
        pytest.param("h/dev1/?api-version=2019 10", id="bad-api-version"),
        pytest.param("h/dev1/?api-version=2019-10-01&api-version=2020-09-30", id="duplicate"),
        pytest.param("h/dev1/?api-version=2019-10-01&&x=y", id="empty-param"),
        pytest.param("h/dev1/?api-version=2019-10-01&flag", id="param-without-equals"),
        pytest.param("h/dev1/?api-version=2019-10-01&=v", id="empty-key"),
        pytest.param("h/dev1/?api-version=2019-10-01&x=%ZZ", id="bad-escape"),
        pytest.param("h/dev1/?api-version=2019-10-01&x=\u00e9", id="raw-non-ascii"),
        pytest.param("h\u00e9/dev1/?api-version=2019-10-01", id="non-ascii-host"),
        pytest.param("h h/dev1/?api-version=2019-10-01", id="space-in-host"),
        pytest.param("h/dev1/?" + "&".join(f"k{i}=v" for i in range(17)), id="too-many"),
        pytest.param("h/dev1/?api-version=2019-10-01&x=" + "a" * MAX_USERNAME_CHARS, id="long"),
        pytest.param(
            "0ne000ABCDE/registrations/sensor-0042/api-version=2019-03-31", id="dps-shape"
        ),
    ],
)
def test_parse_username_refuses_garbage(username: str) -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        parse_hub_username(username)
    assert excinfo.value.reason == "malformed-username"


def test_question_mark_in_the_query_is_part_of_a_value() -> None:
    # Split at the first '?': a later '?' belongs to the query.
    parsed = parse_hub_username("h/dev1/?api-version=2019-10-01&x=a?b")
    assert parsed.params["x"] == "a?b"


@given(st.text(max_size=300))
@settings(max_examples=300, derandomize=True)
def test_username_parser_only_returns_or_raises_authentication_error(username: str) -> None:
    reason = None
    try:
        parsed = parse_hub_username(username)
    except AuthenticationError as exc:
        reason = exc.reason
    else:
        validate_identity(parsed.device_id, parsed.module_id)
    assert reason in (None, "malformed-username")


# --- DPS usernames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        (
            "0ne000ABCDE/registrations/sensor-0042/api-version=2019-03-31&ClientVersion="
            + urllib.parse.quote("azure-iot-device-provisioning-py/2.14.0", safe=""),
            True,
        ),
        ("0ne000ABCDE/registrations/sensor-0042/api-version=2019-03-31", True),
        ("myhub.example.net/dev1/?api-version=2019-10-01", False),
        ("myhub.example.net/registrations/?api-version=2019-10-01", False),
        ("myhub.example.net/registrations/mod/?api-version=2019-10-01", False),
        ("0ne000ABCDE/registrations//api-version=2019-03-31", False),
        ("0ne000ABCDE/registrations/a?b/api-version=2019-03-31", False),
        ("0ne000ABCDE/enrollments/sensor/api-version=2019-03-31", False),
        ("0ne.000/registrations/sensor/api-version=2019-03-31", False),
        ("0ne000ABCDE/registrations/sensor/?api-version=2019-03-31", False),
        ("0ne000ABCDE/registrations/sensor", False),
        ("", False),
        ("0ne000ABCDE/registrations/s/api-version=" + "x" * MAX_USERNAME_CHARS, False),
    ],
)
def test_is_dps_username(username: str, expected: bool) -> None:
    assert is_dps_username(username) is expected


# --- property bags -----------------------------------------------------------------------------


def bag_of(topic: str) -> str:
    return topic.split("/messages/events/", 1)[1]


def test_decode_sdk_captured_bag() -> None:
    assert decode_property_bag(bag_of(SDK_CAPTURED_FULL)) == (
        ("$.mid", "msg-0001"),
        ("$.cid", "corr-0001"),
        ("$.uid", "user-1"),
        ("$.ct", "application/json"),
        ("$.ce", "utf-8"),
        ("$.exp", "2030-01-01T00:00:00+00:00"),
        ("$weird", "%"),
        ("alert", "true"),
        ("emoji", "\u00e9\u20ac"),
        ("empty", ""),
        ("plus", "1+1"),
        ("zone name", "a/b&c=d"),
    )


def test_decode_accepts_raw_dollar_as_in_azure_docs() -> None:
    encoded = decode_property_bag("%24.ct=application%2Fjson&%24.ce=utf-8")
    raw = decode_property_bag("$.ct=application%2Fjson&$.ce=utf-8")
    assert encoded == raw == (("$.ct", "application/json"), ("$.ce", "utf-8"))


def test_decode_empty_bag() -> None:
    assert decode_property_bag("") == ()


def test_decode_key_without_equals_has_empty_value() -> None:
    assert decode_property_bag("flag&k=v") == (("flag", ""), ("k", "v"))
    assert decode_property_bag("k=") == (("k", ""),)


def test_decode_bag_at_limits() -> None:
    many = "&".join(f"k{i}=v" for i in range(MAX_PROPERTIES))
    assert len(decode_property_bag(many)) == MAX_PROPERTIES
    long_value = "k=" + "v" * (MAX_PROPERTY_BAG_CHARS - 2)
    assert decode_property_bag(long_value)[0][1] == "v" * (MAX_PROPERTY_BAG_CHARS - 2)


@pytest.mark.parametrize(
    "bag",
    [
        pytest.param("&".join(f"k{i}=v" for i in range(MAX_PROPERTIES + 1)), id="too-many"),
        pytest.param("k=" + "v" * (MAX_PROPERTY_BAG_CHARS - 1), id="too-long"),
        pytest.param("a=1&a=2", id="duplicate"),
        pytest.param("%24.mid=1&$.mid=2", id="duplicate-after-decoding"),
        pytest.param("a=1&", id="trailing-ampersand"),
        pytest.param("&a=1", id="leading-ampersand"),
        pytest.param("a=1&&b=2", id="empty-item"),
        pytest.param("=v", id="empty-key"),
        pytest.param("%=v", id="bad-escape-key"),
        pytest.param("k=%G1", id="bad-escape-value"),
        pytest.param("k=%FF", id="invalid-utf8"),
        pytest.param("k=a=b", id="raw-equals-in-value"),
        pytest.param("k=a b", id="raw-space"),
        pytest.param("k=a+b", id="raw-plus"),
        pytest.param("k=a#b", id="raw-hash"),
        pytest.param("k=\u00e9", id="raw-non-ascii"),
        pytest.param("k=\x00", id="raw-nul"),
        pytest.param("k=%00", id="encoded-nul"),
        pytest.param("k=%0A", id="encoded-newline"),
        pytest.param("k%0A=v", id="encoded-newline-in-key"),
        pytest.param("k=%7F", id="encoded-del"),
        pytest.param("%00", id="nul-key"),
    ],
)
def test_decode_refuses_malformed_bags(bag: str) -> None:
    with pytest.raises(ValidationError):
        decode_property_bag(bag)


_PROPERTY_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=0, max_size=20
)


@given(
    st.dictionaries(_PROPERTY_TEXT.filter(bool), _PROPERTY_TEXT, max_size=10),
    st.sampled_from([None, "m-1"]),
    st.sampled_from([None, "id-1"]),
)
@settings(max_examples=200, derandomize=True)
def test_decode_round_trips_whatever_the_sdk_encodes(
    custom: dict[str, str], message_id: str | None, interface: str | None
) -> None:
    # Keys that collide with system properties the SDK adds itself are duplicates by design.
    custom = {k: v for k, v in custom.items() if k not in ("$.mid", "$.ifid")}
    topic = sdk_telemetry_topic(
        "dev1", None, custom, message_id=message_id, iothub_interface_id=interface
    )
    expected = []
    if message_id:
        expected.append(("$.mid", message_id))
    if interface:
        expected.append(("$.ifid", interface))
    expected.extend(sorted(custom.items()))
    assert decode_property_bag(bag_of(topic)) == tuple(expected)


@given(st.text(max_size=200))
@settings(max_examples=300, derandomize=True)
def test_decode_only_returns_or_raises_validation_error(bag: str) -> None:
    try:
        decoded = decode_property_bag(bag)
    except ValidationError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in decoded)


# --- publish authorisation ---------------------------------------------------------------------


def test_classify_sdk_telemetry_topics() -> None:
    full = classify_device_publish(SDK_CAPTURED_FULL, device_id="dev1")
    assert full.kind == "telemetry"
    assert full.properties == decode_property_bag(bag_of(SDK_CAPTURED_FULL))
    assert classify_device_publish(SDK_CAPTURED_PLAIN, device_id="dev1") == DevicePublish(
        kind="telemetry", properties=()
    )
    security = classify_device_publish(SDK_CAPTURED_SECURITY, device_id="dev1")
    assert security.properties == (("$.ifid", SECURITY_INTERFACE_ID),)


def test_classify_module_telemetry() -> None:
    module = classify_device_publish(SDK_CAPTURED_MODULE, device_id="dev1", module_id="filter-mod")
    assert module.properties == (("$.on", "alerts"), ("$.ct", "application/json"))


def test_classify_accepts_missing_trailing_slash() -> None:
    assert (
        classify_device_publish("devices/dev1/messages/events", device_id="dev1").properties == ()
    )
    assert (
        classify_device_publish(
            "devices/dev1/modules/m1/messages/events", device_id="dev1", module_id="m1"
        ).properties
        == ()
    )


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param("devices/dev2/messages/events/", id="other-device"),
        pytest.param("devices/DEV1/messages/events/", id="case-differs"),
        pytest.param("devices/dev1x/messages/events/", id="prefix-of-id"),
        pytest.param("devices/dev/messages/events/", id="id-prefix"),
        pytest.param("devices/dev1/messages/events/a=1/b=2", id="extra-level"),
        pytest.param("devices/dev1/messages/events//", id="empty-extra-level"),
        pytest.param("devices/dev1/messages/devicebound/", id="c2d-topic"),
        pytest.param("devices/dev1/messages/", id="truncated"),
        pytest.param("devices/dev1", id="device-root"),
        pytest.param("devices/dev1/modules/m1/messages/events/", id="module-topic-as-device"),
        pytest.param("/devices/dev1/messages/events/", id="leading-slash"),
        pytest.param("Devices/dev1/messages/events/", id="case-of-literal"),
        pytest.param("devices/dev1/messages/Events/", id="case-of-events"),
        pytest.param("", id="empty"),
        pytest.param("telemetry", id="arbitrary"),
        pytest.param("devices/dev1/messages/events/+", id="plus"),
        pytest.param("devices/dev1/messages/events/#", id="hash"),
        pytest.param("devices/+/messages/events/", id="wildcard-device"),
        pytest.param("$SYS/broker/load", id="sys"),
        pytest.param("$CONTROL/dynamic-security/v1", id="control"),
        pytest.param("$share/g/devices/dev1/messages/events/", id="share"),
        pytest.param("$dps/registrations/PUT/iotdps-register/?$rid=1", id="dps"),
    ],
)
def test_classify_refuses_everything_else(topic: str) -> None:
    with pytest.raises(AuthorizationError):
        classify_device_publish(topic, device_id="dev1")


@pytest.mark.parametrize(
    "topic",
    [
        "devices/dev1/messages/events/",
        "devices/dev1/modules/m2/messages/events/",
        "devices/dev2/modules/m1/messages/events/",
        "devices/dev1/modules/m1/messages/events/x/y",
        "devices/dev1/modules/m1/inputs/in1/",
    ],
)
def test_classify_module_refuses_everything_else(topic: str) -> None:
    with pytest.raises(AuthorizationError):
        classify_device_publish(topic, device_id="dev1", module_id="m1")


@pytest.mark.parametrize(
    ("device_id", "module_id"),
    [("", None), ("dev/1", None), ("dev1", ""), ("+", None), ("#", None)],
)
def test_invalid_authenticated_identities_fail_closed(
    device_id: str, module_id: str | None
) -> None:
    topic = f"devices/{device_id}/messages/events/"
    with pytest.raises(AuthorizationError):
        classify_device_publish(topic, device_id=device_id, module_id=module_id)
    with pytest.raises(AuthorizationError):
        check_device_subscribe(
            f"devices/{device_id}/messages/devicebound/#", device_id=device_id, module_id=module_id
        )


def test_refusals_name_no_topic_or_property_content() -> None:
    topic = "devices/dev2/messages/events/secret=hunter2"
    with pytest.raises(AuthorizationError) as excinfo:
        classify_device_publish(topic, device_id="dev1")
    assert "hunter2" not in str(excinfo.value)
    assert "dev2" not in str(excinfo.value)


def test_malformed_bag_on_own_topic_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        classify_device_publish("devices/dev1/messages/events/a=1&a=2", device_id="dev1")


@pytest.mark.parametrize(
    "bag",
    [
        "iothub-connection-device-id=dev2",
        "iothub-connection-auth-method=x509",
        "iothub-enqueuedtime=2020",
        "IoTHub-Connection-Device-Id=dev2",
        "ironhub-device=dev2",
        "IRONHUB-STREAM=security",
        "ironhub-stream=audit",
        "ironhub-stream=",
        "%24.cdid=dev2",
        "%24.cmid=m1",
    ],
)
def test_reserved_properties_are_refused(bag: str) -> None:
    with pytest.raises(AuthorizationError):
        classify_device_publish(f"devices/dev1/messages/events/{bag}", device_id="dev1")


def test_settable_reserved_properties_are_accepted() -> None:
    topic = (
        "devices/dev1/messages/events/iothub-creation-time-utc=2026-01-01T00%3A00%3A00Z"
        "&ironhub-stream=security&%24.cdid=dev1"
    )
    assert classify_device_publish(topic, device_id="dev1").properties == (
        ("iothub-creation-time-utc", "2026-01-01T00:00:00Z"),
        ("ironhub-stream", "security"),
        ("$.cdid", "dev1"),
    )
    module_topic = "devices/dev1/modules/m1/messages/events/%24.cdid=dev1&%24.cmid=m1"
    assert (
        len(classify_device_publish(module_topic, device_id="dev1", module_id="m1").properties) == 2
    )


# --- twin and method publishes -------------------------------------------------------------------

# Topics azure-iot-device 2.14.0 publishes (get_twin_topic_for_publish,
# get_method_topic_for_publish), produced by the SDK's own functions.
SDK_TWIN_GET = "$iothub/twin/GET/?$rid=7c5a3b1e-2f4d-4c8a-9b6e-0d1f2a3b4c5d"
SDK_TWIN_PATCH = "$iothub/twin/PATCH/properties/reported/?$rid=42"
SDK_METHOD_RESPONSE = "$iothub/methods/res/200/?$rid=1f"
SDK_METHOD_RESPONSE_ENCODED = "$iothub/methods/res/-2147483648/?$rid=r%2F1%26x%3Dy%3Fz%25"


def sdk_twin_request_topic(method: str, resource_location: str, request_id: str) -> str:
    """``get_twin_topic_for_publish``."""
    rid = urllib.parse.quote(request_id, safe="")
    return f"$iothub/twin/{method}{resource_location}?$rid={rid}"


def sdk_method_response_topic(request_id: str, status: int) -> str:
    """``get_method_topic_for_publish``."""
    status_text = urllib.parse.quote(str(status), safe="")
    return f"$iothub/methods/res/{status_text}/?$rid={urllib.parse.quote(request_id, safe='')}"


def test_sdk_request_replicas_reproduce_the_sdk() -> None:
    assert sdk_twin_request_topic("GET", "/", SDK_TWIN_GET.rsplit("=", 1)[1]) == SDK_TWIN_GET
    assert sdk_twin_request_topic("PATCH", "/properties/reported/", "42") == SDK_TWIN_PATCH
    assert sdk_method_response_topic("1f", 200) == SDK_METHOD_RESPONSE
    assert sdk_method_response_topic("r/1&x=y?z%", -(2**31)) == SDK_METHOD_RESPONSE_ENCODED


PRINTABLE_RID = "".join(chr(c) for c in range(0x21, 0x7F))[:MAX_REQUEST_ID_CHARS]

ACCEPTED_IOTHUB_PUBLISHES = [
    pytest.param(SDK_TWIN_GET, "twin-get", SDK_TWIN_GET.rsplit("=", 1)[1], None, id="sdk-get"),
    pytest.param(SDK_TWIN_PATCH, "twin-patch-reported", "42", None, id="sdk-patch"),
    pytest.param(SDK_METHOD_RESPONSE, "method-response", "1f", 200, id="sdk-method-response"),
    pytest.param(
        SDK_METHOD_RESPONSE_ENCODED, "method-response", "r/1&x=y?z%", -(2**31), id="sdk-int32-min"
    ),
    pytest.param("$iothub/methods/res/2147483647/?$rid=1", "method-response", "1", 2**31 - 1),
    pytest.param("$iothub/methods/res/0/?$rid=1", "method-response", "1", 0, id="status-0"),
    pytest.param("$iothub/methods/res/-1/?$rid=1", "method-response", "1", -1, id="status-neg"),
    pytest.param("$iothub/methods/res/-0/?$rid=1", "method-response", "1", 0, id="status-neg0"),
    pytest.param("$iothub/methods/res/0000000404/?$rid=1", "method-response", "1", 404),
    pytest.param("$iothub/twin/GET/?%24rid=abc", "twin-get", "abc", None, id="encoded-key"),
    pytest.param("$iothub/twin/GET/?$rid=%2F%3F%26%3D%25", "twin-get", "/?&=%", None),
    pytest.param("$iothub/twin/GET/?$rid=$iothub", "twin-get", "$iothub", None, id="raw-dollar"),
    pytest.param("$iothub/twin/GET/?$version=3&$rid=x", "twin-get", "x", None, id="version"),
    pytest.param("$iothub/twin/GET/?$rid=x&$version=", "twin-get", "x", None, id="empty-ver"),
    pytest.param(
        "$iothub/twin/PATCH/properties/reported/?$rid=x&%24version=12",
        "twin-patch-reported",
        "x",
        None,
        id="patch-version",
    ),
    pytest.param(
        f"$iothub/twin/GET/?$rid={urllib.parse.quote(PRINTABLE_RID, safe='')}",
        "twin-get",
        PRINTABLE_RID,
        None,
        id="rid-all-printable-at-limit",
    ),
]


@pytest.mark.parametrize(("topic", "kind", "request_id", "status"), ACCEPTED_IOTHUB_PUBLISHES)
@pytest.mark.parametrize("module_id", [None, "filter-mod"])
def test_classify_twin_and_method_publishes(
    topic: str, kind: str, request_id: str, status: int | None, module_id: str | None
) -> None:
    # A module uses the same $iothub topics as a device: its identity selects its own twin.
    assert classify_device_publish(topic, device_id="dev1", module_id=module_id) == DevicePublish(
        kind=kind,  # type: ignore[arg-type]
        properties=(),
        request_id=request_id,
        status=status,
    )


@given(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
@settings(max_examples=200, derandomize=True)
def test_classify_reads_back_what_the_sdk_publishes(request_id: str, status: int) -> None:
    get = classify_device_publish(sdk_twin_request_topic("GET", "/", request_id), device_id="d")
    assert (get.kind, get.request_id) == ("twin-get", request_id)
    patch = classify_device_publish(
        sdk_twin_request_topic("PATCH", "/properties/reported/", request_id), device_id="d"
    )
    assert (patch.kind, patch.request_id) == ("twin-patch-reported", request_id)
    response = classify_device_publish(
        sdk_method_response_topic(request_id, status), device_id="d", module_id="m"
    )
    assert (response.kind, response.request_id, response.status) == (
        "method-response",
        request_id,
        status,
    )


@pytest.mark.parametrize(
    "topic",
    [
        # Hub-to-device topics published by a device.
        pytest.param("$iothub/twin/PATCH/properties/desired/?$version=1", id="desired-patch"),
        pytest.param("$iothub/twin/PATCH/properties/desired/?$rid=1", id="desired-with-rid"),
        pytest.param("$iothub/twin/res/200/?$rid=1", id="twin-response"),
        pytest.param("$iothub/methods/POST/reboot/?$rid=1", id="method-request"),
        pytest.param("$iothub/methods/POST/#", id="methods-filter"),
        pytest.param("$iothub/twin/res/#", id="twin-res-filter"),
        pytest.param("$iothub/twin/res/#/x", id="twin-res-hash-prefix-trick"),
        pytest.param("$iothub/methods/res/+/?$rid=1", id="plus-status"),
        pytest.param("$iothub/twin/GET/?$rid=#", id="hash-in-rid"),
        # Near misses of the accepted shapes.
        pytest.param("$iothub/twin/GET?$rid=1", id="get-no-slash"),
        pytest.param("$iothub/twin/GET/x/?$rid=1", id="get-extra-level"),
        pytest.param("$iothub/twin/GET//?$rid=1", id="get-empty-level"),
        pytest.param("$iothub/twin/get/?$rid=1", id="get-case"),
        pytest.param("$iothub/twin/PATCH/properties/reported?$rid=1", id="patch-no-slash"),
        pytest.param("$iothub/twin/PATCH/properties/reported/x/?$rid=1", id="patch-extra"),
        pytest.param("$iothub/twin/PATCH/properties/?$rid=1", id="patch-truncated"),
        pytest.param("$iothub/twin/PATCH/?$rid=1", id="patch-root"),
        pytest.param("$iothub/methods/res/?$rid=1", id="response-no-status"),
        pytest.param("$iothub/methods/res/200?$rid=1", id="response-no-slash"),
        pytest.param("$iothub/methods/res/200/x/?$rid=1", id="response-extra-level"),
        pytest.param("$iothub/methods/RES/200/?$rid=1", id="response-case"),
        pytest.param("$iothub/twin/GET?/?$rid=1", id="question-mark-in-path"),
        pytest.param("$iothub/", id="iothub-root"),
        pytest.param("$iothub", id="iothub-bare"),
        pytest.param("$IOTHUB/twin/GET/?$rid=1", id="iothub-case"),
        pytest.param("/$iothub/twin/GET/?$rid=1", id="leading-slash"),
        pytest.param(" $iothub/twin/GET/?$rid=1", id="leading-space"),
        # Another identity's twin or methods, in any spelling.
        pytest.param("$iothub/dev2/twin/GET/?$rid=1", id="identity-in-iothub"),
        pytest.param("$iothub/devices/dev2/twin/GET/?$rid=1", id="device-in-iothub"),
        pytest.param("devices/dev2/twin/GET/?$rid=1", id="twin-under-other-device"),
        pytest.param("devices/dev1/twin/GET/?$rid=1", id="twin-under-own-device"),
        pytest.param("devices/dev2/methods/res/200/?$rid=1", id="method-under-other-device"),
        pytest.param("$share/g/$iothub/twin/GET/?$rid=1", id="shared"),
    ],
)
@pytest.mark.parametrize("module_id", [None, "m1"])
def test_classify_refuses_other_iothub_topics(topic: str, module_id: str | None) -> None:
    with pytest.raises(AuthorizationError):
        classify_device_publish(topic, device_id="dev1", module_id=module_id)


@pytest.mark.parametrize(
    "topic",
    [
        # The query.
        pytest.param("$iothub/twin/GET/", id="no-query"),
        pytest.param("$iothub/twin/GET/?", id="empty-query"),
        pytest.param("$iothub/twin/GET/?$rid", id="rid-without-equals"),
        pytest.param("$iothub/twin/GET/?$rid=", id="empty-rid"),
        pytest.param("$iothub/twin/GET/?rid=1", id="rid-without-dollar"),
        pytest.param("$iothub/twin/GET/?$RID=1", id="rid-case"),
        pytest.param("$iothub/twin/GET/?$version=1", id="version-only"),
        pytest.param("$iothub/twin/GET/?$rid=1&foo=2", id="unknown-key"),
        pytest.param("$iothub/twin/GET/?$rid=1&=2", id="empty-key"),
        pytest.param("$iothub/twin/GET/?$rid=1&$rid=2", id="duplicate-rid"),
        pytest.param("$iothub/twin/GET/?$rid=1&%24rid=2", id="duplicate-after-decoding"),
        pytest.param("$iothub/twin/GET/?$version=1&$version=2&$rid=1", id="duplicate-version"),
        pytest.param("$iothub/twin/GET/?$rid=1&", id="trailing-ampersand"),
        pytest.param("$iothub/twin/GET/?&$rid=1", id="leading-ampersand"),
        pytest.param("$iothub/twin/GET/?$rid=1&$version=%zz", id="bad-escape-in-version"),
        pytest.param("$iothub/twin/GET/?$rid=1&$version=" + "1" * 1100, id="query-too-long"),
        pytest.param("$iothub/twin/GET/?$rid=a=b", id="raw-equals"),
        pytest.param("$iothub/twin/GET/?$rid=a b", id="raw-space"),
        pytest.param("$iothub/twin/GET/?$rid=a/b", id="raw-slash"),
        pytest.param("$iothub/twin/GET/?$rid=a?b", id="raw-question-mark"),
        pytest.param("$iothub/twin/GET/?$rid=\u00e9", id="raw-non-ascii"),
        pytest.param("$iothub/twin/GET/?$rid=a\x00", id="raw-nul"),
        # The request id, decoded.
        pytest.param("$iothub/twin/GET/?$rid=%zz", id="rid-bad-escape"),
        pytest.param("$iothub/twin/GET/?$rid=%", id="rid-lone-percent"),
        pytest.param("$iothub/twin/GET/?$rid=%FF", id="rid-not-utf8"),
        pytest.param("$iothub/twin/GET/?$rid=%C3%A9", id="rid-non-ascii"),
        pytest.param("$iothub/twin/GET/?$rid=a%20b", id="rid-space"),
        pytest.param("$iothub/twin/GET/?$rid=a%00", id="rid-nul"),
        pytest.param("$iothub/twin/GET/?$rid=a%0A", id="rid-newline"),
        pytest.param("$iothub/twin/GET/?$rid=a%7F", id="rid-del"),
        pytest.param("$iothub/twin/GET/?$rid=" + "a" * 129, id="rid-too-long"),
        pytest.param(
            "$iothub/twin/PATCH/properties/reported/?$rid=" + "%41" * 129, id="rid-long-encoded"
        ),
        # The method status.
        pytest.param("$iothub/methods/res/2OO/?$rid=1", id="status-letters"),
        pytest.param("$iothub/methods/res/%2B200/?$rid=1", id="status-encoded-plus"),
        pytest.param("$iothub/methods/res/%32%30%30/?$rid=1", id="status-encoded-digits"),
        pytest.param("$iothub/methods/res/12345678901/?$rid=1", id="status-11-digits"),
        pytest.param("$iothub/methods/res/2147483648/?$rid=1", id="status-above-int32"),
        pytest.param("$iothub/methods/res/-2147483649/?$rid=1", id="status-below-int32"),
        pytest.param("$iothub/methods/res/9999999999/?$rid=1", id="status-10-digits-too-big"),
        pytest.param("$iothub/methods/res//?$rid=1", id="status-empty"),
        pytest.param("$iothub/methods/res/-/?$rid=1", id="status-minus-only"),
        pytest.param("$iothub/methods/res/--1/?$rid=1", id="status-double-minus"),
        pytest.param("$iothub/methods/res/0x10/?$rid=1", id="status-hex"),
        pytest.param("$iothub/methods/res/1e3/?$rid=1", id="status-exponent"),
        pytest.param("$iothub/methods/res/200.0/?$rid=1", id="status-float"),
        pytest.param("$iothub/methods/res/2_00/?$rid=1", id="status-underscore"),
        pytest.param("$iothub/methods/res/ 200/?$rid=1", id="status-space"),
        pytest.param("$iothub/methods/res/\u0662\u0660\u0660/?$rid=1", id="status-arabic"),
        pytest.param("$iothub/methods/res/200/", id="status-ok-but-no-query"),
    ],
)
@pytest.mark.parametrize("module_id", [None, "m1"])
def test_classify_refuses_malformed_requests(topic: str, module_id: str | None) -> None:
    with pytest.raises(ValidationError):
        classify_device_publish(topic, device_id="dev1", module_id=module_id)


def test_status_with_plus_is_a_wildcard_refusal() -> None:
    # A raw '+' is an MQTT wildcard, refused before the status is read.
    with pytest.raises(AuthorizationError, match="wildcard"):
        classify_device_publish("$iothub/methods/res/+200/?$rid=1", device_id="dev1")


def test_request_refusals_do_not_echo_the_request_id() -> None:
    with pytest.raises(ValidationError) as excinfo:
        classify_device_publish("$iothub/twin/GET/?$rid=hunter2%20x", device_id="dev1")
    assert "hunter2" not in str(excinfo.value)
    with pytest.raises(ValidationError) as excinfo:
        classify_device_publish("$iothub/twin/GET/?$rid=1&hunter2=x", device_id="dev1")
    assert "hunter2" not in str(excinfo.value)


# --- module identities and output names ----------------------------------------------------------


def test_module_may_not_publish_as_its_parent_device() -> None:
    with pytest.raises(AuthorizationError):
        classify_device_publish("devices/dev1/messages/events/", device_id="dev1", module_id="m1")
    with pytest.raises(AuthorizationError):
        classify_device_publish("devices/dev1/messages/events", device_id="dev1", module_id="m1")


def test_device_may_not_publish_as_one_of_its_modules() -> None:
    for topic in ("devices/dev1/modules/x/messages/events", "devices/dev1/modules/x/messages/"):
        with pytest.raises(AuthorizationError):
            classify_device_publish(topic, device_id="dev1")


@pytest.mark.parametrize("value", ["alerts", "output1", "o", "a" * 128, "out:1@edge_x.y-z", "9"])
def test_module_output_names_are_accepted(value: str) -> None:
    topic = f"devices/dev1/modules/m1/messages/events/%24.on={urllib.parse.quote(value)}"
    published = classify_device_publish(topic, device_id="dev1", module_id="m1")
    assert published.properties == (("$.on", value),)


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 129, id="too-long"),
        pytest.param("a%2Fb", id="slash"),
        pytest.param("a%23", id="hash"),
        pytest.param("a%2B", id="plus"),
        pytest.param("-out", id="leading-hyphen"),
        pytest.param("out%20put", id="space"),
        pytest.param("%24out", id="dollar"),
        pytest.param("%C3%A9", id="non-ascii"),
    ],
)
def test_module_output_names_follow_the_identity_rule(encoded: str) -> None:
    topic = f"devices/dev1/modules/m1/messages/events/%24.on={encoded}"
    with pytest.raises(ValidationError, match="output name"):
        classify_device_publish(topic, device_id="dev1", module_id="m1")


def test_devices_may_not_name_an_output() -> None:
    with pytest.raises(AuthorizationError, match="only modules"):
        classify_device_publish("devices/dev1/messages/events/%24.on=alerts", device_id="dev1")


# --- subscribe authorisation -------------------------------------------------------------------


# The filters azure-iot-device 2.14.0 subscribes (get_*_topic_for_subscribe).
SDK_DEVICE_FILTERS = [
    ("devices/dev1/messages/devicebound/#", SubscriptionKind.C2D),
    ("$iothub/methods/POST/#", SubscriptionKind.METHODS),
    ("$iothub/twin/res/#", SubscriptionKind.TWIN_RESPONSES),
    ("$iothub/twin/PATCH/properties/desired/#", SubscriptionKind.DESIRED),
]
SDK_MODULE_FILTERS = [
    ("devices/dev1/modules/filter-mod/inputs/#", SubscriptionKind.MODULE_INPUTS),
    *SDK_DEVICE_FILTERS[1:],
]


@pytest.mark.parametrize(("topic_filter", "kind"), SDK_DEVICE_FILTERS)
def test_subscribe_sdk_device_filters(topic_filter: str, kind: SubscriptionKind) -> None:
    assert check_device_subscribe(topic_filter, device_id="dev1") is kind


@pytest.mark.parametrize(("topic_filter", "kind"), SDK_MODULE_FILTERS)
def test_subscribe_sdk_module_filters(topic_filter: str, kind: SubscriptionKind) -> None:
    assert check_device_subscribe(topic_filter, device_id="dev1", module_id="filter-mod") is kind


def test_subscription_kinds_are_strings() -> None:
    assert [str(kind) for kind in SubscriptionKind] == [
        "c2d",
        "module-inputs",
        "twin-responses",
        "desired",
        "methods",
    ]
    assert SubscriptionKind("methods") is SubscriptionKind.METHODS


@pytest.mark.parametrize(
    "topic_filter",
    [
        pytest.param("#", id="everything"),
        pytest.param("+/#", id="plus-everything"),
        pytest.param("+/+/messages/devicebound/#", id="plus-levels"),
        pytest.param("devices/+/messages/devicebound/#", id="any-device"),
        pytest.param("devices/#", id="all-devices"),
        pytest.param("devices/dev1/#", id="own-root"),
        pytest.param("devices/dev1/messages/#", id="own-messages"),
        pytest.param("devices/dev1/messages/events/#", id="own-telemetry"),
        pytest.param("devices/dev1/messages/devicebound/+", id="plus-instead-of-hash"),
        pytest.param("devices/dev1/messages/devicebound/#/x", id="hash-not-last"),
        pytest.param("devices/dev1/messages/devicebound", id="no-wildcard"),
        pytest.param("devices/dev1/messages/devicebound/", id="trailing-slash"),
        pytest.param("devices/dev1/messages/devicebound/x", id="specific"),
        pytest.param("devices/dev2/messages/devicebound/#", id="other-device"),
        pytest.param("devices/dev1x/messages/devicebound/#", id="longer-id"),
        pytest.param("devices/dev/messages/devicebound/#", id="shorter-id"),
        pytest.param("devices/DEV1/messages/devicebound/#", id="case"),
        pytest.param("devices/dev1/messages/devicebound/##", id="double-hash"),
        pytest.param("devices/dev1/messages/devicebound/#/", id="hash-then-slash"),
        pytest.param("devices/dev1/modules/m1/inputs/#", id="module-filter-for-device"),
        pytest.param("$share/g/devices/dev1/messages/devicebound/#", id="shared"),
        pytest.param("$share/g/#", id="shared-all"),
        pytest.param("$SYS/#", id="sys"),
        pytest.param("$dps/registrations/res/#", id="dps"),
        pytest.param("", id="empty"),
    ],
)
def test_subscribe_refuses_everything_else(topic_filter: str) -> None:
    with pytest.raises(AuthorizationError, match="outside"):
        check_device_subscribe(topic_filter, device_id="dev1")


@pytest.mark.parametrize(
    "topic_filter",
    [
        pytest.param("$iothub/#", id="all-iothub"),
        pytest.param("$iothub/+/res/#", id="plus-service"),
        pytest.param("$iothub/twin/#", id="all-twin"),
        pytest.param("$iothub/twin/+", id="twin-plus"),
        pytest.param("$iothub/twin/res/+", id="twin-res-plus"),
        pytest.param("$iothub/twin/res/+/#", id="twin-res-plus-hash"),
        pytest.param("$iothub/twin/res/#/x", id="twin-res-hash-prefix-trick"),
        pytest.param("$iothub/twin/res/#/", id="twin-res-hash-slash"),
        pytest.param("$iothub/twin/res/##", id="twin-res-double-hash"),
        pytest.param("$iothub/twin/res", id="twin-res-no-wildcard"),
        pytest.param("$iothub/twin/res/", id="twin-res-trailing-slash"),
        pytest.param("$iothub/twin/res/200/#", id="twin-res-narrower"),
        pytest.param("$iothub/twin/GET/#", id="twin-get"),
        pytest.param("$iothub/twin/PATCH/#", id="twin-patch-all"),
        pytest.param("$iothub/twin/PATCH/properties/#", id="twin-properties"),
        pytest.param("$iothub/twin/PATCH/properties/desired", id="desired-no-wildcard"),
        pytest.param("$iothub/twin/PATCH/properties/desired/+", id="desired-plus"),
        pytest.param("$iothub/twin/PATCH/properties/reported/#", id="reported"),
        pytest.param("$iothub/twin/patch/properties/desired/#", id="desired-case"),
        pytest.param("$iothub/methods/#", id="all-methods"),
        pytest.param("$iothub/methods/POST/+", id="methods-plus"),
        pytest.param("$iothub/methods/POST/reboot/#", id="one-method"),
        pytest.param("$iothub/methods/POST/#/", id="methods-hash-slash"),
        pytest.param("$iothub/methods/POST", id="methods-no-wildcard"),
        pytest.param("$iothub/methods/res/#", id="method-responses"),
        pytest.param("$IOTHUB/twin/res/#", id="iothub-case"),
        pytest.param("$iothub//twin/res/#", id="empty-level"),
        pytest.param("/$iothub/twin/res/#", id="leading-slash"),
        pytest.param(" $iothub/twin/res/#", id="leading-space"),
        pytest.param("$share/g/$iothub/twin/res/#", id="shared-twin"),
        pytest.param("$iothub/devices/dev1/twin/res/#", id="identity-in-iothub"),
        pytest.param("devices/dev1/twin/res/#", id="twin-under-device"),
        pytest.param("devices/dev2/modules/m1/inputs/#", id="other-device-module"),
    ],
)
@pytest.mark.parametrize("module_id", [None, "m1"])
def test_subscribe_refuses_iothub_variants(topic_filter: str, module_id: str | None) -> None:
    with pytest.raises(AuthorizationError, match="outside"):
        check_device_subscribe(topic_filter, device_id="dev1", module_id=module_id)


@pytest.mark.parametrize(
    "topic_filter",
    [
        "devices/dev1/messages/devicebound/#",  # modules do not get C2D
        "devices/dev1/modules/m2/inputs/#",
        "devices/dev2/modules/m1/inputs/#",
        "devices/dev1/modules/+/inputs/#",
        "devices/dev1/modules/m1/inputs/in1/#",
        "devices/dev1/modules/m1/#",
    ],
)
def test_module_subscribe_refuses_everything_else(topic_filter: str) -> None:
    with pytest.raises(AuthorizationError):
        check_device_subscribe(topic_filter, device_id="dev1", module_id="m1")


def test_identity_that_is_a_prefix_does_not_widen_the_match() -> None:
    # comqtt#169: prefix matching let `allowed` match `allowed/secret`.
    check_device_subscribe("devices/a/messages/devicebound/#", device_id="a")
    with pytest.raises(AuthorizationError):
        check_device_subscribe("devices/a/messages/devicebound/#", device_id="ab")


# --- security stream ---------------------------------------------------------------------------


def test_security_markers() -> None:
    assert {
        ("$.ifid", "urn:azureiot:Security:SecurityAgent:1"),
        ("ironhub-stream", "security"),
    } == SECURITY_MESSAGE_MARKERS


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ((), False),
        ((("$.ifid", SECURITY_INTERFACE_ID),), True),
        ((("a", "b"), ("ironhub-stream", "security")), True),
        ((("$.ifid", "urn:azureiot:Other:1"),), False),
        ((("$.ifid", SECURITY_INTERFACE_ID.lower()),), False),
        ((("ifid", SECURITY_INTERFACE_ID),), False),
        ((("alert", "security"),), False),
    ],
)
def test_is_security_message(properties: tuple[tuple[str, str], ...], expected: bool) -> None:
    assert is_security_message(properties) is expected


def test_sdk_security_message_goes_to_the_security_stream() -> None:
    published = classify_device_publish(SDK_CAPTURED_SECURITY, device_id="dev1")
    assert is_security_message(published.properties)
    assert not is_security_message(
        classify_device_publish(SDK_CAPTURED_FULL, device_id="dev1").properties
    )


def test_public_surface() -> None:
    for name in azure.__all__:
        assert hasattr(azure, name), name


# --- identity helpers and names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ("dev1", ("dev1", None)),
        ("dev1/m1", ("dev1", "m1")),
        ("a:b@c/d.e-f_g", ("a:b@c", "d.e-f_g")),
    ],
)
def test_split_identity(identity: str, expected: tuple[str, str | None]) -> None:
    assert split_identity(identity) == expected


@pytest.mark.parametrize(
    "identity", ["", "/", "dev1/", "/m1", "dev1/m1/x", "dev1//m1", "dev 1", "dev1/m+", "#/m1"]
)
def test_split_identity_refuses_malformed_keys(identity: str) -> None:
    with pytest.raises(ValidationError):
        split_identity(identity)


@pytest.mark.parametrize("name", ["input1", "i", "a" * 128, "in:1@edge_x.y-z", "9"])
def test_valid_input_names(name: str) -> None:
    validate_input_name(name)


@pytest.mark.parametrize(
    "name", ["", "a" * 129, "in/1", "in#", "in+", "in put", "-in", "$in", "in%2F", "\u00e9"]
)
def test_invalid_input_names(name: str) -> None:
    with pytest.raises(ValidationError, match="input name"):
        validate_input_name(name)


VALID_METHOD_NAMES = [
    "reboot",
    "m",
    "a" * MAX_METHOD_NAME_CHARS,
    "get-Status_1.2",
    "$set:mode!",
    "*~()'\"<>[]{}|\\^`;,:@!$",
]


@pytest.mark.parametrize("name", VALID_METHOD_NAMES)
def test_valid_method_names(name: str) -> None:
    validate_method_name(name)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * (MAX_METHOD_NAME_CHARS + 1), id="too-long"),
        pytest.param("a/b", id="slash"),
        pytest.param("a#", id="hash"),
        pytest.param("a+", id="plus"),
        pytest.param("a?b", id="question-mark"),
        pytest.param("a&b", id="ampersand"),
        pytest.param("a=b", id="equals"),
        pytest.param("a%2F", id="percent"),
        pytest.param("a b", id="space"),
        pytest.param("\u00e9", id="non-ascii"),
        pytest.param("a\x00", id="nul"),
        pytest.param("a\x7f", id="del"),
        pytest.param("a\n", id="newline"),
    ],
)
def test_invalid_method_names(name: str) -> None:
    with pytest.raises(ValidationError, match="method name"):
        validate_method_name(name)
    with pytest.raises(ValidationError):
        method_request_topic(name, "1")


# --- a replica of the SDK's hub-to-device topic parsing (do not import the SDK from tests) -------

_SDK_SYSTEM_ATTRIBUTES = {
    "$.mid": "message_id",
    "$.cid": "correlation_id",
    "$.uid": "user_id",
    "$.ct": "content_type",
    "$.ce": "content_encoding",
    "$.exp": "expiry_time_utc",
    "iothub-ack": "ack",
}


def sdk_extract_properties(properties_str: str) -> dict[str, str]:
    """``_extract_properties``: every item split at every '=', leading '$'s stripped."""
    found = {}
    for entry in properties_str.split("&"):
        pair = entry.split("=")
        found[urllib.parse.unquote(pair[0]).lstrip("$")] = urllib.parse.unquote(pair[1])
    return found


def sdk_message_properties(topic: str) -> dict[str, object]:
    """``extract_message_properties_from_topic``, as the attributes it sets on a Message."""
    parts = topic.split("/")
    if len(parts) > 4 and parts[4] == "inputs":
        properties = parts[6] if len(parts) > 6 else None
    elif len(parts) > 3 and parts[3] == "devicebound":
        properties = parts[4] if len(parts) > 4 else None
    else:
        raise ValueError("topic has incorrect format")
    message: dict[str, object] = {}
    custom: dict[str, str | None] = {}
    for entry in properties.split("&") if properties else ():
        pair = entry.split("=")
        key = urllib.parse.unquote(pair[0])
        value = urllib.parse.unquote(pair[1]) if len(pair) > 1 else None
        if key == "$.to":
            continue
        if key in _SDK_SYSTEM_ATTRIBUTES:
            message[_SDK_SYSTEM_ATTRIBUTES[key]] = value
        else:
            custom[key] = value
    message["custom_properties"] = custom
    return message


def sdk_receive(topic: str, device_id: str, module_id: str | None = None) -> dict[str, object]:
    """``IoTHubMQTTTranslationStage._handle_pipeline_event``: the same tests in the same order."""
    parts = topic.split("/")
    if f"devices/{device_id}/messages/devicebound" in topic:  # is_c2d_topic
        return {"event": "c2d", **sdk_message_properties(topic)}
    if module_id and f"devices/{device_id}/modules/{module_id}/inputs/" in topic:
        # is_input_topic, then get_input_name_from_topic
        assert len(parts) > 5
        assert parts[4] == "inputs"
        input_name = urllib.parse.unquote(parts[5])
        return {"event": "input", **sdk_message_properties(topic), "input_name": input_name}
    if "$iothub/methods/POST" in topic:  # is_method_topic: a substring test
        assert len(parts) >= 4
        return {
            "event": "method",
            "name": urllib.parse.unquote(parts[3]),  # get_method_name_from_topic
            "request_id": sdk_extract_properties(topic.split("?")[1])["rid"],
        }
    if topic.startswith("$iothub/twin/res/"):  # is_twin_response_topic
        assert len(parts) >= 4
        return {
            "event": "twin-response",
            "request_id": sdk_extract_properties(topic.split("?")[1])["rid"],
            "status_code": int(urllib.parse.unquote(parts[3])),  # get_twin_status_code_from_topic
        }
    if topic.startswith("$iothub/twin/PATCH/properties/desired"):
        return {"event": "desired-patch"}
    return {"event": "unknown"}


# (topic our builder must produce, what the real SDK 2.14.0 functions decode from it)
C2D_PLAIN = "devices/dev1/messages/devicebound/"
C2D_FULL = (
    "devices/dev1/messages/devicebound/%24.mid=msg-1&%24.cid=c%2F1&%24.uid=user-1"
    "&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00Z&iothub-ack=full"
    "&%24.to=%2Fdevices%2Fdev1%2Fmessages%2Fdevicebound&zone%20name=a%2Fb%26c%3Dd&plus=1%2B1"
    "&emoji=%C3%A9%E2%82%AC&empty=&q=%3F%23%25"
)
C2D_FULL_PROPERTIES = (
    ("$.mid", "msg-1"),
    ("$.cid", "c/1"),
    ("$.uid", "user-1"),
    ("$.ct", "application/json"),
    ("$.ce", "utf-8"),
    ("$.exp", "2030-01-01T00:00:00Z"),
    ("iothub-ack", "full"),
    ("$.to", "/devices/dev1/messages/devicebound"),
    ("zone name", "a/b&c=d"),
    ("plus", "1+1"),
    ("emoji", "\u00e9\u20ac"),
    ("empty", ""),
    ("q", "?#%"),
)
INPUT_TOPIC = "devices/dev1/modules/filter-mod/inputs/in:1@x/%24.mid=m&k%2F1=v%3D1"
TWIN_RESPONSE_GET = "$iothub/twin/res/200/?$rid=7c5a3b1e-2f4d-4c8a-9b6e-0d1f2a3b4c5d"
TWIN_RESPONSE_PATCH = "$iothub/twin/res/204/?$rid=r%2F1%26x%3Dy%3Fz%25&$version=5"
DESIRED_PATCH = "$iothub/twin/PATCH/properties/desired/?$version=7"
METHOD_REQUEST = "$iothub/methods/POST/reboot/?$rid=1"
METHOD_REQUEST_ODD = "$iothub/methods/POST/$set:mode!/?$rid=%24iothub%2Fmethods%2FPOST%2Fx"

BUILDER_VECTORS = [
    pytest.param(
        c2d_topic("dev1", []),
        C2D_PLAIN,
        ("dev1", None),
        {"event": "c2d", "custom_properties": {}},
        id="c2d-plain",
    ),
    pytest.param(
        c2d_topic("dev1", C2D_FULL_PROPERTIES),
        C2D_FULL,
        ("dev1", None),
        {
            "event": "c2d",
            "message_id": "msg-1",
            "correlation_id": "c/1",
            "user_id": "user-1",
            "content_type": "application/json",
            "content_encoding": "utf-8",
            "expiry_time_utc": "2030-01-01T00:00:00Z",
            "ack": "full",
            "custom_properties": {
                "zone name": "a/b&c=d",
                "plus": "1+1",
                "emoji": "\u00e9\u20ac",
                "empty": "",
                "q": "?#%",
            },
        },
        id="c2d-full",
    ),
    pytest.param(
        module_input_topic("dev1", "filter-mod", "in:1@x", [("$.mid", "m"), ("k/1", "v=1")]),
        INPUT_TOPIC,
        ("dev1", "filter-mod"),
        {
            "event": "input",
            "message_id": "m",
            "custom_properties": {"k/1": "v=1"},
            "input_name": "in:1@x",
        },
        id="module-input",
    ),
    pytest.param(
        twin_response_topic(200, "7c5a3b1e-2f4d-4c8a-9b6e-0d1f2a3b4c5d"),
        TWIN_RESPONSE_GET,
        ("dev1", None),
        {
            "event": "twin-response",
            "request_id": "7c5a3b1e-2f4d-4c8a-9b6e-0d1f2a3b4c5d",
            "status_code": 200,
        },
        id="twin-response-get",
    ),
    pytest.param(
        twin_response_topic(204, "r/1&x=y?z%", version=5),
        TWIN_RESPONSE_PATCH,
        ("dev1", "filter-mod"),
        {"event": "twin-response", "request_id": "r/1&x=y?z%", "status_code": 204},
        id="twin-response-patch",
    ),
    pytest.param(
        desired_patch_topic(7), DESIRED_PATCH, ("dev1", None), {"event": "desired-patch"}, id="des"
    ),
    pytest.param(
        method_request_topic("reboot", "1"),
        METHOD_REQUEST,
        ("dev1", None),
        {"event": "method", "name": "reboot", "request_id": "1"},
        id="method",
    ),
    pytest.param(
        method_request_topic("$set:mode!", "$iothub/methods/POST/x"),
        METHOD_REQUEST_ODD,
        ("dev1", "filter-mod"),
        {"event": "method", "name": "$set:mode!", "request_id": "$iothub/methods/POST/x"},
        id="method-odd",
    ),
]


@pytest.mark.parametrize(("built", "expected", "identity", "decoded"), BUILDER_VECTORS)
def test_builders_produce_topics_the_sdk_decodes(
    built: str, expected: str, identity: tuple[str, str | None], decoded: dict[str, object]
) -> None:
    assert built == expected
    assert sdk_receive(expected, *identity) == decoded


def test_c2d_bag_decodes_with_our_own_decoder_too() -> None:
    assert decode_property_bag(C2D_FULL.split("/devicebound/", 1)[1]) == C2D_FULL_PROPERTIES


def test_twin_response_request_id_cannot_pose_as_a_method() -> None:
    # The SDK tests for methods by substring before it tests for twin responses; a raw request
    # id holding "$iothub/methods/POST" would turn an answer into a method call.
    rid = "$iothub/methods/POST/evil"
    topic = twin_response_topic(200, rid)
    assert "$iothub/methods/POST" not in topic
    assert sdk_receive(topic, "dev1") == {
        "event": "twin-response",
        "request_id": rid,
        "status_code": 200,
    }


def test_c2d_property_cannot_pose_as_another_device() -> None:
    topic = c2d_topic("dev1", [("x", "devices/dev2/messages/devicebound")])
    assert "dev2/" not in topic
    assert sdk_receive(topic, "dev2")["event"] == "unknown"


_REQUEST_IDS = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128
)
_CLOUD_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=0, max_size=20
)
_CLOUD_KEYS = _CLOUD_TEXT.filter(
    lambda k: (
        bool(k) and not k.startswith("$") and not k.lower().startswith(("iothub-", "ironhub-"))
    )
)


@given(
    _REQUEST_IDS,
    st.sampled_from([200, 204, 400, 429, 500, 503]),
    st.none() | st.integers(0, 2**63 - 1),
)
@settings(max_examples=200, derandomize=True)
def test_twin_response_round_trips_through_the_sdk(
    request_id: str, status: int, version: int | None
) -> None:
    topic = twin_response_topic(status, request_id, version)
    assert sdk_receive(topic, "dev1", "m1") == {
        "event": "twin-response",
        "request_id": request_id,
        "status_code": status,
    }


@given(st.sampled_from(VALID_METHOD_NAMES), _REQUEST_IDS)
@settings(max_examples=200, derandomize=True)
def test_method_request_round_trips_through_the_sdk_and_back(name: str, request_id: str) -> None:
    topic = method_request_topic(name, request_id)
    decoded = sdk_receive(topic, "dev1")
    assert decoded == {"event": "method", "name": name, "request_id": request_id}
    # The device echoes the request id it decoded; we read back the one we sent.
    answer = sdk_method_response_topic(request_id, 200)
    published = classify_device_publish(answer, device_id="dev1")
    assert published.request_id == request_id


@given(st.dictionaries(_CLOUD_KEYS, _CLOUD_TEXT, max_size=10))
@settings(max_examples=200, derandomize=True)
def test_cloud_properties_round_trip_through_the_sdk(custom: dict[str, str]) -> None:
    admitted = validate_cloud_properties(custom.items())
    topic = c2d_topic("dev1", admitted)
    assert sdk_receive(topic, "dev1") == {"event": "c2d", "custom_properties": custom}
    bag = topic.removeprefix("devices/dev1/messages/devicebound/")
    assert decode_property_bag(bag) == tuple(custom.items())
    input_topic = module_input_topic("dev1", "m1", "in1", admitted)
    assert sdk_receive(input_topic, "dev1", "m1") == {
        "event": "input",
        "custom_properties": custom,
        "input_name": "in1",
    }


# --- builders: validation ------------------------------------------------------------------------


def test_encode_property_bag() -> None:
    assert encode_property_bag([]) == ""
    assert encode_property_bag([("$.mid", "1"), ("a b", "c/d")]) == "%24.mid=1&a%20b=c%2Fd"
    assert encode_property_bag([["k", "v"]]) == "k=v"  # type: ignore[list-item]
    assert encode_property_bag(iter([("k", "")])) == "k="


@pytest.mark.parametrize(
    "properties",
    [
        pytest.param([("", "v")], id="empty-key"),
        pytest.param([("k", "1"), ("k", "2")], id="duplicate"),
        pytest.param([("k\n", "v")], id="control-in-key"),
        pytest.param([("k", "v\x00")], id="control-in-value"),
        pytest.param([("k", "v\x7f")], id="del-in-value"),
        pytest.param([("k", "\ud800")], id="lone-surrogate"),
        pytest.param([("k",)], id="not-a-pair"),
        pytest.param([("k", "v", "w")], id="triple"),
        pytest.param([("k", 1)], id="non-string-value"),
        pytest.param([(1, "v")], id="non-string-key"),
        pytest.param(["kv"], id="string-item"),
        pytest.param([{"k": "v"}], id="dict-item"),
    ],
)
def test_encode_property_bag_refuses(properties: list[object]) -> None:
    with pytest.raises(ValidationError):
        encode_property_bag(properties)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        validate_cloud_properties(properties)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        c2d_topic("dev1", properties)  # type: ignore[arg-type]


def test_validate_cloud_properties_accepts_and_returns_a_tuple() -> None:
    assert validate_cloud_properties([]) == ()
    properties = [("alert", "true"), ("zone name", "a/b"), ("k" * MAX_PROPERTY_KEY_CHARS, "")]
    assert validate_cloud_properties(properties) == tuple(properties)
    assert validate_cloud_properties({"a": "1"}.items()) == (("a", "1"),)
    many = [(f"k{i}", "v") for i in range(MAX_PROPERTIES)]
    assert len(validate_cloud_properties(many)) == MAX_PROPERTIES
    # Exactly at the encoded limit.
    at_limit = [("k", "v" * (MAX_PROPERTY_BAG_CHARS - 2))]
    assert validate_cloud_properties(at_limit) == tuple(at_limit)


@pytest.mark.parametrize(
    "properties",
    [
        pytest.param([(f"k{i}", "v") for i in range(MAX_PROPERTIES + 1)], id="too-many"),
        pytest.param([("k" * (MAX_PROPERTY_KEY_CHARS + 1), "v")], id="key-too-long"),
        pytest.param([("$.mid", "1")], id="system-property"),
        pytest.param([("$", "1")], id="dollar"),
        pytest.param([("$.to", "/devices/dev2")], id="to"),
        pytest.param([("iothub-ack", "full")], id="iothub-ack"),
        pytest.param([("IoTHub-Connection-Device-Id", "dev2")], id="iothub-case"),
        pytest.param([("ironhub-stream", "security")], id="ironhub"),
        pytest.param([("IRONHUB-x", "1")], id="ironhub-case"),
        pytest.param([("k", "v" * (MAX_PROPERTY_BAG_CHARS - 1))], id="bag-too-long"),
        pytest.param([("k", "\u00e9" * 1400)], id="bag-too-long-once-encoded"),
    ],
)
def test_validate_cloud_properties_refuses(properties: list[tuple[str, str]]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate_cloud_properties(properties)
    assert "dev2" not in str(excinfo.value)


def test_validate_cloud_properties_reads_a_bounded_prefix() -> None:
    endless = ((f"k{i}", "v") for i in itertools.count())
    with pytest.raises(ValidationError, match="at most"):
        validate_cloud_properties(endless)


@pytest.mark.parametrize("device_id", ["", "dev/1", "+", "#", "dev 1", "$dev"])
def test_c2d_topic_refuses_invalid_devices(device_id: str) -> None:
    with pytest.raises(ValidationError):
        c2d_topic(device_id, [])


@pytest.mark.parametrize(
    ("device_id", "module_id", "input_name"),
    [
        ("dev/1", "m1", "in1"),
        ("dev1", "", "in1"),
        ("dev1", "m/1", "in1"),
        ("dev1", "m1", ""),
        ("dev1", "m1", "in/1"),
        ("dev1", "m1", "#"),
        ("dev1", "m1", "a" * 129),
    ],
)
def test_module_input_topic_refuses_invalid_names(
    device_id: str, module_id: str, input_name: str
) -> None:
    with pytest.raises(ValidationError):
        module_input_topic(device_id, module_id, input_name, [])


def test_twin_response_topic_forms() -> None:
    assert twin_response_topic(429, "1") == "$iothub/twin/res/429/?$rid=1"
    assert twin_response_topic(204, "1", 0) == "$iothub/twin/res/204/?$rid=1&$version=0"
    assert twin_response_topic(100, "1") == "$iothub/twin/res/100/?$rid=1"
    assert twin_response_topic(599, "1", 2**63 - 1).endswith(f"&$version={2**63 - 1}")
    # An IntEnum is written as its number, never its name.
    assert twin_response_topic(http.HTTPStatus.OK, "1") == "$iothub/twin/res/200/?$rid=1"
    assert twin_response_topic(200, "a" * MAX_REQUEST_ID_CHARS).endswith("a" * 128)


BAD_REQUEST_IDS = ["", "a" * (MAX_REQUEST_ID_CHARS + 1), "a b", "\u00e9", "a\x00", "a\n", "a\x7f"]


@pytest.mark.parametrize(
    ("status", "request_id", "version"),
    [
        (99, "1", None),
        (600, "1", None),
        (-200, "1", None),
        (True, "1", None),
        (200.0, "1", None),
        ("200", "1", None),
        (200, "1", -1),
        (200, "1", 2**63),
        (200, "1", True),
        (200, "1", "5"),
        *((200, rid, None) for rid in BAD_REQUEST_IDS),
    ],
)
def test_twin_response_topic_refuses(status: object, request_id: str, version: object) -> None:
    with pytest.raises(ValidationError):
        twin_response_topic(status, request_id, version)  # type: ignore[arg-type]


def test_desired_patch_topic() -> None:
    assert desired_patch_topic(0) == "$iothub/twin/PATCH/properties/desired/?$version=0"
    assert desired_patch_topic(2**63 - 1).endswith(f"?$version={2**63 - 1}")


@pytest.mark.parametrize("version", [-1, 2**63, True, False, 1.0, "1", None])
def test_desired_patch_topic_refuses(version: object) -> None:
    with pytest.raises(ValidationError):
        desired_patch_topic(version)  # type: ignore[arg-type]


@pytest.mark.parametrize("request_id", BAD_REQUEST_IDS)
def test_method_request_topic_refuses_bad_request_ids(request_id: str) -> None:
    with pytest.raises(ValidationError, match="request id"):
        method_request_topic("reboot", request_id)


# --- public surface ------------------------------------------------------------------------------


def test_public_surface_holds_the_twin_method_and_module_api() -> None:
    assert len(set(azure.__all__)) == len(azure.__all__)
    assert not any(name.startswith("_") for name in azure.__all__)
    assert {
        "PublishKind",
        "SubscriptionKind",
        "c2d_topic",
        "desired_patch_topic",
        "encode_property_bag",
        "method_request_topic",
        "module_input_topic",
        "split_identity",
        "twin_response_topic",
        "validate_cloud_properties",
        "validate_input_name",
        "validate_method_name",
    } <= set(azure.__all__)
