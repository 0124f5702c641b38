"""Fuzz harness for device CSRs: ``load_csr``, ``check_csr`` and issuance from what they accept.

Not collected by pytest (tests/unit/pki/test_pki_csr.py runs it briefly). Each case takes a seed
from ``tests/vectors/csr_hostile.json`` and mutates it in one of two ways:

- the bytes as a device sends them (DER, PEM or base64 text): bit flips, byte changes,
  deletions, DER tokens, truncation, repetition, splices of other seeds;
- the CertificationRequestInfo of a seed signed by the generator's P-256 key, mutated either
  with the same byte operations or structurally (its DER parsed into a tree of TLVs, OCTET
  STRINGs that hold DER included; a node dropped, duplicated, re-tagged, grafted from another
  seed, or its value mutated; every length recomputed), then **signed again** with that key
  (``make_csr_vectors.resign``), so the signature stays valid and the mutation reaches the
  subject and extension rules behind it.

The result is sent as DER, PEM, base64, or as ``str``, through :func:`ironhub.pki.load_csr` then
:func:`ironhub.pki.check_csr` with the seed's expected CN.

The contract checked on every case, after h11's: each call returns or raises
``CertificateRequestError`` with a reason from ``CSR_REFUSAL_REASONS`` (``load_csr`` only
``malformed`` or ``too-large``), with a short message; nothing else may escape. What is accepted
is checked against an independent oracle, written from the rules rather than from the code: the
input is within the cap, the signature verifies with the request's key, the key is P-256, P-384
or Ed25519, the signature algorithm is ECDSA-SHA256/384 or Ed25519, the subject is exactly the
expected CN, and the extensions are at most a harmless basicConstraints, keyUsage and
extendedKeyUsage. An accepted request is then issued a certificate, which must carry the
device profile and nothing from the request but its key.

Usage (from the repository root)::

    .venv/bin/python tests/fuzz/fuzz_csr.py [--iterations N] [--seed S] [--max-seconds T]

It prints the number of cases, acceptances and the refusals per reason, then every violation
with its input, and exits 1 if there was any. The default is 20000 cases; the same ``--seed``
replays the same cases. ``run()`` is importable for tests.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import random
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from tests.vectors import make_csr_vectors

from ironhub import pki
from ironhub.errors import CertificateRequestError

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "csr_hostile.json"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: Pieces of DER (and of PEM and base64) that random bytes would rarely produce.
DER_TOKENS = (
    b"\x30", b"\x30\x00", b"\x30\x80", b"\x31", b"\x04\x00", b"\x05\x00", b"\x01\x01\xff",
    b"\x02\x01\x00", b"\x02\x01\x01", b"\x03\x01\x00", b"\xa0\x00", b"\x81\xff",
    b"\x82\xff\xff", b"\x84\xff\xff\xff\xff", b"\x80", b"\x00", b"\xff",
    b"\x06\x03\x55\x04\x03",  # id-at-commonName
    b"\x06\x03\x55\x04\x0a",  # id-at-organizationName
    b"\x06\x03\x55\x1d\x11",  # subjectAltName
    b"\x06\x03\x55\x1d\x13",  # basicConstraints
    b"\x06\x03\x55\x1d\x25",  # extKeyUsage
    b"\x06\x03\x55\x1d\x0f",  # keyUsage
    b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0e",  # extensionRequest
    b"\x0c\x04dev1", b"\x0c\x04dev2", b"\x13\x04dev1", b"\x1e\x08\x00d\x00e\x00v\x001",
    b"dev1", b"\x00", b"-----BEGIN CERTIFICATE REQUEST-----", b"-----END ", b"\n", b"=", b"MII",
)  # fmt: skip
#: How many operations one mutation applies: mostly one, so that near-valid inputs stay common.
OPERATION_COUNTS = (1, 1, 1, 2, 3)
MAX_INPUT_BYTES = 20 * 1024
_TOLERATED = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
}
_ISSUED_EXTENSIONS = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}
#: Tags a structural mutation may give a node: strings, containers, and a few primitives.
RETAGS = (0x01, 0x02, 0x04, 0x05, 0x06, 0x0C, 0x13, 0x16, 0x1E, 0x30, 0x31, 0xA0, 0xA3)
#: Values a structural mutation may give a leaf (a CN, an extension value, a boolean...).
LEAF_VALUES = (b"", b"dev1", b"dev2", b"DEV1", b"dev1\x00", b"x" * 65, b"\xff", b"\x00", b"*")
_LOAD_REASONS = frozenset({"malformed", "too-large"})
_MAX_MESSAGE_CHARS = 120


@dataclass
class Report:
    """What a fuzz run found."""

    cases: int = 0
    accepted: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Seeds:
    """The corpora: inputs as sent (with their expected CN), and re-signable infos."""

    inputs: tuple[tuple[bytes, str], ...]
    infos: tuple[tuple[bytes, str], ...]


def seeds() -> Seeds:
    """Every vector of csr_hostile.json; the infos of those signed by the generator's key."""
    vectors = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    inputs = tuple((bytes.fromhex(v["hex"]), v["expected_common_name"]) for v in vectors)
    own_key = _spki(make_csr_vectors.P256.public_key())
    infos = []
    for data, expected in inputs:
        try:
            csr = x509.load_der_x509_csr(data)
            if _spki(csr.public_key()) == own_key:
                infos.append((csr.tbs_certrequest_bytes, expected))
        except Exception:  # seeds that do not parse simply do not seed infos
            continue
    return Seeds(inputs, tuple(infos))


def _spki(key: object) -> bytes:
    encoded = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bytes(encoded)


def mutate(data: bytes, rng: random.Random, pool: tuple[bytes, ...]) -> bytes:
    """Apply one to three (mostly one) byte or DER-token operations."""
    buffer = bytearray(data)
    for _ in range(rng.choice(OPERATION_COUNTS)):
        position = rng.randint(0, len(buffer))
        operation = rng.choice(
            (
                "flip",
                "flip",
                "set",
                "set",
                "token",
                "delete",
                "truncate",
                "repeat",
                "splice",
                "swap",
            )
        )
        if operation == "flip" and position < len(buffer):
            buffer[position] ^= 1 << rng.randrange(8)
        elif operation == "set" and position < len(buffer):
            buffer[position] = rng.randrange(256)
        elif operation == "token":
            buffer[position:position] = rng.choice(DER_TOKENS)
        elif operation == "delete":
            del buffer[position : position + rng.randint(1, 8)]
        elif operation == "truncate":
            del buffer[position:]
        elif operation == "repeat":
            buffer[position:position] = buffer[position : position + rng.randint(1, 64)] * (
                rng.randint(1, 300)
            )
        elif operation == "splice":
            other = rng.choice(pool)
            buffer[position:] = other[rng.randint(0, len(other)) :]
        elif operation == "swap":
            # Same-length replacement keeps every enclosing DER length right.
            other = rng.choice(pool)
            size = rng.randint(1, 16)
            start = rng.randint(0, max(0, len(other) - size))
            buffer[position : position + size] = other[start : start + size]
    return bytes(buffer[:MAX_INPUT_BYTES])


# A DER tree: (tag, content), where content is the bytes of a leaf or the list of the children
# of a constructed value (or of an OCTET STRING that holds DER, such as an extension's value).
Node = tuple[int, "bytes | list[Node]"]


def parse_tree(data: bytes) -> list[Node]:
    """The TLVs of ``data`` (definite lengths, low tag numbers), or ValueError."""
    nodes: list[Node] = []
    position = 0
    while position < len(data):
        if len(data) - position < 2 or data[position] & 0x1F == 0x1F:
            raise ValueError("not simple DER")
        tag, first = data[position], data[position + 1]
        position += 2
        if first < 0x80:
            length = first
        elif 0x81 <= first <= 0x83:
            length = int.from_bytes(data[position : position + (first & 0x7F)], "big")
            position += first & 0x7F
        else:
            raise ValueError("not simple DER")
        content = data[position : position + length]
        if len(content) != length:
            raise ValueError("truncated")
        position += length
        if tag & 0x20:
            nodes.append((tag, parse_tree(content)))
            continue
        if tag == 0x04 and content:
            try:
                nodes.append((tag, parse_tree(content)))
                continue
            except ValueError:
                pass
        nodes.append((tag, content))
    return nodes


def encode_tree(nodes: list[Node]) -> bytes:
    return b"".join(
        make_csr_vectors.tlv(tag, content if isinstance(content, bytes) else encode_tree(content))
        for tag, content in nodes
    )


def _slots(nodes: list[Node]) -> list[tuple[list[Node], int]]:
    """Every node, as (its parent's list, its index)."""
    found = []
    for index, (_, content) in enumerate(nodes):
        found.append((nodes, index))
        if isinstance(content, list):
            found += _slots(content)
    return found


def mutate_tree(info: bytes, rng: random.Random, pool: tuple[bytes, ...]) -> bytes:
    """One to three structural operations on the DER of ``info``; lengths stay consistent."""
    tree = parse_tree(info)
    for _ in range(rng.choice(OPERATION_COUNTS)):
        slots = _slots(tree)
        if not slots:
            break
        parent, index = rng.choice(slots)
        tag, content = parent[index]
        operation = rng.choice(
            ("value", "value", "drop", "duplicate", "graft", "graft", "graft", "retag")
        )
        if operation == "value" and isinstance(content, bytes):
            new = rng.choice(LEAF_VALUES) if rng.random() < 0.4 else mutate(content, rng, pool)
            parent[index] = (tag, new)
        elif operation == "drop":
            del parent[index]
        elif operation == "duplicate":
            parent.insert(index, parent[index])
        elif operation == "graft":
            # A node of the same type from another request (an extension for an extension, a
            # name for a name) keeps the structure valid, so the rules behind the parser see it.
            donors = [(p, i) for p, i in _slots(parse_tree(rng.choice(pool))) if p[i][0] == tag]
            if donors:
                donor_parent, donor_index = rng.choice(donors)
                parent[index] = donor_parent[donor_index]
        elif operation == "retag":
            parent[index] = (rng.choice(RETAGS), content)
    return encode_tree(tree)


def encode(der: bytes, rng: random.Random) -> bytes | str:
    """Send DER as is, or wrapped as a device might: PEM or base64, as bytes or text."""
    form = rng.choice(("der", "der", "pem", "base64", "text"))
    if form == "der":
        return der
    body = base64.b64encode(der)
    if form == "pem":
        lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        return (
            b"-----BEGIN CERTIFICATE REQUEST-----\n"
            + lines
            + b"\n-----END CERTIFICATE REQUEST-----\n"
        )
    return body if form == "base64" else body.decode("ascii")


def _acceptance_problem(
    data: bytes | str, csr: x509.CertificateSigningRequest, expected: str
) -> str | None:
    """The rules, checked independently of ironhub.pki._csr."""
    if len(data) > pki.MAX_CSR_BYTES:
        return "accepted over the size cap"
    if not csr.is_signature_valid:
        return "accepted a signature that does not verify"
    key = csr.public_key()
    if not (
        isinstance(key, ed25519.Ed25519PublicKey)
        or (
            isinstance(key, ec.EllipticCurvePublicKey)
            and key.curve.name in ("secp256r1", "secp384r1")
        )
    ):
        return "accepted a key outside P-256, P-384, Ed25519"
    if csr.signature_algorithm_oid not in pki.ALLOWED_CSR_SIGNATURE_ALGORITHMS:
        return "accepted a signature algorithm outside the allowed set"
    if csr.subject != x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, expected)]):
        return "accepted a subject other than the expected CN alone"
    for extension in csr.extensions:
        value = extension.value
        if extension.oid not in _TOLERATED:
            return f"accepted extension {extension.oid.dotted_string}"
        if isinstance(value, x509.BasicConstraints) and value.ca:
            return "accepted CA:TRUE"
        if isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
            return "accepted keyCertSign or cRLSign"
        if isinstance(value, x509.ExtendedKeyUsage) and set(value) - {
            ExtendedKeyUsageOID.CLIENT_AUTH
        }:
            return "accepted an EKU other than clientAuth"
    return None


def _issued_problem(
    certificate: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    expected: str,
) -> str | None:
    if certificate.subject != x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, expected)]):
        return "issued with another subject"
    if _spki(certificate.public_key()) != _spki(csr.public_key()):
        return "issued for another key"
    if {extension.oid for extension in certificate.extensions} != _ISSUED_EXTENSIONS:
        return "issued with extensions outside the device profile"
    if certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
        return "issued a CA"
    certificate.verify_directly_issued_by(ca[1])
    return None


def check(
    data: bytes | str,
    expected: str,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    report: Report,
) -> None:
    """load_csr, check_csr, and for an accepted request the oracle and an issuance."""
    for step in ("load", "check"):
        try:
            if step == "load":
                csr = pki.load_csr(data)
            else:
                pki.check_csr(csr, expected_common_name=expected)
        except CertificateRequestError as refused:
            report.refusals[refused.reason] += 1
            allowed = _LOAD_REASONS if step == "load" else pki.CSR_REFUSAL_REASONS - {"too-large"}
            if refused.reason not in allowed:
                report.violations.append(f"{step}: reason {refused.reason!r}: {data!r:.2000}")
            elif len(str(refused)) > _MAX_MESSAGE_CHARS:
                report.violations.append(f"{step}: message too long: {str(refused)[:200]!r}")
            return
    report.accepted += 1
    problem = _acceptance_problem(data, csr, expected)
    if problem is None:
        certificate = pki.issue_certificate_from_csr(
            ca[0], ca[1], csr, device_id=expected, now=NOW, validity_days=30
        )
        problem = _issued_problem(certificate, csr, ca, expected)
    if problem is not None:
        report.violations.append(f"{problem}: {data!r:.2000}")


def run_case(
    seeds_: Seeds,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    rng: random.Random,
    report: Report,
) -> None:
    """One case; escaped exceptions are violations."""
    data: bytes | str = b""
    try:
        path = rng.random()
        if path < 0.35 or not seeds_.infos:
            raw, expected = rng.choice(seeds_.inputs)
            data = mutate(raw, rng, tuple(seed for seed, _ in seeds_.inputs))
            if data[:1] == b"\x30" and rng.random() < 0.3:
                data = encode(data, rng)
        else:
            info, expected = rng.choice(seeds_.infos)
            pool = tuple(seed for seed, _ in seeds_.infos)
            info = mutate(info, rng, pool) if path < 0.6 else mutate_tree(info, rng, pool)
            data = encode(make_csr_vectors.resign(info, make_csr_vectors.P256), rng)
        check(data, expected, ca, report)
    except Exception:
        report.violations.append(
            f"{traceback.format_exc(limit=-1).strip()}\n  input: {data!r:.2000}"
        )


def run(iterations: int, seed: int, max_seconds: float | None = None) -> Report:
    """Run ``iterations`` cases (fewer if ``max_seconds`` runs out) and report."""
    rng = random.Random(seed)
    corpora = seeds()
    ca = pki.create_ca("fuzz CA", now=NOW - dt.timedelta(days=1))
    report = Report()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    for _ in range(iterations):
        if deadline is not None and time.monotonic() > deadline:
            break
        run_case(corpora, ca, rng, report)
        report.cases += 1
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=None)
    arguments = parser.parse_args(argv)
    started = time.monotonic()
    report = run(arguments.iterations, arguments.seed, arguments.max_seconds)
    elapsed = time.monotonic() - started
    print(f"cases={report.cases} accepted={report.accepted} refusals={report.refusals.total()}")
    print(f"violations={len(report.violations)} seed={arguments.seed} seconds={elapsed:.1f}")
    for reason, count in report.refusals.most_common():
        print(f"  {count:8d}  {reason}")
    for violation in report.violations:
        print(f"VIOLATION {violation}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
