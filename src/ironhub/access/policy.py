"""The rules of operator sign-in: passwords, TOTP, lockout, sessions and sources. Pure.

Nothing here performs I/O, reads a clock or stores anything: time comes in as ``now`` (seconds,
wall clock for stored timestamps, monotonic for :class:`LoginThrottle`), stored values (password
hashes, the last accepted TOTP step, known networks) come in as arguments, and what must be
stored comes back as a return value. The services wire these rules to storage, the API and the
CLI, and record what they decide in the audit log.

Checks raise (STYLE.md): :class:`~ironhub.errors.ValidationError` for a refused new password or
malformed configuration, :class:`~ironhub.errors.AuthenticationError` for a refused one-time code,
:class:`~ironhub.errors.ThrottledError` while a login is locked out. A few questions about time
and addresses are predicates that return booleans, because their answer selects what happens
next rather than refusing something (``password_expired``, ``is_new_source``, ...). No message
ever contains a password, a hash, a TOTP secret or a code.

Passwords follow NIST SP 800-63B §3.1.1.2 (revision 4): a minimum length rather than
composition rules, a blocklist of common and breached values, context-specific words (the
operator's name, the service's name), repetitive and sequential strings refused, Unicode
normalised with NFKC before hashing and checking, every printable character allowed. Where this
module goes further than NIST (a maximum age, a reuse history) it is because the issue asks for
it; both can be switched off (``max_age_seconds=None``, ``history=0``).

Hashing: argon2id through argon2-cffi (ARCHITECTURE.md, settled). The production parameters,
:data:`DEFAULT_HASH_PARAMETERS`, double the memory of RFC 9106 §4's second recommended option
(t=3, p=4, 64 MiB) to fill ARCHITECTURE.md's budget of about 190 ms per hash: t=3, p=4, 128 MiB
measured 145-185 ms per hash or verification on the 2-core development machine (the RFC's
64 MiB measured about 90 ms). Hashing blocks for that long and argon2-cffi releases the GIL:
callers run it in a worker thread, bound how many run at once (each holds 128 MiB), and
rate-limit logins before hashing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import string
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, TypeAlias

import argon2
import argon2.exceptions
import pyotp

from ironhub.access._common_passwords import COMMON_PASSWORDS
from ironhub.errors import AuthenticationError, ThrottledError, ValidationError

__all__ = [
    "DEFAULT_HASH_PARAMETERS",
    "DEFAULT_LOCKOUT_POLICY",
    "DEFAULT_PASSWORD_POLICY",
    "DEFAULT_SESSION_POLICY",
    "INACTIVE_AFTER_SECONDS",
    "IPV4_SOURCE_PREFIX",
    "IPV6_SOURCE_PREFIX",
    "MAX_PASSWORD_CHARS",
    "TOTP_DIGITS",
    "TOTP_STEP_SECONDS",
    "FailureOutcome",
    "HashParameters",
    "LockoutPolicy",
    "LoginThrottle",
    "LoginThrottleStatistics",
    "PasswordPolicy",
    "SessionPolicy",
    "check_new_password",
    "hash_password",
    "inactive_for",
    "is_new_source",
    "must_change",
    "needs_rehash",
    "new_totp_secret",
    "parse_allow_list",
    "parse_password_list",
    "password_expired",
    "provisioning_uri",
    "session_expired",
    "session_expires_at",
    "source_allowed",
    "source_network",
    "verify_password",
    "verify_totp",
]

_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_DAY: Final = 86_400.0

# --------------------------------------------------------------------------------------------
# Passwords
# --------------------------------------------------------------------------------------------

#: Hard ceiling on a password's length in characters, whatever the policy says. Argon2 accepts
#: up to 2**32 - 1 bytes, but an unbounded input is a denial-of-service lever; the ceiling also
#: bounds what :func:`verify_password` will look at, so lowering a policy's ``max_length`` later
#: never locks out an existing (longer) password.
MAX_PASSWORD_CHARS: Final = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class HashParameters:
    """Argon2id cost parameters (RFC 9106 §3.1).

    Attributes:
        time_cost: passes over memory (``t``).
        memory_cost_kib: memory in KiB (``m``); at least 8 per lane.
        parallelism: lanes (``p``); argon2-cffi runs them on threads.
        hash_bytes: length of the tag.
        salt_bytes: length of the random salt (RFC 9106 recommends 16).

    Raises:
        ValidationError: a parameter is outside what argon2 accepts, or the salt or the tag is
            shorter than 16 bytes.
    """

    time_cost: int = 3
    memory_cost_kib: int = 131_072
    parallelism: int = 4
    hash_bytes: int = 32
    salt_bytes: int = 16

    def __post_init__(self) -> None:
        if self.time_cost < 1:
            raise ValidationError("time_cost must be at least 1")
        if not 1 <= self.parallelism <= 255:
            raise ValidationError("parallelism must be 1 to 255")
        if self.memory_cost_kib < 8 * self.parallelism:
            raise ValidationError("memory_cost_kib must be at least 8 per lane")
        if self.hash_bytes < 16 or self.salt_bytes < 16:
            raise ValidationError("hash_bytes and salt_bytes must be at least 16")


#: Production hashing: t=3, p=4, 128 MiB, 32-byte tag, 16-byte salt (see the module docstring).
DEFAULT_HASH_PARAMETERS: Final = HashParameters()

# Stored hashes are trusted input, but a hash with absurd parameters (written by a bug, a bad
# migration or an attacker with write access to storage) must not make a login allocate
# gigabytes or spin for minutes: such a hash does not verify.
_MAX_VERIFY_MEMORY_KIB: Final = 1_048_576  # 1 GiB
_MAX_VERIFY_TIME_COST: Final = 64
_MAX_VERIFY_PARALLELISM: Final = 64


@lru_cache(maxsize=8)
def _hasher(parameters: HashParameters) -> argon2.PasswordHasher:
    return argon2.PasswordHasher(
        time_cost=parameters.time_cost,
        memory_cost=parameters.memory_cost_kib,
        parallelism=parameters.parallelism,
        hash_len=parameters.hash_bytes,
        salt_len=parameters.salt_bytes,
        type=argon2.Type.ID,
    )


def _normalize(password: str) -> str:
    # NIST SP 800-63B §3.1.1.2: normalise with NFKC or NFKD so that the same password typed on
    # another keyboard or OS (precomposed or decomposed accents, full-width forms) verifies.
    return unicodedata.normalize("NFKC", password)


def _encodable(password: str) -> bool:
    # Lone surrogates ("\ud800") survive some JSON decoders but not UTF-8 encoding.
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def hash_password(password: str, *, parameters: HashParameters = DEFAULT_HASH_PARAMETERS) -> str:
    """Hash a password with argon2id and a fresh random salt.

    The password is NFKC-normalised first (as :func:`verify_password` does). Call
    :func:`check_new_password` before, for a new password; this function only bounds the
    length.

    Returns:
        The PHC-format string (``$argon2id$v=19$m=...,t=...,p=...$salt$tag``) to store.

    Raises:
        ValidationError: the password is longer than :data:`MAX_PASSWORD_CHARS`, or is not
            valid Unicode text (a lone surrogate cannot be encoded as UTF-8).
        argon2.exceptions.HashingError: argon2 itself failed (memory exhausted); not a
            decision about the password, so it is not translated.
    """
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationError(f"a password has at most {MAX_PASSWORD_CHARS} characters")
    if not _encodable(password):
        raise ValidationError("a password must be valid Unicode text")
    return _hasher(parameters).hash(_normalize(password))


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``.

    The comparison is argon2's own, in constant time. The cost parameters are read from the
    hash, so hashes made with older parameters still verify (then see :func:`needs_rehash`).
    Every failure is ``False``: a wrong password, a malformed or foreign hash, a hash whose
    parameters exceed sane bounds, an over-long password, or any argon2 error. Nothing is
    logged here (pure code); the caller counts the failure (:class:`LoginThrottle`).
    """
    if len(password) > MAX_PASSWORD_CHARS or not _encodable(password):
        return False
    try:
        params = argon2.extract_parameters(stored_hash)
        if (
            params.memory_cost > _MAX_VERIFY_MEMORY_KIB
            or params.time_cost > _MAX_VERIFY_TIME_COST
            or params.parallelism > _MAX_VERIFY_PARALLELISM
        ):
            return False
        return _hasher(DEFAULT_HASH_PARAMETERS).verify(stored_hash, _normalize(password))
    except (
        argon2.exceptions.Argon2Error,
        argon2.exceptions.InvalidHashError,
        argon2.exceptions.UnsupportedParametersError,
    ):
        return False


def needs_rehash(stored_hash: str, *, parameters: HashParameters = DEFAULT_HASH_PARAMETERS) -> bool:
    """Whether ``stored_hash`` was made with other parameters (or another variant) than these.

    Call it after a successful :func:`verify_password`, while the password is at hand, and
    store a fresh :func:`hash_password` if it says so. A hash that cannot be parsed needs a
    rehash too.
    """
    try:
        return _hasher(parameters).check_needs_rehash(stored_hash)
    except (argon2.exceptions.InvalidHashError, argon2.exceptions.UnsupportedParametersError):
        return True


def parse_password_list(text: str) -> frozenset[str]:
    """Parse an operator-supplied list of refused passwords: one per line.

    Blank lines and lines starting with ``#`` are skipped; surrounding whitespace is dropped;
    entries are NFKC-normalised and case-folded like the passwords they are compared with.
    Combine with the built-in list as ``COMMON_PASSWORDS | parse_password_list(text)``
    (``PasswordPolicy().breached`` is the built-in list).
    """
    entries = set()
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            entries.add(_normalize(entry).casefold())
    return frozenset(entries)


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordPolicy:
    """What a new operator password must satisfy, and how long it lasts.

    Attributes:
        min_length: fewest characters (after NFKC). 12: above NIST's floor of 8 (15 when the
            password is the only factor), the common enterprise baseline.
        max_length: most characters; at most :data:`MAX_PASSWORD_CHARS`.
        max_age_seconds: a password older than this must be changed (90 days); ``None`` for
            no expiry (NIST SP 800-63B advises against periodic changes when MFA is in place).
        history: a new password must differ from the last ``history`` ones (5); 0 disables.
        breached: refused passwords, lower case: the built-in
            :data:`~ironhub.access._common_passwords.COMMON_PASSWORDS` unless configured
            (see :func:`parse_password_list`).
        context_words: words a password may not contain, lower case (the service's name).

    Raises:
        ValidationError: inconsistent limits.
    """

    min_length: int = 12
    max_length: int = 256
    max_age_seconds: float | None = 90 * _DAY
    history: int = 5
    breached: frozenset[str] = field(default=COMMON_PASSWORDS, repr=False)
    context_words: frozenset[str] = frozenset({"ironhub"})

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.max_length <= MAX_PASSWORD_CHARS:
            raise ValidationError(
                f"password lengths need 1 <= min_length <= max_length <= {MAX_PASSWORD_CHARS}"
            )
        if self.max_age_seconds is not None and not (
            math.isfinite(self.max_age_seconds) and self.max_age_seconds > 0
        ):
            raise ValidationError("max_age_seconds must be a positive number of seconds or None")
        if self.history < 0:
            raise ValidationError("history must not be negative")
        if "" in self.context_words:
            raise ValidationError("context_words must not contain an empty word")


#: The default password policy.
DEFAULT_PASSWORD_POLICY: Final = PasswordPolicy()

# Strings people type when asked for "something long": runs along the alphabet, the digits and
# keyboard rows (QWERTY, QWERTZ, AZERTY), forwards or backwards, wrapping round.
_SEQUENCES: Final = (
    string.ascii_lowercase,
    string.digits,
    "qwertyuiop",
    "qwertzuiop",
    "azertyuiop",
    "asdfghjkl",
    "qsdfghjklm",
    "zxcvbnm",
    "yxcvbnm",
    "wxcvbn",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "!@#$%^&*()",
    "`1234567890-=",
)
# A password that is a short unit repeated ("abababababab", "abcabcabcabc").
_MAX_PATTERN_PERIOD: Final = 4
# Decorations people add around a common word to pass composition rules ("Password1!").
_DECORATION: Final = string.digits + string.punctuation + string.whitespace
# Common letter substitutions ("p@ssw0rd"), undone before the blocklist is consulted.
_UNLEET: Final = str.maketrans(
    {"@": "a", "4": "a", "3": "e", "1": "i", "!": "i", "0": "o", "$": "s", "5": "s", "7": "t"}
)
# Parts of an operator's name shorter than this are too common to refuse ("al" in "total").
_MIN_NAME_PART: Final = 3


def _is_repetition(folded: str) -> bool:
    n = len(folded)
    for period in range(2, min(_MAX_PATTERN_PERIOD, n - 1) + 1):
        unit = folded[:period]
        if (unit * (n // period + 1))[:n] == folded:
            return True
    return False


def _is_sequence(folded: str) -> bool:
    for base in _SEQUENCES:
        cycle = base * (len(folded) // len(base) + 2)
        if folded in cycle or folded in cycle[::-1]:
            return True
    return False


def _is_one_character(folded: str) -> bool:
    return len(set(folded)) == 1


# Shape rules over the case-folded password, in order: (refuses, reason).
_SHAPE_RULES: Final[tuple[tuple[Callable[[str], bool], str], ...]] = (
    (_is_one_character, "a password must not be one character repeated"),
    (_is_repetition, "a password must not be a short pattern repeated"),
    (_is_sequence, "a password must not be a simple sequence (abcd..., 1234..., qwer...)"),
)


def _is_listed(folded: str, breached: frozenset[str]) -> bool:
    core = folded.strip(_DECORATION)
    candidates = {folded, folded.translate(_UNLEET)}
    if core:
        candidates |= {core, core.translate(_UNLEET)}
    return not candidates.isdisjoint(breached)


def _name_parts(name: str) -> set[str]:
    folded = _normalize(name).casefold()
    parts = {part for part in re.split(r"[\W_]+", folded) if len(part) >= _MIN_NAME_PART}
    if len(folded) >= _MIN_NAME_PART:
        parts.add(folded)
    return parts


def _shape_refusal(normalized: str, policy: PasswordPolicy) -> str | None:
    """Why the password's length or shape is refused, or ``None``."""
    if len(normalized) < policy.min_length:
        return f"a password needs at least {policy.min_length} characters"
    if len(normalized) > policy.max_length:
        return f"a password has at most {policy.max_length} characters"
    if not normalized.isprintable():
        return "a password must not contain control or formatting characters"
    folded = normalized.casefold()
    for refused, reason in _SHAPE_RULES:
        if refused(folded):
            return reason
    return None


def _content_refusal(folded: str, name: str, policy: PasswordPolicy) -> str | None:
    """Why the password's words are refused, or ``None``."""
    if _is_listed(folded, policy.breached):
        return "this password is on the list of common or breached passwords"
    unleeted = folded.translate(_UNLEET)
    if any(part in folded or part in unleeted for part in _name_parts(name)):
        return "a password must not contain the account name"
    if any(word in folded or word in unleeted for word in policy.context_words):
        return "a password must not contain the name of the service"
    return None


def check_new_password(
    password: str,
    *,
    name: str,
    history_hashes: Sequence[str],
    policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY,
) -> None:
    """Refuse a new password that breaks the policy.

    Cheap rules run first; the reuse check (one argon2 verification per remembered hash, so
    up to ``policy.history`` hash times) runs last.

    Args:
        password: the proposed password, as typed.
        name: the operator's account name (its parts of three characters or more, split at
            punctuation, are refused inside the password too).
        history_hashes: stored argon2 hashes of the current and previous passwords, newest
            first; only the first ``policy.history`` are consulted.
        policy: the rules.

    Raises:
        ValidationError: the password is refused; the message says which rule, never the
            password.
    """
    normalized = _normalize(password)
    reason = _shape_refusal(normalized, policy) or _content_refusal(
        normalized.casefold(), name, policy
    )
    if reason is not None:
        raise ValidationError(reason)
    if policy.history and any(
        verify_password(stored, password) for stored in history_hashes[: policy.history]
    ):
        raise ValidationError(f"a password must differ from the last {policy.history} passwords")


def password_expired(
    changed_at: float, now: float, policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY
) -> bool:
    """Whether a password set at ``changed_at`` is too old at ``now`` (expired *at* the age)."""
    if policy.max_age_seconds is None:
        return False
    return now - changed_at >= policy.max_age_seconds


def must_change(
    changed_at: float,
    now: float,
    one_time: bool,
    policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY,
) -> bool:
    """Whether the operator must set a new password before doing anything else.

    A one-time password (the initial one set by an administrator, or a reset) must be changed at
    the first login; any password must be changed once expired.
    """
    return one_time or password_expired(changed_at, now, policy)


# --------------------------------------------------------------------------------------------
# TOTP (RFC 6238)
# --------------------------------------------------------------------------------------------

#: RFC 6238 §4.1 time step (X), the value every authenticator app assumes.
TOTP_STEP_SECONDS: Final = 30
#: Digits of a code, the value every authenticator app assumes.
TOTP_DIGITS: Final = 6
#: Bytes of a new secret: 160 bits, RFC 4226 §4 R6's recommendation (the SHA-1 block of HOTP).
_TOTP_SECRET_BYTES: Final = 20
#: Fewest bytes accepted in a stored secret (RFC 4226 §4 R6: at least 128 bits).
_TOTP_MIN_SECRET_BYTES: Final = 16
#: The widest tolerated clock drift, in steps either way.
_TOTP_MAX_WINDOW: Final = 10

_CODE_PATTERN: Final = re.compile(r"[0-9]{6}")
_BASE32_PATTERN: Final = re.compile(r"[A-Z2-7]+")


def _totp(secret: str) -> pyotp.TOTP:
    # Our secrets are unpadded upper-case base32 (new_totp_secret); anything else is refused
    # rather than interpreted, so a corrupted secret cannot silently become a different one.
    try:
        if _BASE32_PATTERN.fullmatch(secret) is None:
            raise ValueError
        padded = secret + "=" * (-len(secret) % 8)
        if len(base64.b32decode(padded)) < _TOTP_MIN_SECRET_BYTES:
            raise ValueError
    except ValueError:  # binascii.Error (bad padding) is a ValueError
        raise ValidationError("the TOTP secret is malformed") from None
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, digest=hashlib.sha1, interval=TOTP_STEP_SECONDS)


def new_totp_secret() -> str:
    """A new TOTP secret: 160 random bits as 32 upper-case base32 characters (no padding).

    It is a credential: store it sealed, show it once (as :func:`provisioning_uri`, usually a QR
    code), and never log it.
    """
    return base64.b32encode(secrets.token_bytes(_TOTP_SECRET_BYTES)).decode("ascii")


def provisioning_uri(secret: str, name: str, issuer: str = "ironhub") -> str:
    """The ``otpauth://totp/...`` URI that authenticator apps import (Key URI Format).

    It contains the secret: show it once, to the operator enrolling, and never log it.

    Raises:
        ValidationError: the secret is malformed, or the name or issuer is empty, not
            printable, or contains ``:`` (the label separator).
    """
    totp = _totp(secret)
    for label, value in (("name", name), ("issuer", issuer)):
        if not value or not value.isprintable() or ":" in value:
            raise ValidationError(f"the {label} must be printable, non-empty and without ':'")
    return totp.provisioning_uri(name=name, issuer_name=issuer)


def verify_totp(
    secret: str,
    code: str,
    *,
    now: float,
    last_used_step: int | None,
    window: int = 1,
) -> int:
    """Accept a TOTP code once, and return its time step for the caller to store.

    A code is valid for its own 30-second step and ``window`` steps either side (clock drift
    and typing time; RFC 6238 §5.2). Each code works once: a code whose step is at or before
    ``last_used_step`` is a replay and is refused even if still inside the window (RFC 6238
    §5.2: "the verifier MUST NOT accept the second attempt of the OTP after the successful
    validation has been issued"). Every candidate step is compared, in constant time, so the
    time taken does not depend on which step matched.

    Args:
        secret: the operator's base32 secret.
        code: what the operator typed: exactly six ASCII digits (the caller strips spaces).
        now: Unix time in seconds (TOTP is defined on wall-clock time).
        last_used_step: the step returned by the last successful call, or ``None``.
        window: steps tolerated either side of the current one (0 to 10).

    Returns:
        The accepted step. Should a code match two steps (a one-in-a-million collision), the
        later one is returned, so that the code can never be accepted again.

    Raises:
        AuthenticationError: ``reason`` is ``"totp-malformed"`` (not six digits),
            ``"totp-replayed"`` (already used: worth an alert, someone else may have seen it)
            or ``"totp-invalid"`` (wrong). Answer all three the same way to the client.
        ValidationError: the secret is malformed, ``now`` is negative or not finite, or
            ``window`` is out of range.
    """
    totp = _totp(secret)
    if not (math.isfinite(now) and now >= 0):
        raise ValidationError("now must be a finite, non-negative Unix time")
    if not 0 <= window <= _TOTP_MAX_WINDOW:
        raise ValidationError(f"window must be 0 to {_TOTP_MAX_WINDOW} steps")
    if _CODE_PATTERN.fullmatch(code) is None:
        raise AuthenticationError("totp-malformed", f"a code is {TOTP_DIGITS} digits")
    current = int(now // TOTP_STEP_SECONDS)
    fresh: int | None = None
    replayed = False
    for step in range(max(current - window, 0), current + window + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            if last_used_step is not None and step <= last_used_step:
                replayed = True
            else:
                fresh = step
    if fresh is not None:
        return fresh
    if replayed:
        raise AuthenticationError("totp-replayed", "the code was already used")
    raise AuthenticationError("totp-invalid", "the code is wrong")


# --------------------------------------------------------------------------------------------
# Lockout
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LockoutPolicy:
    """When repeated login failures lock an account or a source out.

    Defaults follow common practice (Microsoft Entra smart lockout and the CIS benchmarks use
    single-digit thresholds and lockouts of minutes): 5 failures per account or 20 per source
    within 15 minutes lock for 15 minutes. NIST SP 800-63B §3.2.2 caps consecutive failures at
    100 per account; these are far below.

    Attributes:
        max_failures_per_account: failures within the window that lock the account.
        max_failures_per_source: failures within the window that lock the source.
        window_seconds: how far back failures count.
        lockout_seconds: how long a lock lasts.
        max_tracked_keys: most accounts (and, separately, sources) with counted failures, and
            most locks of each kind, kept in memory.

    Raises:
        ValidationError: a limit is not positive.
    """

    max_failures_per_account: int = 5
    max_failures_per_source: int = 20
    window_seconds: float = 15 * 60.0
    lockout_seconds: float = 15 * 60.0
    max_tracked_keys: int = 65_536

    def __post_init__(self) -> None:
        if min(self.max_failures_per_account, self.max_failures_per_source) < 1:
            raise ValidationError("failure limits must be at least 1")
        for value in (self.window_seconds, self.lockout_seconds):
            if not (math.isfinite(value) and value > 0):
                raise ValidationError("window_seconds and lockout_seconds must be positive")
        if self.max_tracked_keys < 1:
            raise ValidationError("max_tracked_keys must be at least 1")


#: The default lockout policy.
DEFAULT_LOCKOUT_POLICY: Final = LockoutPolicy()


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """What one recorded failure changed: whether it locked the account or the source.

    A new lock is a security event: the caller records it in the audit log.
    """

    account_locked: bool
    source_locked: bool


@dataclass(frozen=True, slots=True)
class LoginThrottleStatistics:
    """Sizes of a :class:`LoginThrottle`'s tables (locks that expired may still be counted)."""

    tracked_accounts: int
    tracked_sources: int
    locked_accounts: int
    locked_sources: int


class _Lockouts:
    """Failures within a sliding window, and fixed-length locks, for one kind of key."""

    def __init__(self, limit: int, window: float, lockout: float, max_keys: int) -> None:
        self._limit = limit
        self._window = window
        self._lockout = lockout
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locks: OrderedDict[str, float] = OrderedDict()

    def locked_until(self, key: str, now: float) -> float | None:
        until = self._locks.get(key)
        if until is not None and now >= until:
            del self._locks[key]
            return None
        return until

    def fail(self, key: str, now: float) -> bool:
        if self.locked_until(key, now) is not None:
            # The caller verified a credential despite the lock (it should not): nothing more
            # to learn, and extending the lock would let anyone prolong it indefinitely.
            return False
        times = self._failures.pop(key, None)
        if times is None:
            times = deque()
        horizon = now - self._window
        while times and times[0] <= horizon:
            times.popleft()
        times.append(now)
        if len(times) >= self._limit:
            self._locks[key] = now + self._lockout
            if len(self._locks) > self._max_keys:
                # Every lock lasts as long, so the oldest is the one that ends first.
                self._locks.popitem(last=False)
            return True
        self._failures[key] = times
        if len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)
        return False

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)

    def sizes(self) -> tuple[int, int]:
        return len(self._failures), len(self._locks)


def _source_key(source: str) -> str:
    # Count an IPv6 source by its /64: one host usually holds a whole /64 and can rotate
    # addresses inside it at will. IPv4-mapped IPv6 addresses count as the IPv4 address.
    try:
        address = _parse_address(source)
    except ValidationError:
        return source
    if isinstance(address, ipaddress.IPv6Address):
        return source_network(str(address))
    return str(address)


class LoginThrottle:
    """Locks accounts and sources out after repeated login failures. A pure state machine.

    Theory of operation. Two independent tables, one keyed by account and one by source, each
    hold per key a sliding window of recent failure times and, separately, a lock end time:

    - ``check(account, source, now)`` runs *before* any password or TOTP verification. While
      either key is locked it raises :class:`~ironhub.errors.ThrottledError` with
      ``retry_after_seconds`` set to the later of the two lock ends, and the caller answers
      without verifying anything (no argon2 cost, no oracle).
    - ``record_failure`` counts a failed password *or* TOTP code against both keys. The
      failure that brings a key to its limit within ``window_seconds`` locks it for
      ``lockout_seconds`` and clears its count, so once the lock ends the key starts afresh. A
      failure on a locked key changes nothing (locks are never extended).
    - ``record_success`` clears the account's failure count only. The source's count stays: an
      attacker holding one valid account must not be able to reset the count of a source
      spraying guesses at other accounts by logging in between guesses. A lock is not lifted by
      a success either; there should be none, since ``check`` came first.

    Keys: account names are case-folded (counting "Admin" and "admin" together never counts
    less than the lookup matches); IPv6 sources are counted per /64 (:func:`source_network`),
    IPv4 per address. Failures for accounts that do not exist must be recorded too, so that a
    lock reveals nothing about which accounts exist.

    Memory: each table keeps at most ``max_tracked_keys`` counted keys and, apart, at most as
    many locks, the least recently touched evicted first. Keeping locks apart means a flood of
    distinct names or addresses evicts counts, not locks: lifting a lock by flooding would take
    as many fresh locks. The :class:`~ironhub.hub.ratelimit.FailureWindow` of
    :mod:`ironhub.hub.ratelimit` is not reused: it refuses only while the failures stay inside
    the window (a lock would end when the oldest failure ages out, not ``lockout_seconds``
    after the last), it cannot reset a key on success, and it keeps counts and refusals in one
    table.

    Trade-off: a per-account lock lets anyone lock an operator out for ``lockout_seconds`` by
    guessing wrong on purpose. The lock is short, the attempt leaves audit records, and the
    local CLI (which does not go through this throttle) still works.
    """

    def __init__(self, policy: LockoutPolicy = DEFAULT_LOCKOUT_POLICY) -> None:
        self._policy = policy
        self._accounts = _Lockouts(
            policy.max_failures_per_account,
            policy.window_seconds,
            policy.lockout_seconds,
            policy.max_tracked_keys,
        )
        self._sources = _Lockouts(
            policy.max_failures_per_source,
            policy.window_seconds,
            policy.lockout_seconds,
            policy.max_tracked_keys,
        )

    @property
    def policy(self) -> LockoutPolicy:
        """The limits this throttle enforces."""
        return self._policy

    def check(self, account: str, source: str, now: float) -> None:
        """Refuse a login attempt while the account or the source is locked.

        Raises:
            ThrottledError: locked; ``retry_after_seconds`` says when the later lock ends.
        """
        account_until = self._accounts.locked_until(account.casefold(), now)
        source_until = self._sources.locked_until(_source_key(source), now)
        if account_until is None and source_until is None:
            return
        until = max(t for t in (account_until, source_until) if t is not None)
        what = "account" if account_until == until else "source"
        raise ThrottledError(
            f"too many failed logins: {what} locked", retry_after_seconds=until - now
        )

    def record_failure(self, account: str, source: str, now: float) -> FailureOutcome:
        """Count one failed password or TOTP code.

        Returns:
            Which keys this failure locked (to be recorded in the audit log).
        """
        return FailureOutcome(
            account_locked=self._accounts.fail(account.casefold(), now),
            source_locked=self._sources.fail(_source_key(source), now),
        )

    def record_success(self, account: str, source: str, now: float) -> None:  # noqa: ARG002
        """Clear the account's failure count after a complete login (password and TOTP).

        ``source`` and ``now`` are taken for symmetry and future rules; the source's count is
        deliberately kept (see the class docstring).
        """
        self._accounts.reset(account.casefold())

    def statistics(self) -> LoginThrottleStatistics:
        """The sizes of the tables."""
        tracked_accounts, locked_accounts = self._accounts.sizes()
        tracked_sources, locked_sources = self._sources.sizes()
        return LoginThrottleStatistics(
            tracked_accounts=tracked_accounts,
            tracked_sources=tracked_sources,
            locked_accounts=locked_accounts,
            locked_sources=locked_sources,
        )


# --------------------------------------------------------------------------------------------
# Sessions, inactivity, sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPolicy:
    """How long an operator session lasts.

    Defaults follow the OWASP Session Management Cheat Sheet (idle 15-30 minutes, absolute
    4-8 hours for an application of this sensitivity): a working day at most, half an hour of
    inactivity at most.

    Attributes:
        absolute_lifetime_seconds: from login, whatever the activity (8 hours).
        idle_timeout_seconds: since the last request (30 minutes).

    Raises:
        ValidationError: a limit is not positive, or the idle timeout exceeds the lifetime.
    """

    absolute_lifetime_seconds: float = 8 * 3600.0
    idle_timeout_seconds: float = 30 * 60.0

    def __post_init__(self) -> None:
        for value in (self.absolute_lifetime_seconds, self.idle_timeout_seconds):
            if not (math.isfinite(value) and value > 0):
                raise ValidationError("session limits must be positive numbers of seconds")
        if self.idle_timeout_seconds > self.absolute_lifetime_seconds:
            raise ValidationError("idle_timeout_seconds must not exceed the absolute lifetime")


#: The default session policy.
DEFAULT_SESSION_POLICY: Final = SessionPolicy()


def session_expires_at(
    created_at: float, last_seen: float, policy: SessionPolicy = DEFAULT_SESSION_POLICY
) -> float:
    """When a session created at ``created_at`` and last used at ``last_seen`` ends."""
    return min(
        created_at + policy.absolute_lifetime_seconds, last_seen + policy.idle_timeout_seconds
    )


def session_expired(
    created_at: float,
    last_seen: float,
    now: float,
    policy: SessionPolicy = DEFAULT_SESSION_POLICY,
) -> bool:
    """Whether the session has ended at ``now`` (ended *at* its end time)."""
    return now >= session_expires_at(created_at, last_seen, policy)


#: An account unused for this long is inactive (30 days).
INACTIVE_AFTER_SECONDS: Final = 30 * _DAY


def inactive_for(
    last_login: float | None, now: float, threshold_seconds: float = INACTIVE_AFTER_SECONDS
) -> bool:
    """Whether an account has not logged in for ``threshold_seconds`` (inactive *at* it).

    An account that never logged in (``None``) is inactive: a dormant credential is the risk
    either way. A caller that wants a grace period for new accounts passes their creation
    time instead.
    """
    if last_login is None:
        return True
    return now - last_login >= threshold_seconds


#: New-source detection compares IPv4 sources per /24 ...
IPV4_SOURCE_PREFIX: Final = 24
#: ... and IPv6 sources per /64 (one subscriber's, or one LAN's, usual allocation).
IPV6_SOURCE_PREFIX: Final = 64


def _parse_address(source: str) -> _Address:
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        raise ValidationError("the source is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def source_network(source: str) -> str:
    """The network that new-source detection remembers for ``source``.

    IPv4 addresses map to their /24 (a home router's DHCP pool, a small office), IPv6 to their
    /64; IPv4-mapped IPv6 addresses count as IPv4, and an IPv6 zone (``%eth0``) is dropped.
    Store the result among the operator's known networks after a successful login.

    Raises:
        ValidationError: ``source`` is not an IP address.
    """
    address = _parse_address(source)
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(address), IPV4_SOURCE_PREFIX), strict=False))
    return str(ipaddress.IPv6Network((int(address), IPV6_SOURCE_PREFIX), strict=False))


def is_new_source(known_networks: Sequence[str], source: str) -> bool:
    """Whether ``source`` lies outside every network the operator logged in from before.

    ``known_networks`` are :func:`source_network` results (any CIDR works). The answer leans
    towards "new", which costs a notification at worst: a source that is not an IP address is
    new, and malformed stored entries match nothing.
    """
    try:
        address = _parse_address(source)
    except ValidationError:
        return True
    for entry in known_networks:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if address in network:
            return False
    return True


def parse_allow_list(entries: Iterable[str]) -> tuple[_Network, ...]:
    """Parse a configured list of networks (CIDR, or bare addresses meaning one host).

    Host bits must be zero (``10.0.0.1/8`` is refused, not widened: it is probably a typo).
    Call it when loading the configuration, so that a bad entry stops the start rather than
    failing at the first login.

    Raises:
        ValidationError: an entry is not a network; the message quotes the entry (addresses
            are configuration, not secrets).
    """
    networks: list[_Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=True))
        except ValueError:
            raise ValidationError(f"not a network in CIDR notation: {entry!r}") from None
    return tuple(networks)


def source_allowed(allow_list: Sequence[str | _Network], source: str) -> bool:
    """Whether ``source`` may log in under an allow-list of networks.

    An empty list allows every source. Otherwise the source must lie inside one of the
    networks, and a source that is not an IP address is refused (fail closed). IPv4-mapped
    IPv6 sources match IPv4 networks.

    Raises:
        ValidationError: a string entry is malformed (:func:`parse_allow_list` should have
            refused it when the configuration was loaded).
    """
    if not allow_list:
        return True
    networks = [
        entry if not isinstance(entry, str) else parse_allow_list([entry])[0]
        for entry in allow_list
    ]
    try:
        address = _parse_address(source)
    except ValidationError:
        return False
    return any(address in network for network in networks)
