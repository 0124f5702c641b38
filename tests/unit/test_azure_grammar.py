"""The Azure topic and username grammar, identity rule, and device authorisation rules.

Topic strings are built the way azure-iot-device 2.14.0 builds them
(``iothub/pipeline/mqtt_topic_iothub.py``: ``encode_message_properties_in_topic``), by a local
replica below, and cross-checked against literal strings captured from the SDK itself.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironhub.codec import azure
from ironhub.codec.azure import (
    MAX_PROPERTIES,
    MAX_PROPERTY_BAG_CHARS,
    MAX_USERNAME_CHARS,
    SECURITY_INTERFACE_ID,
    SECURITY_MESSAGE_MARKERS,
    DevicePublish,
    HubUsername,
    check_device_subscribe,
    classify_device_publish,
    decode_property_bag,
    is_dps_username,
    is_security_message,
    parse_hub_username,
    percent_decode,
    validate_identity,
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
        pytest.param("$iothub/twin/GET/?$rid=abc", id="twin-get"),
        pytest.param("$iothub/twin/PATCH/properties/reported/?$rid=abc", id="twin-patch"),
        pytest.param("$iothub/methods/res/200/?$rid=1f", id="method-response"),
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


def test_twin_and_method_topics_say_not_supported_yet() -> None:
    with pytest.raises(AuthorizationError, match="not supported yet"):
        classify_device_publish("$iothub/twin/GET/?$rid=1", device_id="dev1")


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


# --- subscribe authorisation -------------------------------------------------------------------


def test_subscribe_sdk_filters() -> None:
    check_device_subscribe("devices/dev1/messages/devicebound/#", device_id="dev1")
    check_device_subscribe(
        "devices/dev1/modules/filter-mod/inputs/#", device_id="dev1", module_id="filter-mod"
    )


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
        "$iothub/methods/POST/#",
        "$iothub/twin/res/#",
        "$iothub/twin/PATCH/properties/desired/#",
        "$iothub/#",
    ],
)
def test_sdk_twin_and_method_filters_are_not_supported_yet(topic_filter: str) -> None:
    with pytest.raises(AuthorizationError, match="not supported yet"):
        check_device_subscribe(topic_filter, device_id="dev1")


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
