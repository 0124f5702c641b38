"""A provisioning (DPS) client for tests and the benchmark, on ironhub's own codecs.

It speaks the wire exactly as the Azure SDK does (azure-iot-mqtt.md §5): CONNECT with the DPS
username, SUBSCRIBE ``$dps/registrations/res/#``, PUBLISH the register request, then poll the
operation status until it is no longer ``assigning``. Unlike the SDK it can also send a CSR or
a claim token, connect without any credential, and poll without waiting (``poll_delay``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ironhub.codec import dps, sas
from ironhub.codec.mqtt import PubAck, Publish, SubAck, Subscribe
from tests.support.mqtt_client import TestDevice


@dataclass
class DpsAnswer:
    """One response: the status of its topic and its JSON body."""

    status: int
    body: dict[str, Any]
    retry_after: int | None


def dps_username(id_scope: str, registration_id: str) -> str:
    return (
        f"{id_scope}/registrations/{registration_id}/api-version={dps.DPS_API_VERSION}"
        "&ClientVersion=ironhub-tests"
    )


def dps_password(id_scope: str, registration_id: str, key: bytes, ttl: int = 3600) -> bytes:
    uri = dps.dps_resource_uri(id_scope, registration_id)
    return sas.generate_sas_token(uri, key, int(time.time()) + ttl).encode()


def make_csr(
    common_name: str, key: ec.EllipticCurvePrivateKey | None = None
) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A fresh P-256 key and a CSR for ``common_name`` (base64 DER, as a device sends it)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return key, base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode("ascii")


class DpsClient:
    """One provisioning connection."""

    def __init__(self, device: TestDevice, registration_id: str) -> None:
        self.device = device
        self.registration_id = registration_id

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        ctx: ssl.SSLContext,
        *,
        id_scope: str,
        registration_id: str,
        key: bytes | None = None,
    ) -> DpsClient:
        """Connect (SAS if ``key``, else whatever ``ctx`` presents) and subscribe.

        Raises:
            ConnectRefused: the hub answered CONNACK with a refusal.
        """
        device = await TestDevice.connect(
            host,
            port,
            ctx,
            client_id=registration_id,
            username=dps_username(id_scope, registration_id),
            password=dps_password(id_scope, registration_id, key) if key is not None else None,
            clean_session=True,
        )
        device.send(Subscribe(device.packet_id(), ((dps.RESPONSE_FILTER, 1),)))
        await device.recv(SubAck)
        return cls(device, registration_id)

    async def _answer(self, timeout: float = 10.0) -> DpsAnswer:
        while True:
            packet = await self.device.recv(timeout=timeout)
            if isinstance(packet, PubAck):
                continue
            assert isinstance(packet, Publish), packet
            status, _rid, retry_after = dps.parse_response_topic(packet.topic)
            return DpsAnswer(status, json.loads(packet.payload), retry_after)

    async def request_register(
        self,
        payload: object | None = None,
        *,
        csr: str | None = None,
        claim_token: str | None = None,
        raw_body: bytes | None = None,
    ) -> DpsAnswer:
        """Send one register request; the first answer (202 assigning, or an error)."""
        body = raw_body
        if body is None:
            body = dps.register_body(
                self.registration_id, payload, csr=csr, claim_token=claim_token
            )
        topic = dps.register_topic(str(uuid.uuid4()))
        self.device.send(Publish(topic, body, qos=1, packet_id=self.device.packet_id()))
        return await self._answer()

    async def request_status(self, operation_id: str) -> DpsAnswer:
        topic = dps.status_topic(str(uuid.uuid4()), operation_id)
        self.device.send(Publish(topic, b" ", qos=1, packet_id=self.device.packet_id()))
        return await self._answer()

    async def register(
        self,
        payload: object | None = None,
        *,
        csr: str | None = None,
        claim_token: str | None = None,
        poll_delay: float = 0.05,
        max_polls: int = 100,
    ) -> DpsAnswer:
        """Register and poll until the operation ends; the final answer."""
        answer = await self.request_register(payload, csr=csr, claim_token=claim_token)
        if answer.status != 202:
            return answer
        operation_id = answer.body["operationId"]
        polls = 0
        while answer.status in (202, 429):
            polls += 1
            assert polls <= max_polls, "the operation never ended"
            # As the SDK does: a 429 is retried after its retry-after.
            delay = (
                answer.retry_after if answer.status == 429 and answer.retry_after else poll_delay
            )
            await asyncio.sleep(delay)
            answer = await self.request_status(operation_id)
        return answer

    async def close(self) -> None:
        await self.device.close()
