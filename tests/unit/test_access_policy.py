"""The pure rules of operator sign-in: passwords, TOTP, lockout, sessions and sources.

Every rule is driven with explicit times and values; nothing sleeps. Argon2 runs with the
cheapest parameters it accepts except in the test that pins the production defaults.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import re
import struct
from urllib.parse import parse_qs, unquote, urlsplit

import argon2
import pyotp
import pytest

from ironhub.access import policy as access_policy
from ironhub.access._common_passwords import COMMON_PASSWORDS
from ironhub.access.policy import (
    DEFAULT_HASH_PARAMETERS,
    DEFAULT_LOCKOUT_POLICY,
    DEFAULT_PASSWORD_POLICY,
    DEFAULT_SESSION_POLICY,
    INACTIVE_AFTER_SECONDS,
    MAX_PASSWORD_CHARS,
    FailureOutcome,
    HashParameters,
    LockoutPolicy,
    LoginThrottle,
    LoginThrottleStatistics,
    PasswordPolicy,
    SessionPolicy,
    check_new_password,
    hash_password,
    inactive_for,
    is_new_source,
    must_change,
    needs_rehash,
    new_totp_secret,
    parse_allow_list,
    parse_password_list,
    password_expired,
    provisioning_uri,
    session_expired,
    session_expires_at,
    source_allowed,
    source_network,
    verify_password,
    verify_totp,
)
from ironhub.errors import AuthenticationError, ThrottledError, ValidationError

CHEAP = HashParameters(time_cost=1, memory_cost_kib=8, parallelism=1)
DAY = 86_400.0
GOOD = "correct horse battery staple"


def fullwidth(text: str) -> str:
    """``text`` with its ASCII letters and digits in their full-width forms (NFKC undoes it)."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def cheap_hash(password: str) -> str:
    return hash_password(password, parameters=CHEAP)


# --------------------------------------------------------------------------------------------
# The public surface
# --------------------------------------------------------------------------------------------


def test_all_names_exist_once() -> None:
    assert len(set(access_policy.__all__)) == len(access_policy.__all__)
    for name in access_policy.__all__:
        assert hasattr(access_policy, name), name


# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------


def test_production_hash_parameters_are_documented_values() -> None:
    # t=3, p=4, 128 MiB: RFC 9106 §4's second option with twice the memory (module docstring).
    assert (
        HashParameters(
            time_cost=3, memory_cost_kib=131_072, parallelism=4, hash_bytes=32, salt_bytes=16
        )
        == DEFAULT_HASH_PARAMETERS
    )


def test_production_hash_is_argon2id_with_the_default_parameters() -> None:
    stored = hash_password(GOOD)
    params = argon2.extract_parameters(stored)
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 131_072, 4)
    assert (params.hash_len, params.salt_len) == (32, 16)
    assert verify_password(stored, GOOD)
    assert not needs_rehash(stored)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"time_cost": 0}, "time_cost"),
        ({"parallelism": 0}, "parallelism"),
        ({"parallelism": 256, "memory_cost_kib": 8 * 256}, "parallelism"),
        ({"memory_cost_kib": 7}, "memory_cost_kib"),
        ({"memory_cost_kib": 15, "parallelism": 2}, "memory_cost_kib"),
        ({"hash_bytes": 15}, "hash_bytes"),
        ({"salt_bytes": 8}, "salt_bytes"),
    ],
)
def test_hash_parameters_refuse_weak_or_impossible_values(
    changes: dict[str, int], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        dataclasses.replace(CHEAP, **changes)


def test_a_hash_verifies_its_password_only() -> None:
    stored = cheap_hash(GOOD)
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert verify_password(stored, GOOD)
    assert not verify_password(stored, GOOD + " ")
    assert not verify_password(stored, GOOD.upper())
    assert not verify_password(stored, "")


def test_hashes_are_salted() -> None:
    assert cheap_hash(GOOD) != cheap_hash(GOOD)


def test_passwords_are_nfkc_normalised_before_hashing() -> None:
    # "é" precomposed (U+00E9) and decomposed (e + U+0301), and full-width letters, are the
    # same password (NIST SP 800-63B §3.1.1.2).
    stored = cheap_hash("caf\u00e9 au lait, s'il vous plait")
    assert verify_password(stored, "cafe\u0301 au lait, s'il vous plait")
    stored = cheap_hash(fullwidth("passphrase of mine"))
    assert verify_password(stored, "passphrase of mine")


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=8,t=1,p=1$short",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_malformed_or_foreign_hashes_never_verify(stored: str) -> None:
    assert not verify_password(stored, GOOD)


@pytest.mark.parametrize(
    ("field", "value"),
    [("m", "1048577"), ("t", "65"), ("p", "65")],
)
def test_hashes_with_absurd_costs_are_not_even_tried(field: str, value: str) -> None:
    stored = cheap_hash(GOOD)
    forged = re.sub(rf"{field}=\d+", f"{field}={value}", stored, count=1)
    assert forged != stored
    assert not verify_password(forged, GOOD)


def test_other_argon2_variants_still_verify() -> None:
    legacy = argon2.PasswordHasher(
        time_cost=1, memory_cost=8, parallelism=1, type=argon2.Type.I
    ).hash(GOOD)
    assert verify_password(legacy, GOOD)
    assert needs_rehash(legacy, parameters=CHEAP)


def test_over_long_passwords_are_refused_before_hashing() -> None:
    too_long = "x" * (MAX_PASSWORD_CHARS + 1)
    with pytest.raises(ValidationError, match="at most 1024"):
        hash_password(too_long, parameters=CHEAP)
    assert not verify_password(cheap_hash("x" * MAX_PASSWORD_CHARS), too_long)
    assert verify_password(cheap_hash("x" * MAX_PASSWORD_CHARS), "x" * MAX_PASSWORD_CHARS)


def test_lone_surrogates_are_refused_not_crashed_on() -> None:
    stored = cheap_hash(GOOD)
    assert not verify_password(stored, GOOD + "\ud800")
    with pytest.raises(ValidationError, match="valid Unicode"):
        hash_password("\udfff" + GOOD, parameters=CHEAP)
    with pytest.raises(ValidationError, match="control or formatting"):
        check("\ud800" + GOOD)


def test_needs_rehash_compares_with_the_wanted_parameters() -> None:
    stored = cheap_hash(GOOD)
    assert not needs_rehash(stored, parameters=CHEAP)
    assert needs_rehash(stored, parameters=dataclasses.replace(CHEAP, time_cost=2))
    assert needs_rehash(stored)  # the production parameters are stronger
    assert needs_rehash("garbage")
    assert needs_rehash("$argon2id$v=19$m=8,t=1,p=1$short")


# --------------------------------------------------------------------------------------------
# Password rules
# --------------------------------------------------------------------------------------------


def check(password: str, *, name: str = "alice", history: tuple[str, ...] = ()) -> None:
    check_new_password(password, name=name, history_hashes=history)


@pytest.mark.parametrize(
    "password",
    [
        GOOD,
        "Tr0ub4dor&3-zebra",
        "9 lives of a cat!",
        "zq7#Lm2!vR8@",  # exactly 12
        "x" + "y" * 10 + "z",  # 12, not one character repeated
        "1984!2001?77",  # nothing left once the decorations are stripped
        "ein Kätzchen im Schnee",
        "пароль-не-простой",  # Cyrillic
        "ﬁnal ﬂight",  # 10 characters as typed, 12 once NFKC expands the ligatures
    ],
)
def test_acceptable_passwords_pass(password: str) -> None:
    check(password)


def test_unicode_passwords_count_code_points() -> None:
    policy = PasswordPolicy(min_length=10)
    check_new_password("秘密の合言葉は山と川", name="alice", history_hashes=[], policy=policy)
    with pytest.raises(ValidationError, match="at least 11"):
        check_new_password(
            "秘密の合言葉は山と川",
            name="alice",
            history_hashes=[],
            policy=PasswordPolicy(min_length=11),
        )


REFUSALS = [
    # (password, reason the message must contain)
    ("short-pw!", "at least 12 characters"),
    ("elevenchars", "at least 12 characters"),
    ("x" * 257, "at most 256 characters"),
    ("tab\tinside-the-password", "control or formatting"),
    ("newline\ninside-password", "control or formatting"),
    ("zero\u200bwidth-joiner-x", "control or formatting"),
    ("aaaaaaaaaaaa", "one character repeated"),
    ("AAAAaaaaAAAAaaaa", "one character repeated"),  # case-insensitive
    ("            ", "one character repeated"),
    ("abababababab", "short pattern repeated"),
    ("abcabcabcabcab", "short pattern repeated"),
    ("Xy1!Xy1!Xy1!", "short pattern repeated"),
    ("abcdefghijklmn", "simple sequence"),
    ("nmlkjihgfedcba", "simple sequence"),
    ("xyzabcdefghi", "simple sequence"),  # wraps round
    ("123456789012", "simple sequence"),
    ("9876543210987", "simple sequence"),
    ("qwertyuiopasdf", "simple sequence"),
    ("QWERTZUIOPQWE", "simple sequence"),
    ("azertyuiopaze", "simple sequence"),
    ("!@#$%^&*()!@#", "simple sequence"),
    ("1qaz2wsx3edc4rfv", "simple sequence"),
    ("password1234", "common or breached"),
    ("Password123!!", "common or breached"),  # decorated
    ("!!Password123", "common or breached"),
    ("P@ssw0rd2024!", "common or breached"),  # substituted and decorated
    ("iloveyoubaby", "common or breached"),
    ("1234 football 5678", "common or breached"),
    ("ALICE-in-wonderland", "account name"),
    ("wonder4lice-land", "account name"),  # "4lice" is "alice" with a substitution
    ("my ironhub password 7", "name of the service"),
    ("Ir0nHub-rocks-2026", "name of the service"),
]


@pytest.mark.parametrize(("password", "reason"), REFUSALS)
def test_refused_passwords_name_the_rule_and_never_echo_the_password(
    password: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        check(password)
    assert reason in str(exc.value)
    assert password not in str(exc.value)


@pytest.mark.parametrize(
    ("name", "password", "refused"),
    [
        ("alice", "x-alice-x-x-x-x", True),
        ("john.smith", "smith-and-wesson-9", True),
        ("john.smith", "johnny-be-good-9", True),
        ("john_smith", "mr smith goes to town", True),
        ("j.r", "just-jr-things-9", False),  # parts under three characters are ignored
        ("al", "totally-fine-words", False),  # so is a short name
        ("", "totally-fine-words", False),
        ("Ørjan", "ØRJAN-rules-the-day", True),
    ],
)
def test_the_account_name_and_its_parts_are_refused(
    name: str, password: str, refused: bool
) -> None:
    if refused:
        with pytest.raises(ValidationError, match="account name"):
            check(password, name=name)
    else:
        check(password, name=name)


def test_context_words_are_configurable() -> None:
    policy = PasswordPolicy(context_words=frozenset({"acme", "ironhub"}))
    with pytest.raises(ValidationError, match="name of the service"):
        check_new_password("acme-widgets-9x", name="bob", history_hashes=[], policy=policy)
    check_new_password(
        "ironhub-4-ever!",
        name="bob",
        history_hashes=[],
        policy=PasswordPolicy(context_words=frozenset()),
    )


def test_breached_list_is_configurable() -> None:
    policy = PasswordPolicy(breached=parse_password_list("# ours\n\n  Zebra-Crossing-77 \n"))
    with pytest.raises(ValidationError, match="common or breached"):
        check_new_password("zebra-crossing-77", name="bob", history_hashes=[], policy=policy)
    # The built-in list no longer applies when replaced ...
    check_new_password("password1234", name="bob", history_hashes=[], policy=policy)
    # ... and can be extended instead.
    both = PasswordPolicy(breached=COMMON_PASSWORDS | policy.breached)
    for password in ("zebra-crossing-77", "password1234"):
        with pytest.raises(ValidationError):
            check_new_password(password, name="bob", history_hashes=[], policy=both)


def test_parse_password_list_skips_comments_and_blanks_and_folds_case() -> None:
    text = f"# comment\n\nHunter2\n  spaced  \r\n{fullwidth('Full')}\n#also\n"
    assert parse_password_list(text) == frozenset({"hunter2", "spaced", "full"})
    assert parse_password_list("") == frozenset()


def test_builtin_list_is_lower_case_and_holds_the_classics() -> None:
    assert len(COMMON_PASSWORDS) >= 500
    assert all(entry == entry.casefold() and entry.strip() == entry for entry in COMMON_PASSWORDS)
    assert {"password", "123456", "qwerty", "iloveyou", "letmein", "p@ssw0rd"} <= COMMON_PASSWORDS
    assert DEFAULT_PASSWORD_POLICY.breached is COMMON_PASSWORDS


def test_history_refuses_reuse_of_the_last_n_only() -> None:
    old = [cheap_hash(f"old password number {i}") for i in range(7)]  # newest first
    for i in range(5):
        with pytest.raises(ValidationError, match="last 5 passwords"):
            check(f"old password number {i}", history=tuple(old))
    # The sixth and seventh are beyond the history of 5.
    check("old password number 5", history=tuple(old))
    check("old password number 6", history=tuple(old))
    check("a brand new password", history=tuple(old))


def test_history_zero_disables_the_reuse_check() -> None:
    policy = PasswordPolicy(history=0)
    stored = cheap_hash(GOOD)
    check_new_password(GOOD, name="bob", history_hashes=[stored], policy=policy)


def test_history_tolerates_malformed_stored_hashes() -> None:
    check(GOOD, history=("garbage", ""))


def test_cheap_rules_run_before_the_history() -> None:
    # A short password is refused for its length even when it is also in the history.
    with pytest.raises(ValidationError, match="at least 12"):
        check("short", history=(cheap_hash("short"),))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_length": 0}, "min_length"),
        ({"min_length": 20, "max_length": 19}, "min_length"),
        ({"max_length": MAX_PASSWORD_CHARS + 1}, "max_length"),
        ({"max_age_seconds": 0.0}, "max_age_seconds"),
        ({"max_age_seconds": -1.0}, "max_age_seconds"),
        ({"max_age_seconds": float("inf")}, "max_age_seconds"),
        ({"max_age_seconds": float("nan")}, "max_age_seconds"),
        ({"history": -1}, "history"),
        ({"context_words": frozenset({""})}, "context_words"),
    ],
)
def test_password_policy_refuses_inconsistent_limits(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        PasswordPolicy(**changes)  # type: ignore[arg-type]


def test_password_policy_defaults() -> None:
    policy = PasswordPolicy()
    assert (policy.min_length, policy.max_length, policy.history) == (12, 256, 5)
    assert policy.max_age_seconds == 90 * DAY
    assert policy.context_words == frozenset({"ironhub"})
    assert "breached" not in repr(policy)  # a repr of hundreds of passwords helps nobody


# --------------------------------------------------------------------------------------------
# Expiry and forced changes
# --------------------------------------------------------------------------------------------

AGE = 90 * DAY


@pytest.mark.parametrize(
    ("elapsed", "expired"),
    [
        (0.0, False),
        (AGE - 1, False),
        (AGE - 0.001, False),
        (AGE, True),
        (AGE + 1, True),
        (-5.0, False),
    ],
)
def test_password_expires_exactly_at_its_maximum_age(elapsed: float, expired: bool) -> None:
    changed_at = 1_700_000_000.0
    assert password_expired(changed_at, changed_at + elapsed) is expired
    assert password_expired(changed_at, changed_at + elapsed, DEFAULT_PASSWORD_POLICY) is expired


def test_password_without_maximum_age_never_expires() -> None:
    policy = PasswordPolicy(max_age_seconds=None)
    assert not password_expired(0.0, 1e12, policy)
    assert not must_change(0.0, 1e12, False, policy)


@pytest.mark.parametrize(
    ("one_time", "elapsed", "expected"),
    [
        (True, 0.0, True),  # the initial password, at the first login
        (True, AGE, True),
        (False, 0.0, False),
        (False, AGE - 1, False),
        (False, AGE, True),
    ],
)
def test_must_change(one_time: bool, elapsed: float, expected: bool) -> None:
    assert must_change(1000.0, 1000.0 + elapsed, one_time) is expected


# --------------------------------------------------------------------------------------------
# TOTP
# --------------------------------------------------------------------------------------------

# RFC 6238 Appendix B: the SHA-1 seed "12345678901234567890"; six-digit codes are the last six
# digits of the eight-digit ones in the RFC's table.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode("ascii")
RFC_VECTORS = [
    (59, "287082"),
    (1111111109, "081804"),
    (1111111111, "050471"),
    (1234567890, "005924"),
    (2000000000, "279037"),
    (20000000000, "353130"),
]


@pytest.mark.parametrize(("now", "code"), RFC_VECTORS)
def test_rfc6238_vectors_are_accepted(now: int, code: str) -> None:
    assert verify_totp(RFC_SECRET, code, now=float(now), last_used_step=None) == now // 30


def reference_code(secret: str, step: int) -> str:
    """RFC 4226 §5.3 HOTP, independent of pyotp."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


SECRET = new_totp_secret()
NOW = 1_750_000_035.0  # 15 s into a step
assert NOW % 30 == 15
STEP = int(NOW // 30)


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_codes_of_the_previous_current_and_next_step_are_accepted_once(offset: int) -> None:
    code = reference_code(SECRET, STEP + offset)
    accepted = verify_totp(SECRET, code, now=NOW, last_used_step=None)
    assert accepted == STEP + offset
    # The caller stores the step; the same code is a replay from then on, inside the window.
    for later in (NOW - 15, NOW, NOW + 14):  # the whole step
        with pytest.raises(AuthenticationError) as exc:
            verify_totp(SECRET, code, now=later, last_used_step=accepted)
        assert exc.value.reason == "totp-replayed"


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_outside_the_window_are_refused(offset: int) -> None:
    code = reference_code(SECRET, STEP + offset)
    with pytest.raises(AuthenticationError) as exc:
        verify_totp(SECRET, code, now=NOW, last_used_step=None)
    assert exc.value.reason == "totp-invalid"


def test_window_is_configurable() -> None:
    code = reference_code(SECRET, STEP - 2)
    assert verify_totp(SECRET, code, now=NOW, last_used_step=None, window=2) == STEP - 2
    current = reference_code(SECRET, STEP)
    assert verify_totp(SECRET, current, now=NOW, last_used_step=None, window=0) == STEP
    with pytest.raises(AuthenticationError):
        verify_totp(
            SECRET, reference_code(SECRET, STEP + 1), now=NOW, last_used_step=None, window=0
        )


def test_an_older_code_after_a_newer_one_is_a_replay() -> None:
    # The next step's code was used; the current step's code is still in the window but is
    # older than the last accepted step.
    used = verify_totp(SECRET, reference_code(SECRET, STEP + 1), now=NOW, last_used_step=None)
    with pytest.raises(AuthenticationError) as exc:
        verify_totp(SECRET, reference_code(SECRET, STEP), now=NOW, last_used_step=used)
    assert exc.value.reason == "totp-replayed"


def test_a_later_code_after_an_earlier_one_is_accepted() -> None:
    used = verify_totp(SECRET, reference_code(SECRET, STEP - 1), now=NOW, last_used_step=None)
    assert verify_totp(SECRET, reference_code(SECRET, STEP), now=NOW, last_used_step=used) == STEP
    # A stale last_used_step far in the past changes nothing.
    assert verify_totp(SECRET, reference_code(SECRET, STEP), now=NOW, last_used_step=5) == STEP


def test_a_wrong_code_is_refused() -> None:
    valid = {reference_code(SECRET, STEP + offset) for offset in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in valid)
    with pytest.raises(AuthenticationError) as exc:
        verify_totp(SECRET, wrong, now=NOW, last_used_step=None)
    assert exc.value.reason == "totp-invalid"
    assert wrong not in str(exc.value)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "12345",
        "1234567",
        "12345a",
        "123 456",
        " 123456",
        "123456\n",
        "١٢٣٤٥٦",
        "+12345",
        "-12345",
        "12345.",
        "\uff11\uff12\uff13\uff14\uff15\uff16",  # full-width digits
    ],
)
def test_malformed_codes_are_refused_before_any_comparison(code: str) -> None:
    with pytest.raises(AuthenticationError) as exc:
        verify_totp(SECRET, code, now=NOW, last_used_step=None)
    assert exc.value.reason == "totp-malformed"


def test_collision_returns_the_later_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force one code to match every step: the latest step must be the one consumed, so the
    # code can never be accepted again inside the window.
    monkeypatch.setattr(pyotp.TOTP, "generate_otp", lambda _self, _step: "000000")
    assert verify_totp(SECRET, "000000", now=NOW, last_used_step=None) == STEP + 1
    with pytest.raises(AuthenticationError) as exc:
        verify_totp(SECRET, "000000", now=NOW, last_used_step=STEP + 1)
    assert exc.value.reason == "totp-replayed"
    # With the earlier steps already used, the fresh one still wins over the replayed ones.
    assert verify_totp(SECRET, "000000", now=NOW, last_used_step=STEP) == STEP + 1


def test_steps_before_the_epoch_are_not_generated() -> None:
    code = reference_code(SECRET, 0)
    assert verify_totp(SECRET, code, now=0.0, last_used_step=None) == 0
    assert verify_totp(SECRET, reference_code(SECRET, 1), now=0.0, last_used_step=0) == 1


@pytest.mark.parametrize(
    ("now", "window"),
    [(float("nan"), 1), (float("inf"), 1), (-1.0, 1), (NOW, -1), (NOW, 11)],
)
def test_verify_totp_refuses_bad_arguments(now: float, window: int) -> None:
    with pytest.raises(ValidationError):
        verify_totp(SECRET, "123456", now=now, last_used_step=None, window=window)


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",  # lower case: ours are upper case
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====",  # padded
        "GEZDGNBV GY3TQOJQ",
        "GEZDGNBVGY3TQOJ1",  # "1" is not base32
        "A" * 9,  # impossible length (bad padding)
        "GEZDGNBVGY3TQOJQGEZDGNBV",  # 15 bytes: under 128 bits
    ],
)
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="TOTP secret is malformed"):
        verify_totp(secret, "123456", now=NOW, last_used_step=None)
    with pytest.raises(ValidationError, match="TOTP secret is malformed"):
        provisioning_uri(secret, "alice")


def test_new_secrets_are_160_random_bits_in_base32() -> None:
    secrets_ = {new_totp_secret() for _ in range(50)}
    assert len(secrets_) == 50
    for secret in secrets_:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(base64.b32decode(secret)) == 20


def test_a_secret_of_exactly_128_bits_is_accepted() -> None:
    secret = base64.b32encode(bytes(range(16))).decode("ascii").rstrip("=")
    code = reference_code(secret, STEP)
    assert verify_totp(secret, code, now=NOW, last_used_step=None) == STEP


def test_provisioning_uri_follows_the_key_uri_format() -> None:
    uri = provisioning_uri(SECRET, "alice@example.org")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/ironhub:alice@example.org"
    query = parse_qs(parts.query)
    assert query["secret"] == [SECRET]
    assert query["issuer"] == ["ironhub"]
    # SHA-1, 6 digits and 30 s are the defaults apps assume; nothing else is announced.
    assert "algorithm" not in query
    assert "digits" not in query
    assert "period" not in query
    other = provisioning_uri(SECRET, "bob", issuer="Acme Hub")
    assert parse_qs(urlsplit(other).query)["issuer"] == ["Acme Hub"]


@pytest.mark.parametrize(
    ("name", "issuer", "label"),
    [
        ("", "ironhub", "name"),
        ("a:b", "ironhub", "name"),
        ("a\nb", "ironhub", "name"),
        ("alice", "", "issuer"),
        ("alice", "x:y", "issuer"),
    ],
)
def test_provisioning_uri_refuses_bad_labels(name: str, issuer: str, label: str) -> None:
    with pytest.raises(ValidationError, match=f"the {label}"):
        provisioning_uri(SECRET, name, issuer)


def test_totp_constants() -> None:
    assert (access_policy.TOTP_STEP_SECONDS, access_policy.TOTP_DIGITS) == (30, 6)


# --------------------------------------------------------------------------------------------
# Lockout
# --------------------------------------------------------------------------------------------


def fail(
    throttle: LoginThrottle,
    times: int,
    *,
    account: str = "alice",
    source: str = "192.0.2.1",
    now: float = 0.0,
    step: float = 1.0,
) -> float:
    for _ in range(times):
        throttle.record_failure(account, source, now)
        now += step
    return now


def retry_after(throttle: LoginThrottle, account: str, source: str, now: float) -> float | None:
    try:
        throttle.check(account, source, now)
    except ThrottledError as exc:
        return exc.retry_after_seconds
    return None


def test_lockout_defaults() -> None:
    assert (
        LockoutPolicy(
            max_failures_per_account=5,
            max_failures_per_source=20,
            window_seconds=900.0,
            lockout_seconds=900.0,
            max_tracked_keys=65_536,
        )
        == DEFAULT_LOCKOUT_POLICY
    )
    assert LoginThrottle().policy is DEFAULT_LOCKOUT_POLICY


def test_account_locks_at_exactly_the_fifth_failure() -> None:
    throttle = LoginThrottle()
    outcomes = [throttle.record_failure("alice", f"192.0.2.{i}", float(i)) for i in range(4)]
    assert outcomes == [FailureOutcome(account_locked=False, source_locked=False)] * 4
    throttle.check("alice", "192.0.2.9", 4.0)  # four failures: still allowed
    assert throttle.record_failure("alice", "192.0.2.9", 4.0) == FailureOutcome(
        account_locked=True, source_locked=False
    )
    with pytest.raises(ThrottledError) as exc:
        throttle.check("alice", "198.51.100.7", 4.0)  # from anywhere
    assert exc.value.retry_after_seconds == 900.0
    assert "account locked" in str(exc.value)
    throttle.check("bob", "192.0.2.9", 4.0)  # other accounts are not affected


def test_account_lock_releases_exactly_after_the_lockout() -> None:
    throttle = LoginThrottle()
    fail(throttle, 5, now=100.0, step=0.0)
    assert retry_after(throttle, "alice", "192.0.2.1", 100.0) == 900.0
    assert retry_after(throttle, "alice", "192.0.2.1", 999.5) == pytest.approx(0.5)
    assert retry_after(throttle, "alice", "192.0.2.1", 1000.0) is None
    # After the lock the count starts afresh: four more failures do not lock again.
    fail(throttle, 4, now=1000.0)
    throttle.check("alice", "192.0.2.1", 1004.0)
    assert throttle.record_failure("alice", "192.0.2.1", 1004.0).account_locked


def test_failures_outside_the_window_do_not_count() -> None:
    throttle = LoginThrottle()
    fail(throttle, 4, now=0.0, step=0.0)
    # At exactly window_seconds later the four have aged out.
    assert not throttle.record_failure("alice", "192.0.2.1", 900.0).account_locked
    fail(throttle, 3, now=900.0, step=0.0)
    throttle.check("alice", "192.0.2.1", 900.0)
    assert throttle.record_failure("alice", "192.0.2.1", 900.0).account_locked


def test_sliding_window_counts_the_most_recent_failures() -> None:
    throttle = LoginThrottle()
    fail(throttle, 4, now=0.0, step=200.0)  # at 0, 200, 400, 600
    # At 1000 the failure at 0 has aged out; three remain, so this makes four.
    assert not throttle.record_failure("alice", "192.0.2.1", 1000.0).account_locked
    assert throttle.record_failure("alice", "192.0.2.1", 1001.0).account_locked


def test_success_resets_the_account_count() -> None:
    throttle = LoginThrottle()
    fail(throttle, 4)
    throttle.record_success("alice", "192.0.2.1", 4.0)
    fail(throttle, 4, now=5.0)
    throttle.check("alice", "192.0.2.1", 9.0)
    assert throttle.record_failure("alice", "192.0.2.1", 9.0).account_locked


def test_success_does_not_reset_the_source_count() -> None:
    # A spraying source that owns one valid account cannot launder its failures.
    throttle = LoginThrottle()
    for i in range(19):
        throttle.record_failure(f"user{i}", "203.0.113.5", float(i))
        throttle.record_success("mallory", "203.0.113.5", float(i))
    assert throttle.record_failure("user19", "203.0.113.5", 19.0).source_locked
    assert retry_after(throttle, "mallory", "203.0.113.5", 19.0) == 900.0


def test_success_does_not_lift_a_lock() -> None:
    throttle = LoginThrottle()
    fail(throttle, 5, step=0.0)
    throttle.record_success("alice", "192.0.2.1", 0.0)
    assert retry_after(throttle, "alice", "192.0.2.1", 0.0) == 900.0


def test_source_locks_at_exactly_the_twentieth_failure_across_accounts() -> None:
    throttle = LoginThrottle()
    for i in range(19):
        outcome = throttle.record_failure(f"user{i}", "203.0.113.5", 0.0)
        assert not outcome.source_locked
    throttle.check("anyone", "203.0.113.5", 0.0)
    assert throttle.record_failure("user19", "203.0.113.5", 0.0).source_locked
    with pytest.raises(ThrottledError) as exc:
        throttle.check("anyone", "203.0.113.5", 0.0)
    assert exc.value.retry_after_seconds == 900.0
    assert "source locked" in str(exc.value)
    throttle.check("anyone", "203.0.113.6", 0.0)  # a neighbour is not affected
    assert retry_after(throttle, "anyone", "203.0.113.5", 900.0) is None


def test_failures_on_a_locked_key_do_not_extend_the_lock() -> None:
    throttle = LoginThrottle()
    fail(throttle, 5, step=0.0)
    assert throttle.record_failure("alice", "192.0.2.2", 800.0) == FailureOutcome(
        account_locked=False, source_locked=False
    )
    assert retry_after(throttle, "alice", "192.0.2.3", 899.0) == pytest.approx(1.0)
    assert retry_after(throttle, "alice", "192.0.2.3", 900.0) is None


def test_check_reports_the_later_of_two_locks() -> None:
    policy = LockoutPolicy(max_failures_per_account=2, max_failures_per_source=3)
    throttle = LoginThrottle(policy)
    throttle.record_failure("alice", "192.0.2.1", 0.0)
    throttle.record_failure("alice", "192.0.2.1", 10.0)  # account locked until 910
    throttle.record_failure("bob", "192.0.2.1", 20.0)  # source locked until 920
    with pytest.raises(ThrottledError) as exc:
        throttle.check("alice", "192.0.2.1", 30.0)
    assert exc.value.retry_after_seconds == 890.0
    assert "source locked" in str(exc.value)
    throttle.record_failure("carol", "192.0.2.50", 100.0)
    throttle.record_failure("carol", "192.0.2.51", 100.0)  # account locked until 1000
    with pytest.raises(ThrottledError) as exc:
        throttle.check("carol", "192.0.2.1", 100.0)
    assert exc.value.retry_after_seconds == 900.0
    assert "account locked" in str(exc.value)


def test_accounts_are_case_folded() -> None:
    throttle = LoginThrottle()
    for i, name in enumerate(["alice", "Alice", "ALICE", "aLiCe", "ALICE"]):
        throttle.record_failure(name, f"192.0.2.{i}", 0.0)
    assert retry_after(throttle, "alice", "198.51.100.1", 0.0) == 900.0


def test_ipv6_sources_count_per_64_and_mapped_ipv4_as_ipv4() -> None:
    throttle = LoginThrottle(LockoutPolicy(max_failures_per_source=3))
    throttle.record_failure("a", "2001:db8:1:2::1", 0.0)
    throttle.record_failure("b", "2001:db8:1:2:ffff::99", 0.0)
    assert throttle.record_failure("c", "2001:DB8:1:2::abcd", 0.0).source_locked
    assert retry_after(throttle, "z", "2001:db8:1:2::5", 0.0) == 900.0
    assert retry_after(throttle, "z", "2001:db8:1:3::5", 0.0) is None
    throttle.record_failure("a", "::ffff:192.0.2.7", 0.0)
    throttle.record_failure("b", "192.0.2.7", 0.0)
    assert throttle.record_failure("c", "::ffff:c000:207", 0.0).source_locked
    assert retry_after(throttle, "z", "192.0.2.7", 0.0) == 900.0
    assert retry_after(throttle, "z", "192.0.2.8", 0.0) is None


def test_sources_that_are_not_addresses_are_counted_as_given() -> None:
    throttle = LoginThrottle(LockoutPolicy(max_failures_per_source=2))
    throttle.record_failure("a", "unix-socket", 0.0)
    assert throttle.record_failure("b", "unix-socket", 0.0).source_locked
    assert retry_after(throttle, "c", "unix-socket", 0.0) == 900.0


def test_memory_is_bounded_and_floods_evict_counts_not_locks() -> None:
    policy = LockoutPolicy(
        max_failures_per_account=2, max_failures_per_source=1000, max_tracked_keys=3
    )
    throttle = LoginThrottle(policy)
    fail(throttle, 2, account="victim", step=0.0)  # locked
    throttle.record_failure("counted", "192.0.2.1", 0.0)
    for i in range(10):  # a flood of distinct names, one failure each
        throttle.record_failure(f"flood{i}", "192.0.2.1", 0.0)
    stats = throttle.statistics()
    assert stats.tracked_accounts == 3
    assert stats.locked_accounts == 1
    assert retry_after(throttle, "victim", "192.0.2.1", 1.0) == 899.0
    # The oldest count was evicted: "counted" starts again from zero.
    assert not throttle.record_failure("counted", "192.0.2.1", 1.0).account_locked


def test_locks_are_bounded_too_oldest_first() -> None:
    policy = LockoutPolicy(
        max_failures_per_account=1, max_failures_per_source=1000, max_tracked_keys=2
    )
    throttle = LoginThrottle(policy)
    for i, name in enumerate(["first", "second", "third"]):
        assert throttle.record_failure(name, "192.0.2.1", float(i)).account_locked
    assert throttle.statistics().locked_accounts == 2
    assert retry_after(throttle, "first", "192.0.2.1", 3.0) is None
    assert retry_after(throttle, "second", "192.0.2.1", 3.0) is not None
    assert retry_after(throttle, "third", "192.0.2.1", 3.0) is not None


def test_a_touched_count_is_kept_over_an_untouched_one() -> None:
    policy = LockoutPolicy(
        max_failures_per_account=3, max_failures_per_source=1000, max_tracked_keys=2
    )
    throttle = LoginThrottle(policy)
    throttle.record_failure("old", "192.0.2.1", 0.0)
    throttle.record_failure("mid", "192.0.2.1", 0.0)
    throttle.record_failure("old", "192.0.2.1", 1.0)  # "old" becomes the most recent
    throttle.record_failure("new", "192.0.2.1", 2.0)  # evicts "mid"
    assert throttle.record_failure("old", "192.0.2.1", 3.0).account_locked


def test_statistics() -> None:
    throttle = LoginThrottle()
    assert throttle.statistics() == LoginThrottleStatistics(
        tracked_accounts=0, tracked_sources=0, locked_accounts=0, locked_sources=0
    )
    fail(throttle, 5, step=0.0)
    throttle.record_failure("bob", "198.51.100.1", 0.0)
    assert throttle.statistics() == LoginThrottleStatistics(
        tracked_accounts=1, tracked_sources=2, locked_accounts=1, locked_sources=0
    )
    # An expired lock is forgotten when next looked at.
    throttle.check("alice", "192.0.2.1", 900.0)
    assert throttle.statistics().locked_accounts == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_failures_per_account": 0}, "failure limits"),
        ({"max_failures_per_source": 0}, "failure limits"),
        ({"window_seconds": 0.0}, "window_seconds"),
        ({"lockout_seconds": -1.0}, "lockout_seconds"),
        ({"lockout_seconds": float("inf")}, "lockout_seconds"),
        ({"window_seconds": float("nan")}, "window_seconds"),
        ({"max_tracked_keys": 0}, "max_tracked_keys"),
    ],
)
def test_lockout_policy_refuses_non_positive_limits(
    changes: dict[str, float], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        LockoutPolicy(**changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Sessions and inactivity
# --------------------------------------------------------------------------------------------


def test_session_defaults() -> None:
    assert (
        SessionPolicy(absolute_lifetime_seconds=8 * 3600.0, idle_timeout_seconds=30 * 60.0)
        == DEFAULT_SESSION_POLICY
    )


@pytest.mark.parametrize(
    ("last_seen", "now", "expired"),
    [
        (0.0, 0.0, False),
        (0.0, 1799.0, False),
        (0.0, 1800.0, True),  # idle exactly 30 minutes
        (1000.0, 2799.0, False),
        (1000.0, 2800.0, True),
        (27_000.0, 28_799.0, False),  # active, but...
        (27_000.0, 28_800.0, True),  # ... 8 hours after login
        (28_700.0, 28_799.9, False),
        (28_700.0, 28_800.0, True),
    ],
)
def test_session_ends_at_idle_or_absolute_limit(
    last_seen: float, now: float, expired: bool
) -> None:
    assert session_expired(0.0, last_seen, now) is expired


def test_session_expires_at_is_the_earlier_limit() -> None:
    assert session_expires_at(0.0, 0.0) == 1800.0
    assert session_expires_at(0.0, 28_000.0) == 28_800.0
    policy = SessionPolicy(absolute_lifetime_seconds=100.0, idle_timeout_seconds=10.0)
    assert session_expires_at(50.0, 120.0, policy) == 130.0
    assert session_expires_at(50.0, 145.0, policy) == 150.0


@pytest.mark.parametrize(
    ("absolute", "idle"),
    [
        (0.0, 0.0),
        (100.0, 0.0),
        (-1.0, 1.0),
        (float("inf"), 1.0),
        (100.0, float("nan")),
        (100.0, 101.0),
    ],
)
def test_session_policy_refuses_inconsistent_limits(absolute: float, idle: float) -> None:
    with pytest.raises(ValidationError):
        SessionPolicy(absolute_lifetime_seconds=absolute, idle_timeout_seconds=idle)


@pytest.mark.parametrize(
    ("last_login", "now", "inactive"),
    [
        (None, 0.0, True),
        (0.0, 30 * DAY - 1, False),
        (0.0, 30 * DAY, True),
        (0.0, 31 * DAY, True),
        (100.0, 50.0, False),
    ],
)
def test_inactive_for(last_login: float | None, now: float, inactive: bool) -> None:
    assert inactive_for(last_login, now) is inactive
    assert INACTIVE_AFTER_SECONDS == 30 * DAY


def test_inactive_threshold_is_configurable() -> None:
    assert inactive_for(0.0, 10.0, threshold_seconds=10.0)
    assert not inactive_for(0.0, 9.0, threshold_seconds=10.0)


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "network"),
    [
        ("192.0.2.77", "192.0.2.0/24"),
        ("10.1.2.3", "10.1.2.0/24"),
        ("::ffff:192.0.2.77", "192.0.2.0/24"),
        ("2001:db8:aa:bb:1:2:3:4", "2001:db8:aa:bb::/64"),
        ("2001:DB8::1", "2001:db8::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
    ],
)
def test_source_network(source: str, network: str) -> None:
    assert source_network(source) == network


@pytest.mark.parametrize("source", ["", "localhost", "192.0.2.1:443", "192.0.2.0/24", "1.2.3"])
def test_source_network_refuses_non_addresses(source: str) -> None:
    with pytest.raises(ValidationError, match="not an IP address"):
        source_network(source)


KNOWN = ["192.0.2.0/24", "2001:db8:aa:bb::/64", "not a network", "10.0.0.0/8"]


@pytest.mark.parametrize(
    ("source", "new"),
    [
        ("192.0.2.200", False),
        ("192.0.3.1", True),
        ("::ffff:192.0.2.9", False),
        ("2001:db8:aa:bb::99", False),
        ("2001:db8:aa:bc::1", True),
        ("10.200.3.4", False),  # any stored prefix works
        ("not an address", True),  # leans towards "new"
        ("198.51.100.1", True),
    ],
)
def test_is_new_source(source: str, new: bool) -> None:
    assert is_new_source(KNOWN, source) is new


def test_every_source_is_new_without_history() -> None:
    assert is_new_source([], "192.0.2.1")


def test_a_remembered_source_network_is_not_new() -> None:
    known = [source_network("203.0.113.9"), source_network("2001:db8::5")]
    assert not is_new_source(known, "203.0.113.250")
    assert not is_new_source(known, "2001:db8::ffff:1")
    assert is_new_source(known, "203.0.114.1")


def test_parse_allow_list() -> None:
    networks = parse_allow_list([" 10.0.0.0/8", "192.0.2.5", "2001:db8::/32"])
    assert networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.5/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert parse_allow_list([]) == ()


@pytest.mark.parametrize("entry", ["10.0.0.1/8", "10.0.0.0/33", "banana", "", "2001:db8::1/32"])
def test_parse_allow_list_refuses_malformed_entries(entry: str) -> None:
    with pytest.raises(ValidationError, match="not a network"):
        parse_allow_list(["10.0.0.0/8", entry])


ALLOW = ["10.0.0.0/8", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("10.1.2.3", True),
        ("11.0.0.1", False),
        ("::ffff:10.9.9.9", True),
        ("2001:db8:1::1", True),
        ("2001:db9::1", False),
        ("garbage", False),  # fail closed
        ("", False),
    ],
)
def test_source_allowed(source: str, allowed: bool) -> None:
    assert source_allowed(ALLOW, source) is allowed
    assert source_allowed(parse_allow_list(ALLOW), source) is allowed


def test_an_empty_allow_list_allows_any_source() -> None:
    assert source_allowed([], "203.0.113.1")
    assert source_allowed([], "garbage")


def test_source_allowed_refuses_malformed_string_entries() -> None:
    with pytest.raises(ValidationError):
        source_allowed(["10.0.0.0/8", "banana"], "10.0.0.1")
