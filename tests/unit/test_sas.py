"""SAS tokens: vectors produced by azure-iot-device 2.14.0, the grammar, and every refusal."""

from __future__ import annotations

import base64
import urllib.parse

import pytest

from ironhub.codec import sas
from ironhub.codec.sas import (
    MAX_SAS_TOKEN_BYTES,
    MAX_TOKEN_TTL_SECONDS,
    SasToken,
    generate_sas_token,
    parse_sas_token,
    resource_uri_for,
    verify_sas_token,
)
from ironhub.errors import AuthenticationError, ValidationError

KEY = b"device-one-secret-key-32-bytes!!"
OTHER_KEY = b"another-secret-key-of-32-bytes!!"
URI = "myhub.example.net/devices/dev1"
SE = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW = SE - 3600.0

# Produced by the SDK's own RenewableSasToken (time.time pinned to se - 3600); the first is
# the digest's worked example (azure-iot-mqtt.md §2.3), the second its captured CONNECT (§2.2).
SDK_VECTORS = [
    (
        "myhub.example.net/devices/dev1",
        1767225600,
        None,
        (
            "SharedAccessSignature sr=myhub.example.net%2Fdevices%2Fdev1"
            "&sig=aBpW%2FJHswStd0dYjrHKv7HUy%2B%2BXn9Dqwm%2BUcnu%2FqXog%3D&se=1767225600"
        ),
    ),
    (
        "myhub.example.net/devices/dev1",
        1795295419,
        None,
        (
            "SharedAccessSignature sr=myhub.example.net%2Fdevices%2Fdev1"
            "&sig=9htGpnEJ8mBzWVPEzHR1VCMQrK%2FB8dgldCUrY%2BRR328%3D&se=1795295419"
        ),
    ),
    (
        "localhost/devices/dev1/modules/filter-mod",
        1767225600,
        None,
        (
            "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1%2Fmodules%2Ffilter-mod"
            "&sig=ftO2F4y4EuYwSh2oEojGsRKLIC3aBKPbmeUsVWngOxY%3D&se=1767225600"
        ),
    ),
    (
        "Hub.Example.NET/devices/d:e@v_1.x-y",
        1767225600,
        "mykey",
        (
            "SharedAccessSignature sr=Hub.Example.NET%2Fdevices%2Fd%3Ae%40v_1.x-y"
            "&sig=UCwQ4aAc%2BE4JlptWIsxvGSA8m0W8Fjjc2QnHmcQLX%2Fs%3D&se=1767225600&skn=mykey"
        ),
    ),
]


def token_for(uri: str = URI, key: bytes = KEY, se: int = SE, key_name: str | None = None) -> str:
    return generate_sas_token(uri, key, se, key_name)


def reasons(excinfo: pytest.ExceptionInfo[AuthenticationError]) -> str:
    return excinfo.value.reason


# --- generation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "se", "key_name", "expected"), SDK_VECTORS)
def test_generate_matches_the_sdk_byte_for_byte(
    uri: str, se: int, key_name: str | None, expected: str
) -> None:
    assert generate_sas_token(uri, KEY, se, key_name) == expected


def test_generate_matches_the_digest_reference_recipe() -> None:
    key_b64 = "ZGV2aWNlLW9uZS1zZWNyZXQta2V5LTMyLWJ5dGVzISE="
    assert base64.b64decode(key_b64) == KEY
    assert (
        generate_sas_token(URI, base64.b64decode(key_b64), SE)
        == "SharedAccessSignature sr=myhub.example.net%2Fdevices%2Fdev1"
        "&sig=aBpW%2FJHswStd0dYjrHKv7HUy%2B%2BXn9Dqwm%2BUcnu%2FqXog%3D&se=1767225600"
    )


def test_generate_dps_vector_with_group_derived_key() -> None:
    # azure-iot-mqtt.md §5.4: the derived key signs a DPS token.
    derived = base64.b64decode("XeHpLfV+o3P8zs3WE0RtTKBoGFDrj3qQzrmsh5FIS2o=")
    assert generate_sas_token("0ne000ABCDE/registrations/sensor-0042", derived, SE) == (
        "SharedAccessSignature sr=0ne000ABCDE%2Fregistrations%2Fsensor-0042"
        "&sig=qygHoxY7Hj9RfCp7Q0qBX1YbJkNJZ2piwITj7C%2FiOtA%3D&se=1767225600"
    )


def test_generate_omits_empty_key_name_like_the_sdk() -> None:
    assert "skn" not in generate_sas_token(URI, KEY, SE, "")


# --- resource URIs ---------------------------------------------------------------------------


def test_resource_uri_for_device_and_module() -> None:
    assert resource_uri_for("myhub.example.net", "dev1") == "myhub.example.net/devices/dev1"
    assert (
        resource_uri_for("localhost", "dev1", "filter-mod")
        == "localhost/devices/dev1/modules/filter-mod"
    )


def test_resource_uri_for_module_client_id() -> None:
    # azure-iot-mqtt.md §2.2/§2.3: a module's ClientId is "device/module", its resource URI
    # {host}/devices/{device}/modules/{module}.
    assert (
        resource_uri_for("myhub.example.net", "dev1/filter-mod")
        == "myhub.example.net/devices/dev1/modules/filter-mod"
    )
    assert resource_uri_for("h", "dev1/m1") == resource_uri_for("h", "dev1", "m1")


@pytest.mark.parametrize(
    ("client_id", "module_id"),
    [
        ("", None),
        ("dev1/", None),
        ("/m1", None),
        ("dev1/m1/x", None),
        ("dev1//m1", None),
        ("dev1/m1", "m2"),  # a ClientId plus a module id would add a level
        ("dev1", ""),
        ("dev1", "m/1"),
        ("dev+", None),
        ("dev1/#", None),
    ],
)
def test_resource_uri_for_refuses_malformed_identities(
    client_id: str, module_id: str | None
) -> None:
    with pytest.raises(ValidationError):
        resource_uri_for("h", client_id, module_id)


# The digest's worked example (§2.3) for a module: same key and se, module resource URI.
# Produced by the SDK's own RenewableSasToken with time.time pinned to se - 3600.
MODULE_KEY_B64 = "ZGV2aWNlLW9uZS1zZWNyZXQta2V5LTMyLWJ5dGVzISE="
MODULE_URI = "myhub.example.net/devices/dev1/modules/filter-mod"
MODULE_STRING_TO_SIGN = "myhub.example.net%2Fdevices%2Fdev1%2Fmodules%2Ffilter-mod\n1767225600"
MODULE_SIGNATURE = "XcFtPNUQImvH5CY2sEopRYZb5I9TYCrUyE1LlSvjBR4="
MODULE_TOKEN = (
    "SharedAccessSignature sr=myhub.example.net%2Fdevices%2Fdev1%2Fmodules%2Ffilter-mod"
    "&sig=XcFtPNUQImvH5CY2sEopRYZb5I9TYCrUyE1LlSvjBR4%3D&se=1767225600"
)


def test_worked_module_example() -> None:
    key = base64.b64decode(MODULE_KEY_B64)
    uri = resource_uri_for("myhub.example.net", "dev1/filter-mod")
    assert uri == MODULE_URI
    sr = urllib.parse.quote(uri, safe="")
    assert f"{sr}\n{SE}" == MODULE_STRING_TO_SIGN
    assert sas._signature(sr, SE, key).decode() == MODULE_SIGNATURE
    assert generate_sas_token(uri, key, SE) == MODULE_TOKEN
    # The hub verifies it against the URI it derives from the module's ClientId.
    assert verify(MODULE_TOKEN, expected_uri=uri) == 0


def test_device_and_module_tokens_are_not_interchangeable() -> None:
    device_uri = resource_uri_for("myhub.example.net", "dev1")
    module_uri = resource_uri_for("myhub.example.net", "dev1/filter-mod")
    for token, expected in ((MODULE_TOKEN, device_uri), (token_for(uri=device_uri), module_uri)):
        with pytest.raises(AuthenticationError) as excinfo:
            verify(token, expected_uri=expected)
        assert reasons(excinfo) == "wrong-resource"
    other_module = resource_uri_for("myhub.example.net", "dev1/other-mod")
    with pytest.raises(AuthenticationError) as excinfo:
        verify(MODULE_TOKEN, expected_uri=other_module)
    assert reasons(excinfo) == "wrong-resource"


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "se", "key_name", "token"), SDK_VECTORS)
def test_parse_sdk_tokens(uri: str, se: int, key_name: str | None, token: str) -> None:
    parsed = parse_sas_token(token)
    assert parsed.sr == urllib.parse.quote(uri, safe="")
    assert parsed.se == se
    assert parsed.skn == key_name
    assert len(parsed.sig) == 44
    assert "%" not in parsed.sig


def test_parse_accepts_bytes_and_any_field_order() -> None:
    token = token_for(key_name="k")
    body = token.removeprefix("SharedAccessSignature ").split("&")
    reordered = "SharedAccessSignature " + "&".join(reversed(body))
    assert parse_sas_token(reordered.encode()) == parse_sas_token(token)


def test_parsed_signature_is_kept_out_of_repr() -> None:
    parsed = parse_sas_token(token_for())
    assert parsed.sig not in repr(parsed)
    assert "sig=" not in repr(parsed)


def test_parse_decodes_skn() -> None:
    assert parse_sas_token(token_for() + "&skn=reg%20istration").skn == "reg istration"


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("", id="empty"),
        pytest.param("SharedAccessSignature", id="prefix-without-space"),
        pytest.param("SharedAccessSignature ", id="prefix-only"),
        pytest.param("sharedaccesssignature sr=a&sig=b&se=1", id="prefix-case"),
        pytest.param(" SharedAccessSignature sr=a", id="leading-space"),
        pytest.param("Bearer abc", id="other-scheme"),
        pytest.param("SharedAccessSignature  sr=x&sig=y&se=1", id="double-space"),
        pytest.param("SharedAccessSignature sr=x&sig=y&se=1&", id="trailing-ampersand"),
        pytest.param("SharedAccessSignature sr=x&&sig=y&se=1", id="empty-field"),
        pytest.param("SharedAccessSignature sr&sig=y&se=1", id="field-without-equals"),
        pytest.param("SharedAccessSignature sr=&sig=y&se=1", id="empty-value"),
        pytest.param("SharedAccessSignature sr=x&sig=y&se=1&foo=bar", id="unknown-field"),
        pytest.param("SharedAccessSignature SR=x&sig=y&se=1", id="field-name-case"),
        pytest.param("SharedAccessSignature sig=y&se=1", id="missing-sr"),
        pytest.param("SharedAccessSignature sr=x&se=1", id="missing-sig"),
        pytest.param("SharedAccessSignature sr=x&sig=y", id="missing-se"),
    ],
)
def test_parse_refuses_malformed_tokens(password: str) -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        parse_sas_token(password)
    assert reasons(excinfo) == "malformed-token"


def _replace(token: str, field: str, value: str) -> str:
    prefix, body = token.split(" ", 1)
    items = [
        f"{field}={value}" if item.startswith(f"{field}=") else item for item in body.split("&")
    ]
    return f"{prefix} {'&'.join(items)}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("se", "-1"),
        ("se", "+1767225600"),
        ("se", "01767225600"),
        ("se", "1767225600.0"),
        ("se", "0x69"),
        ("se", "1e9"),
        ("se", "1234567890123"),  # 13 digits
        ("se", "\N{ARABIC-INDIC DIGIT ONE}"),  # int() would accept it, we do not
        ("sig", "abc"),  # not a 32-byte HMAC
        ("sig", "aBpW_JHswStd0dYjrHKv7HUy--Xn9Dqwm-Ucnu_qXog="),  # base64url alphabet
        ("sig", "aBpW%2FJHswStd0dYjrHKv7HUy%2B%2BXn9Dqwm%2BUcnu%2FqXog"),  # no padding
        ("sig", "%ZZ"),
        ("sr", "myhub%2"),
        ("sr", "myhub%ZZ"),
        ("sr", "%FF%FE"),  # not UTF-8
        ("skn", "%G0"),
    ],
)
def test_parse_refuses_malformed_fields(field: str, value: str) -> None:
    token = token_for(key_name="k")
    with pytest.raises(AuthenticationError) as excinfo:
        parse_sas_token(_replace(token, field, value))
    assert reasons(excinfo) == "malformed-token"


def test_parse_accepts_se_zero() -> None:
    assert parse_sas_token(_replace(token_for(), "se", "0")).se == 0


@pytest.mark.parametrize("field", ["sr", "sig", "se", "skn"])
def test_parse_refuses_duplicate_fields(field: str) -> None:
    token = token_for(key_name="k")
    value = token.split(f"{field}=", 1)[1].split("&", 1)[0]
    with pytest.raises(AuthenticationError, match="duplicate") as excinfo:
        parse_sas_token(f"{token}&{field}={value}")
    assert reasons(excinfo) == "malformed-token"


def test_parse_refuses_oversized_tokens_before_parsing() -> None:
    padded = token_for() + "&skn=" + "a" * MAX_SAS_TOKEN_BYTES
    for password in (padded, padded.encode()):
        with pytest.raises(AuthenticationError, match="too long"):
            parse_sas_token(password)
    # Exactly at the limit is still parsed.
    at_limit = token_for() + "&skn="
    at_limit += "a" * (MAX_SAS_TOKEN_BYTES - len(at_limit))
    assert parse_sas_token(at_limit).skn is not None


@pytest.mark.parametrize(
    "password",
    [
        b"SharedAccessSignature sr=\xff&sig=y&se=1",
        "SharedAccessSignature sr=h\u00e9&sig=y&se=1",
        "SharedAccessSignature sr=a b&sig=y&se=1",
        "SharedAccessSignature sr=a\x00&sig=y&se=1",
        "SharedAccessSignature sr=a\n&sig=y&se=1",
    ],
)
def test_parse_refuses_non_printable_or_non_ascii(password: str | bytes) -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        parse_sas_token(password)
    assert reasons(excinfo) == "malformed-token"


def test_malformed_messages_do_not_echo_the_token() -> None:
    secret_looking = "SharedAccessSignature sr=x&sig=TOPSECRET&se=1"
    with pytest.raises(AuthenticationError) as excinfo:
        parse_sas_token(secret_looking)
    assert "TOPSECRET" not in str(excinfo.value)


# --- verification ----------------------------------------------------------------------------


def verify(token: str | SasToken, **overrides: object) -> int:
    arguments: dict[str, object] = {"expected_uri": URI, "keys": [KEY, OTHER_KEY], "now": NOW}
    arguments.update(overrides)
    parsed = parse_sas_token(token) if isinstance(token, str) else token
    return verify_sas_token(parsed, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(("uri", "se", "key_name", "token"), SDK_VECTORS)
def test_verify_sdk_tokens(uri: str, se: int, key_name: str | None, token: str) -> None:
    assert verify(token, expected_uri=uri, now=se - 3600) == 0


def test_verify_reports_which_key_matched() -> None:
    assert verify(token_for(key=KEY)) == 0
    assert verify(token_for(key=OTHER_KEY)) == 1
    assert verify(token_for(key=KEY), keys=[OTHER_KEY, KEY]) == 1


def test_verify_with_same_key_twice_reports_the_first() -> None:
    assert verify(token_for(), keys=[KEY, KEY]) == 0


def test_verify_bad_signature() -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        verify(token_for(key=b"x" * 32))
    assert reasons(excinfo) == "bad-signature"
    assert "sig" not in str(excinfo.value).replace("signature", "")


def test_verify_without_keys_fails_closed() -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        verify(token_for(), keys=[])
    assert reasons(excinfo) == "bad-signature"


@pytest.mark.parametrize("short_key", [b"", b"k", b"x" * (sas.MIN_KEY_BYTES - 1)])
def test_short_keys_never_verify(short_key: bytes) -> None:
    # A token "signed" with an empty or tiny key must not pass even if it matches.
    with pytest.raises(AuthenticationError) as excinfo:
        verify(token_for(key=short_key), keys=[short_key])
    assert reasons(excinfo) == "bad-signature"
    assert verify(token_for(key=b"x" * sas.MIN_KEY_BYTES), keys=[b"x" * sas.MIN_KEY_BYTES]) == 0


def test_verify_signature_covers_the_raw_encoded_sr() -> None:
    # A token whose sr is encoded differently (lower-case escapes) but signed over that raw text
    # verifies; re-encoding it without re-signing does not.
    raw_sr = "myhub.example.net%2fdevices%2fdev1"
    sig = sas._signature(raw_sr, SE, KEY).decode()
    good = SasToken(sr=raw_sr, sig=sig, se=SE)
    assert verify(good) == 0
    canonical_sig = sas._signature("myhub.example.net%2Fdevices%2Fdev1", SE, KEY).decode()
    with pytest.raises(AuthenticationError) as excinfo:
        verify(SasToken(sr=raw_sr, sig=canonical_sig, se=SE))
    assert reasons(excinfo) == "bad-signature"


def test_verify_signature_covers_se() -> None:
    token = parse_sas_token(token_for())
    moved = SasToken(sr=token.sr, sig=token.sig, se=token.se + 3600)
    with pytest.raises(AuthenticationError) as excinfo:
        verify(moved)
    assert reasons(excinfo) == "bad-signature"


def test_verify_non_ascii_signature_fails_closed() -> None:
    token = parse_sas_token(token_for())
    forged = SasToken(sr=token.sr, sig="\u00e9" * 44, se=token.se)
    with pytest.raises(AuthenticationError) as excinfo:
        verify(forged)
    assert reasons(excinfo) == "bad-signature"


def test_verify_expired() -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        verify(token_for(), now=SE + 0.5)
    assert reasons(excinfo) == "expired"
    # se == now is still valid (the digest: reject if se < now).
    assert verify(token_for(), now=float(SE)) == 0


def test_expiry_is_reported_only_for_genuine_tokens() -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        verify(token_for(key=b"y" * 32), now=SE + 100.0)
    assert reasons(excinfo) == "bad-signature"


def test_verify_expiry_too_far() -> None:
    far = SE + MAX_TOKEN_TTL_SECONDS + 1
    with pytest.raises(AuthenticationError) as excinfo:
        verify(token_for(se=far), now=float(SE))
    assert reasons(excinfo) == "expiry-too-far"
    assert verify(token_for(se=SE + MAX_TOKEN_TTL_SECONDS), now=float(SE)) == 0


def test_verify_max_ttl_is_configurable() -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        verify(token_for(se=SE + 7200), now=float(SE), max_ttl_seconds=3600)
    assert reasons(excinfo) == "expiry-too-far"


@pytest.mark.parametrize(
    "uri",
    [
        "myhub.example.net/devices/dev2",
        "myhub.example.net/devices/DEV1",  # the path is exact
        "myhub.example.net/devices/dev1/modules/m1",
        "myhub.example.net/devices/dev1/",
        "myhub.example.net/devices",
        "myhub.example.net",
        "otherhub.example.net/devices/dev1",
        "myhub.example.net.evil.com/devices/dev1",
        "0ne000ABCDE/registrations/dev1",
        "myhub.example.\u212anet/devices/dev1",  # KELVIN SIGN: lowercases to 'k'
        "myhub.exampl\u0130.net/devices/dev1",
    ],
)
def test_verify_wrong_resource(uri: str) -> None:
    # Properly signed for `uri`, but the hub expects URI.
    with pytest.raises(AuthenticationError) as excinfo:
        verify(token_for(uri=uri))
    assert reasons(excinfo) == "wrong-resource"


def test_verify_kelvin_sign_would_match_without_the_ascii_rule() -> None:
    # Documents why the host comparison is ASCII-only.
    assert "\u212a".lower() == "k"
    with pytest.raises(AuthenticationError) as excinfo:
        verify(
            token_for(uri="myhub.\u212a.net/devices/dev1"), expected_uri="myhub.k.net/devices/dev1"
        )
    assert reasons(excinfo) == "wrong-resource"


def test_verify_host_is_case_insensitive() -> None:
    assert verify(token_for(uri="MyHub.Example.NET/devices/dev1")) == 0
    assert verify(token_for(), expected_uri="MYHUB.example.net/devices/dev1") == 0


def test_verify_resource_is_checked_before_the_signature() -> None:
    with pytest.raises(AuthenticationError) as excinfo:
        verify(token_for(uri="myhub.example.net/devices/dev2", key=b"z" * 32))
    assert reasons(excinfo) == "wrong-resource"


def test_verify_malformed_sr_in_a_hand_built_token() -> None:
    token = parse_sas_token(token_for())
    with pytest.raises(AuthenticationError) as excinfo:
        verify(SasToken(sr="bad%zz", sig=token.sig, se=token.se))
    assert reasons(excinfo) == "malformed-token"


def test_round_trip_for_module_identity() -> None:
    uri = resource_uri_for("hub.local", "dev1", "mod-1")
    token = generate_sas_token(uri, KEY, SE)
    assert verify(token, expected_uri=uri) == 0
    with pytest.raises(AuthenticationError) as excinfo:
        verify(token, expected_uri=resource_uri_for("hub.local", "dev1"))
    assert reasons(excinfo) == "wrong-resource"
