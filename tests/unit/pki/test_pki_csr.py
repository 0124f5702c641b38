"""Device CSRs: load_csr, check_csr, the hostile vectors of csr_hostile.json, and the fuzz harness.

Each vector of ``tests/vectors/csr_hostile.json`` (format: tests/vectors/README.md) goes through
``load_csr`` then ``check_csr``, as bytes and, when it is text, as ``str`` too; the outcome must
be the vector's ``expect``. The checks written here cover what vectors cannot (a request built
elsewhere, messages, the constants); a short fuzz run keeps the harness working.
"""

from __future__ import annotations

import base64
import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from tests.unit.pki.conftest import lax_cn, make_csr

from ironhub import pki
from ironhub.errors import CertificateRequestError, TrustError

VECTORS_FILE = Path(__file__).resolve().parents[2] / "vectors" / "csr_hostile.json"
_VECTOR_KEYS = {"name", "hex", "expected_common_name", "expect"}
_OPTIONAL_KEYS = {"note"}


def load_csr_vectors(path: Path = VECTORS_FILE) -> list[dict[str, Any]]:
    """The vectors, checked against the format in tests/vectors/README.md."""
    vectors = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(vectors, list)
    names = set()
    for vector in vectors:
        assert _VECTOR_KEYS <= set(vector) <= _VECTOR_KEYS | _OPTIONAL_KEYS, vector.get("name")
        assert vector["name"] not in names, vector["name"]
        names.add(vector["name"])
        assert vector["expect"] in pki.CSR_REFUSAL_REASONS | {"ok"}, vector["name"]
        bytes.fromhex(vector["hex"])
    return vectors


VECTORS = load_csr_vectors()


def outcome(data: bytes | str, expected_common_name: str) -> str:
    try:
        csr = pki.load_csr(data)
        pki.check_csr(csr, expected_common_name=expected_common_name)
    except CertificateRequestError as refused:
        reason = refused.reason
    else:
        return "ok"
    assert reason in pki.CSR_REFUSAL_REASONS
    return reason


def refusal(data: bytes | str, expected_common_name: str = "dev1") -> CertificateRequestError:
    with pytest.raises(CertificateRequestError) as caught:
        pki.check_csr(pki.load_csr(data), expected_common_name=expected_common_name)
    return caught.value


def der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


# --- the vectors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_csr_vector(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    assert outcome(data, vector["expected_common_name"]) == vector["expect"]
    if data.isascii():
        # The same text as str, as a JSON decoder hands it over.
        assert outcome(data.decode("ascii"), vector["expected_common_name"]) == vector["expect"]


def test_every_reason_has_a_vector() -> None:
    assert {vector["expect"] for vector in VECTORS} == pki.CSR_REFUSAL_REASONS | {"ok"}


def test_the_vectors_cover_the_cases_of_the_issue() -> None:
    names = {vector["name"] for vector in VECTORS}
    assert {
        "key-rsa-2048", "key-rsa-1024", "key-p192", "key-secp256k1", "ok-p256-der",
        "ok-p384-der", "ok-ed25519-der", "cn-mismatch", "two-cns", "extra-o-attribute",
        "san-dns", "san-uri", "ca-true", "eku-server-auth", "eku-client-auth-and-code-signing",
        "key-usage-cert-sign", "unknown-extension", "signature-corrupted", "public-key-swapped",
        "truncated-der", "garbage-bytes", "empty", "oversized-17kib", "pem-trailing-junk",
    } <= names  # fmt: skip


def test_the_vector_reader_refuses_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "csr.json"
    broken.write_text(json.dumps([{"name": "x", "hex": "", "expected_common_name": "d"}]))
    with pytest.raises(AssertionError):
        load_csr_vectors(broken)


# --- load_csr ------------------------------------------------------------------------------------


def test_load_csr_reads_every_encoding_to_the_same_request() -> None:
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()))
    encoded = base64.b64encode(der(csr))
    for data in (
        der(csr),
        pem(csr),
        pem(csr).decode("ascii"),
        encoded,
        encoded.decode("ascii"),
        b"\n" + base64.encodebytes(der(csr)),
        " " + pem(csr).decode("ascii").replace("\n", "\r\n") + "\n\n",
    ):
        loaded = pki.load_csr(data)
        assert loaded == csr
        assert der(loaded) == der(csr)


def test_the_size_cap_counts_the_input_as_given() -> None:
    at_cap = b" " * pki.MAX_CSR_BYTES
    # Exactly at the cap the input is parsed (and refused for what it is).
    assert refusal(at_cap).reason == "malformed"
    for over in (at_cap + b" ", "A" * (pki.MAX_CSR_BYTES + 1), "\u00e9" * (pki.MAX_CSR_BYTES + 1)):
        with pytest.raises(CertificateRequestError) as caught:
            pki.load_csr(over)
        assert caught.value.reason == "too-large"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("MIIB\u00e9", "not ASCII"),
        ("", "empty"),
        (b"", "empty"),
        (b"-----BEGIN CERTIFICATE REQUEST----------END CERTIFICATE REQUEST-----", "empty"),
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "PEM"),
        (b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB", "PEM"),
        (b"MIIB!!", "base64"),
        (b"\x30\x03\x02\x01\x00", "DER"),
    ],
)
def test_load_csr_refuses_malformed_input(data: bytes | str, message: str) -> None:
    with pytest.raises(CertificateRequestError, match=message) as caught:
        pki.load_csr(data)
    assert caught.value.reason == "malformed"


def test_a_refusal_is_a_trust_error() -> None:
    with pytest.raises(TrustError):
        pki.load_csr(b"")
    error = CertificateRequestError("malformed", "why")
    assert (error.reason, str(error)) == ("malformed", "why")


# --- check_csr -----------------------------------------------------------------------------------


def test_a_request_built_elsewhere_with_broken_extensions_is_malformed() -> None:
    # check_csr also takes requests that did not come through load_csr.
    vector = next(v for v in VECTORS if v["name"] == "duplicate-extension")
    raw = x509.load_der_x509_csr(bytes.fromhex(vector["hex"]))
    with pytest.raises(CertificateRequestError) as caught:
        pki.check_csr(raw, expected_common_name="dev1")
    assert caught.value.reason == "malformed"


def test_subject_must_equal_the_expected_common_name() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(key, "dev1/mod1")
    pki.check_csr(csr, expected_common_name="dev1/mod1")
    for expected in ("dev1", "dev1/mod", "dev1/mod1 ", ""):
        with pytest.raises(CertificateRequestError) as caught:
            pki.check_csr(csr, expected_common_name=expected)
        assert caught.value.reason == "subject"


def test_a_common_name_outside_the_rfc_bounds_is_judged_not_warned_about() -> None:
    # cryptography warns when it decodes a CN outside RFC 5280's bounds; under -W error that
    # would escape as a UserWarning instead of a refusal.
    key = ec.generate_private_key(ec.SECP256R1())
    for name in ("", "x" * 65):
        data = der(make_csr(key, lax_cn(name)))
        assert refusal(data).reason == "subject"
        pki.check_csr(pki.load_csr(data), expected_common_name=name)


def test_messages_never_quote_the_request() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    hostile = "evil\u202e<script>" + "A" * 40
    cases = [
        make_csr(key, hostile),
        make_csr(key, x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, hostile)])),
        make_csr(key, extensions=(x509.SubjectAlternativeName([x509.DNSName("evil.example")]),)),
        make_csr(
            key,
            extensions=(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x04\x00"),),
        ),
    ]
    for csr in cases:
        error = refusal(pem(csr))
        assert "evil" not in str(error)
        assert "1.2.3.4" not in str(error)
        assert len(str(error)) < 120


def test_check_order_signature_before_subject_and_extensions() -> None:
    # A request that breaks every rule at once is refused for its signature first.
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(
        key,
        "dev2",
        extensions=(
            x509.SubjectAlternativeName([x509.DNSName("hub")]),
            x509.BasicConstraints(ca=True, path_length=None),
        ),
    )
    corrupted = bytearray(der(csr))
    corrupted[-1] ^= 0x01
    assert refusal(bytes(corrupted)).reason == "bad-signature"
    assert refusal(der(csr)).reason == "subject"
    assert refusal(der(csr), "dev2").reason == "san"


def test_ed25519_and_p384_keys_pass() -> None:
    for key in (ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP384R1())):
        pki.check_csr(pki.load_csr(der(make_csr(key))), expected_common_name="dev1")


def test_constants() -> None:
    assert pki.ALLOWED_CSR_CURVES <= pki.ALLOWED_EC_CURVES
    assert sorted(pki.ALLOWED_CSR_CURVES) == ["secp256r1", "secp384r1"]
    assert pki.MAX_CSR_BYTES == 16 * 1024
    assert all(reason == reason.lower() and " " not in reason for reason in pki.CSR_REFUSAL_REASONS)


def test_public_api_is_sorted_and_complete() -> None:
    assert pki.__all__ == sorted(pki.__all__)
    assert len(set(pki.__all__)) == len(pki.__all__)
    new = {
        "ALLOWED_CSR_CURVES", "ALLOWED_CSR_SIGNATURE_ALGORITHMS", "CSR_REFUSAL_REASONS",
        "MAX_CRL_NUMBER", "MAX_CSR_BYTES", "REVOCATION_REASONS", "RevokedEntry", "build_crl",
        "certificate_serial_hex", "check_csr", "create_ca_certificate", "crl_der", "crl_pem",
        "issue_certificate_from_csr", "load_csr", "parse_revocation_reason",
    }  # fmt: skip
    assert new <= set(pki.__all__)
    for name in pki.__all__:
        assert getattr(pki, name) is not None


# --- the fuzz harness (tests/fuzz/fuzz_csr.py), briefly ------------------------------------------


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    return importlib.import_module("tests.fuzz.fuzz_csr")


def test_a_short_fuzz_run_finds_no_violation(harness: ModuleType) -> None:
    report = harness.run(iterations=400, seed=3)
    assert report.cases == 400
    assert report.violations == []
    assert report.accepted > 0
    # Mutations reach the rules behind the parser, not only "malformed".
    assert {"malformed", "bad-signature", "subject"} <= set(report.refusals)


def test_the_same_fuzz_seed_replays_the_same_cases(harness: ModuleType) -> None:
    first = harness.run(iterations=80, seed=5)
    second = harness.run(iterations=80, seed=5)
    assert (first.accepted, first.refusals) == (second.accepted, second.refusals)


def test_fuzz_main_prints_a_report(harness: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.main(["--iterations", "20", "--seed", "1"]) == 0
    output = capsys.readouterr().out
    assert "cases=20" in output
    assert "violations=0" in output
