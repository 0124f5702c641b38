"""TLS server contexts for the device endpoint.

TLS 1.2 and 1.3 (the Azure SDK 2.14 speaks only 1.2), no renegotiation, client certificates
optional at the TLS layer. OpenSSL refuses a client certificate it cannot chain during the
handshake, so the trust store holds every registered CA *and* every registered self-signed
device certificate (docs/adr/0003). The handshake therefore proves possession of a key whose
certificate we know; which identity that certificate may claim is decided afterwards by
:mod:`ironhub.hub.authn` with the pure rules of :mod:`ironhub.pki`, using only the trust
anchors that fit the device's auth kind.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServerTLSFiles", "build_server_context"]


@dataclass(frozen=True, slots=True)
class ServerTLSFiles:
    """Paths of the server's certificate chain and private key."""

    certificate_chain: Path
    private_key: Path


def build_server_context(files: ServerTLSFiles, client_trust_pem: str) -> ssl.SSLContext:
    """A server context that asks for (but does not require) a client certificate.

    Args:
        files: the server certificate chain and key.
        client_trust_pem: concatenated PEM certificates a client certificate may chain to;
            empty when no X.509 device is registered.

    Raises:
        ssl.SSLError: the key or certificates cannot be loaded.
        OSError: a file cannot be read.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(files.certificate_chain, files.private_key)
    if client_trust_pem.strip():
        context.load_verify_locations(cadata=client_trust_pem)
        context.verify_mode = ssl.CERT_OPTIONAL
        # Any registered certificate is a trust anchor, intermediates included: an x509
        # enrollment group may name an intermediate CA (docs/adr/0012).
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    else:
        context.verify_mode = ssl.CERT_NONE
    return context
