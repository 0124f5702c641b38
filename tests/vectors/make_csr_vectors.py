"""Generate ``csr_hostile.json``: device certificate signing requests the hub must judge.

Run from the repository root::

    .venv/bin/python tests/vectors/make_csr_vectors.py [--output PATH]

The file is generated once and committed; the unit tests and the fuzz harness read the JSON,
never this script. Output is as deterministic as ``cryptography`` allows: EC and Edwards keys
are derived from fixed secrets, but ECDSA signatures are randomised and RSA and DSA keys are
generated afresh, so a rerun changes those bytes and nothing else (names, order, outcomes).

Some vectors need bytes no builder makes (a version-2 request, a duplicated extension, a key
off its curve); they are edited at the DER level and, where the point is to reach a later
check, signed again with the device key so that only the intended flaw remains.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OUTPUT = Path(__file__).resolve().parent / "csr_hostile.json"
DEVICE = "dev1"

# ecdsa-with-SHA256, as an AlgorithmIdentifier (RFC 5758 §3.2: parameters absent).
_ECDSA_SHA256_ALG_ID = bytes.fromhex("300a06082a8648ce3d040302")
_ID_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")


# --- keys ---------------------------------------------------------------------------------------


def ec_key(curve: ec.EllipticCurve, scalar: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(scalar, curve)


P256 = ec_key(ec.SECP256R1(), 0x1D0C_5EED_0001)
P256_OTHER = ec_key(ec.SECP256R1(), 0x1D0C_5EED_0002)
P384 = ec_key(ec.SECP384R1(), 0x1D0C_5EED_0003)
ED25519 = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


# --- DER surgery ----------------------------------------------------------------------------------


def tlv(tag: int, content: bytes) -> bytes:
    """One DER TLV with a definite length."""
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def resign(info: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A request around ``info`` (a CertificationRequestInfo), signed ECDSA-SHA256 by ``key``."""
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, info + _ECDSA_SHA256_ALG_ID + tlv(0x03, b"\x00" + signature))


def edit_info(csr: x509.CertificateSigningRequest, old: bytes, new: bytes) -> bytes:
    """The request's info with the first ``old`` replaced by ``new`` (which must be present)."""
    info = csr.tbs_certrequest_bytes
    assert old in info, "the bytes to edit are not in the request"
    return info.replace(old, new, 1)


def spki(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


# --- requests -------------------------------------------------------------------------------------


def name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def cn(value: str = DEVICE) -> x509.Name:
    return name((NameOID.COMMON_NAME, value))


def request(
    key: Any = P256,
    subject: x509.Name | x509.RelativeDistinguishedName | None = None,
    extensions: tuple[x509.ExtensionType, ...] = (),
    algorithm: Any = None,
) -> x509.CertificateSigningRequest:
    if isinstance(subject, x509.RelativeDistinguishedName):
        subject = x509.Name([subject])
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        cn() if subject is None else subject
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    if algorithm is None and not isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        algorithm = hashes.SHA256()
    return builder.sign(key, algorithm)


def der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def key_usage(
    *, digital_signature: bool = True, cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
UNKNOWN_OID_2 = x509.ObjectIdentifier("1.3.6.1.4.1.55555.2")


def unknown_extension(oid: x509.ObjectIdentifier = UNKNOWN_OID, size: int = 2) -> Any:
    return x509.UnrecognizedExtension(oid, b"\x04" + bytes([size]) + b"x" * size)


def oid_der(oid: x509.ObjectIdentifier) -> bytes:
    """The DER of an OBJECT IDENTIFIER (X.690 §8.19), to find and replace one in a request."""
    first, second, *rest = (int(arc) for arc in oid.dotted_string.split("."))
    content = bytearray()
    for arc in (40 * first + second, *rest):
        chunk = [arc & 0x7F]
        rest_of_arc = arc >> 7
        while rest_of_arc:
            chunk.append(0x80 | (rest_of_arc & 0x7F))
            rest_of_arc >>= 7
        content += bytes(reversed(chunk))
    return tlv(0x06, bytes(content))


def vectors() -> list[dict[str, Any]]:
    """Every vector, in file order: accepted ones first, then one group per reason."""
    out: list[dict[str, Any]] = []

    def add(name_: str, data: bytes, expect: str, note: str, expected_cn: str = DEVICE) -> None:
        out.append(
            {
                "name": name_,
                "hex": data.hex(),
                "expected_common_name": expected_cn,
                "expect": expect,
                "note": note,
            }
        )

    tolerated = (
        x509.BasicConstraints(ca=False, path_length=None),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
        key_usage(),
    )
    p256 = request()

    # --- accepted ----------------------------------------------------------------------------
    add("ok-p256-der", der(p256), "ok", "EC P-256, ECDSA-SHA256, CN only, raw DER")
    add("ok-p256-pem", pem(p256), "ok", "the same request as PEM text")
    add(
        "ok-p256-pem-crlf-padded",
        b"\r\n  " + pem(p256).replace(b"\n", b"\r\n") + b"\r\n\r\n",
        "ok",
        "PEM with CRLF line ends and whitespace around the block",
    )
    add("ok-p256-base64", base64.b64encode(der(p256)), "ok", "base64 of the DER, as in JSON")
    add(
        "ok-p256-base64-wrapped",
        base64.encodebytes(der(p256)),
        "ok",
        "base64 wrapped at 76 columns with newlines",
    )
    add("ok-p384-der", der(request(P384)), "ok", "EC P-384, ECDSA-SHA256")
    add(
        "ok-p384-sha384",
        der(request(P384, algorithm=hashes.SHA384())),
        "ok",
        "EC P-384, ECDSA-SHA384",
    )
    add("ok-ed25519-der", der(request(ED25519)), "ok", "Ed25519")
    add(
        "ok-tolerated-extensions",
        der(request(extensions=tolerated)),
        "ok",
        "basicConstraints CA:FALSE, EKU clientAuth, keyUsage digitalSignature: tolerated",
    )
    add(
        "ok-module-identity",
        der(request(subject=cn("dev1/mod1"))),
        "ok",
        "a module identity as the CN",
        expected_cn="dev1/mod1",
    )

    # --- key-type ------------------------------------------------------------------------------
    add(
        "key-rsa-2048",
        der(request(rsa.generate_private_key(65537, 2048))),
        "key-type",
        "RSA keys are refused for device CSRs, even of accepted size",
    )
    add(
        "key-rsa-1024",
        der(request(rsa.generate_private_key(65537, 1024))),
        "key-type",
        "a weak RSA key",
    )
    add(
        "key-dsa-2048",
        der(request(dsa.generate_private_key(2048))),
        "key-type",
        "DSA",
    )
    add("key-p192", der(request(ec_key(ec.SECP192R1(), 7))), "key-type", "NIST P-192")
    add("key-secp256k1", der(request(ec_key(ec.SECP256K1(), 7))), "key-type", "secp256k1")
    add(
        "key-p521",
        der(request(ec_key(ec.SECP521R1(), 7))),
        "key-type",
        "P-521 is accepted in uploaded certificates but not for device CSRs",
    )
    add(
        "key-brainpool-p256",
        der(request(ec_key(ec.BrainpoolP256R1(), 7))),
        "key-type",
        "brainpoolP256r1",
    )
    add(
        "key-ed448",
        der(request(ed448.Ed448PrivateKey.from_private_bytes(bytes(57)))),
        "key-type",
        "Ed448 (refused for its key before its signature algorithm)",
    )

    # --- bad-signature -------------------------------------------------------------------------
    corrupted = bytearray(der(p256))
    corrupted[-1] ^= 0x01
    add(
        "signature-corrupted",
        bytes(corrupted),
        "bad-signature",
        "the last byte of the ECDSA signature flipped",
    )
    add(
        "public-key-swapped",
        der(p256).replace(spki(P256), spki(P256_OTHER)),
        "bad-signature",
        "signed by one P-256 key, then the SPKI replaced by another: no proof of possession",
    )
    add(
        "ecdsa-sha512",
        der(request(algorithm=hashes.SHA512())),
        "bad-signature",
        "a valid signature with a hash outside the allowed set",
    )
    add(
        "ecdsa-sha224",
        der(request(algorithm=hashes.SHA224())),
        "bad-signature",
        "a valid signature with a weak hash",
    )
    add(
        "unknown-key-algorithm",
        resign(edit_info(p256, _ID_EC_PUBLIC_KEY, bytes.fromhex("06072a8648ce3d0209")), P256),
        "bad-signature",
        "the SPKI algorithm OID changed to an unknown one: the key cannot be read",
    )
    point = P256.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    off_curve = point[:-1] + bytes([point[-1] ^ 1])
    add(
        "point-off-curve",
        resign(edit_info(p256, point, off_curve), P256),
        "bad-signature",
        "the public point is not on P-256 (invalid-curve attack)",
    )

    # --- subject -------------------------------------------------------------------------------
    add("cn-mismatch", der(request(subject=cn("dev2"))), "subject", "another device's id")
    add("cn-case-differs", der(request(subject=cn("DEV1"))), "subject", "ids compare exactly")
    add(
        "cn-with-nul",
        der(request(subject=cn("dev1\x00.evil"))),
        "subject",
        "a NUL after the expected id",
    )
    add(
        "two-cns",
        der(request(subject=name((NameOID.COMMON_NAME, DEVICE), (NameOID.COMMON_NAME, "dev2")))),
        "subject",
        "two CNs, the first one right",
    )
    add(
        "extra-o-attribute",
        der(
            request(
                subject=name((NameOID.ORGANIZATION_NAME, "Acme"), (NameOID.COMMON_NAME, DEVICE))
            )
        ),
        "subject",
        "an O next to the right CN",
    )
    add(
        "multi-valued-rdn",
        der(
            request(
                subject=x509.RelativeDistinguishedName(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, DEVICE),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
                    ]
                )
            )
        ),
        "subject",
        "CN and O in one multi-valued RDN",
    )
    add("empty-subject", der(request(subject=x509.Name([]))), "subject", "no subject at all")
    add(
        "serial-number-instead-of-cn",
        der(request(subject=name((NameOID.SERIAL_NUMBER, DEVICE)))),
        "subject",
        "the id under another attribute type",
    )

    # --- san -----------------------------------------------------------------------------------
    add(
        "san-dns",
        der(request(extensions=(x509.SubjectAlternativeName([x509.DNSName("hub.example")]),))),
        "san",
        "a DNS SAN: a device asking to be a server",
    )
    add(
        "san-uri",
        der(
            request(
                extensions=(
                    x509.SubjectAlternativeName(
                        [x509.UniformResourceIdentifier("spiffe://hub/dev2")]
                    ),
                )
            )
        ),
        "san",
        "a URI SAN",
    )
    add(
        "san-before-ca",
        der(
            request(
                extensions=(
                    x509.BasicConstraints(ca=True, path_length=None),
                    x509.SubjectAlternativeName([x509.DNSName("dev1")]),
                )
            )
        ),
        "san",
        "both a SAN and CA:TRUE: the SAN is checked first, whatever the order in the request",
    )

    # --- ca-requested --------------------------------------------------------------------------
    add(
        "ca-true",
        der(request(extensions=(x509.BasicConstraints(ca=True, path_length=0),))),
        "ca-requested",
        "basicConstraints CA:TRUE",
    )
    add(
        "ca-true-with-server-auth",
        der(
            request(
                extensions=(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                    x509.BasicConstraints(ca=True, path_length=None),
                )
            )
        ),
        "ca-requested",
        "CA:TRUE is checked before the EKU",
    )

    # --- forbidden-eku -------------------------------------------------------------------------
    add(
        "eku-server-auth",
        der(request(extensions=(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),))),
        "forbidden-eku",
        "EKU serverAuth",
    )
    add(
        "eku-client-auth-and-code-signing",
        der(
            request(
                extensions=(
                    x509.ExtendedKeyUsage(
                        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.CODE_SIGNING]
                    ),
                )
            )
        ),
        "forbidden-eku",
        "clientAuth plus codeSigning",
    )
    add(
        "eku-any",
        der(
            request(
                extensions=(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]),)
            )
        ),
        "forbidden-eku",
        "anyExtendedKeyUsage",
    )

    # --- forbidden-key-usage -------------------------------------------------------------------
    add(
        "key-usage-cert-sign",
        der(request(extensions=(key_usage(cert_sign=True),))),
        "forbidden-key-usage",
        "keyUsage keyCertSign",
    )
    add(
        "key-usage-crl-sign",
        der(request(extensions=(key_usage(crl_sign=True),))),
        "forbidden-key-usage",
        "keyUsage cRLSign",
    )

    # --- extension -----------------------------------------------------------------------------
    add(
        "unknown-extension",
        der(request(extensions=(*tolerated, unknown_extension()))),
        "extension",
        "a private extension OID next to the tolerated ones",
    )
    add(
        "subject-key-identifier",
        der(request(extensions=(x509.SubjectKeyIdentifier.from_public_key(P256.public_key()),))),
        "extension",
        "even a harmless SKI is refused: we compute our own, and the rule has no exceptions",
    )
    add(
        "name-constraints",
        der(
            request(
                extensions=(
                    x509.NameConstraints(
                        permitted_subtrees=[x509.DNSName("example.net")], excluded_subtrees=None
                    ),
                )
            )
        ),
        "extension",
        "a CA-only extension",
    )

    # --- malformed -----------------------------------------------------------------------------
    add("empty", b"", "malformed", "no bytes at all")
    add("whitespace-only", b" \r\n\t ", "malformed", "whitespace only")
    add("truncated-der", der(p256)[: len(der(p256)) // 2], "malformed", "DER cut in half")
    add("der-trailing-byte", der(p256) + b"\x00", "malformed", "one byte after the DER")
    add(
        "garbage-bytes",
        bytes((i * 167 + 13) % 256 for i in range(300)),
        "malformed",
        "300 bytes of noise (not DER, not ASCII)",
    )
    add("garbage-text", b"hello, I am a device", "malformed", "text that is not base64")
    add(
        "pem-trailing-junk",
        pem(p256) + b"junk\n",
        "malformed",
        "text after the END line",
    )
    add(
        "pem-two-blocks",
        pem(p256)
        + P256.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "malformed",
        "a private key pasted after the request",
    )
    add(
        "pem-new-certificate-request-label",
        pem(p256).replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"),
        "malformed",
        "the legacy Netscape label is not accepted",
    )
    add(
        "pem-header-line",
        pem(p256).replace(b"-----\n", b"-----\nProc-Type: 4,ENCRYPTED\n\n", 1),
        "malformed",
        "PEM headers",
    )
    add(
        "base64-missing-padding",
        base64.b64encode(der(p256)).rstrip(b"=") + (b"" if len(der(p256)) % 3 else b"A"),
        "malformed",
        "base64 with its padding removed (or a stray character)",
    )
    add(
        "base64-url-alphabet",
        base64.b64encode(der(p256)).replace(b"M", b"-", 1),
        "malformed",
        "a character of the URL-safe alphabet",
    )
    add(
        "base64-non-ascii",
        base64.b64encode(der(p256)) + "\u00e9".encode(),
        "malformed",
        "UTF-8 after the base64",
    )
    add(
        "version-2",
        resign(edit_info(p256, b"\x02\x01\x00", b"\x02\x01\x01"), P256),
        "malformed",
        "a CSR version other than 1 (v1 = 0), signed again so only the version is wrong",
    )
    duplicated = request(extensions=(unknown_extension(), unknown_extension(UNKNOWN_OID_2)))
    add(
        "duplicate-extension",
        resign(edit_info(duplicated, oid_der(UNKNOWN_OID_2), oid_der(UNKNOWN_OID)), P256),
        "malformed",
        "the same extension requested twice, validly signed",
    )

    # --- too-large -----------------------------------------------------------------------------
    add(
        "oversized-17kib",
        der(
            request(
                extensions=(x509.UnrecognizedExtension(UNKNOWN_OID, tlv(0x04, b"x" * (17 * 1024))),)
            )
        ),
        "too-large",
        "a validly signed request over 16 KiB (an unknown extension of 17 KiB)",
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    arguments = parser.parse_args(argv)
    text = json.dumps(vectors(), indent=2) + "\n"
    arguments.output.write_text(text, encoding="utf-8")
    print(f"wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
