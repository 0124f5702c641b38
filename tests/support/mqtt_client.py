"""A small MQTT 3.1.1 device for tests, built on ironhub's own codec in the client role.

It is deliberately strict: any unexpected packet raises, so tests see protocol mistakes of the
hub. It can also write raw bytes, for hostile tests.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from ironhub.codec import sas
from ironhub.codec.mqtt import (
    ConnAck,
    Connect,
    ConnectReturnCode,
    Disconnect,
    MQTTConnection,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    Role,
    SubAck,
    Subscribe,
)
from ironhub.errors import RemoteProtocolError


class ConnectRefused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"CONNACK {code}")
        self.code = code


@dataclass
class SasCredentials:
    hostname: str
    device_id: str
    key_b64: str
    ttl: int = 3600

    def username(self) -> str:
        return f"{self.hostname}/{self.device_id}/?api-version=2019-10-01&DeviceClientType=ironhub-tests"

    def password(self, *, expiry: int | None = None) -> bytes:
        se = expiry if expiry is not None else int(time.time()) + self.ttl
        uri = sas.resource_uri_for(self.hostname, self.device_id)
        return sas.generate_sas_token(uri, base64.b64decode(self.key_b64), se).encode()


def client_tls_context(
    ca_path: Path, *, certfile: Path | None = None, keyfile: Path | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_path))
    if certfile is not None:
        ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return ctx


class TestDevice:
    """One connection to the hub."""

    __test__ = False  # not a pytest test class

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.codec = MQTTConnection(Role.CLIENT)
        self._queue: list[Packet] = []
        self._next_id = 1

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        ctx: ssl.SSLContext | None,
        *,
        server_hostname: str | None = "localhost",
        local_addr: tuple[str, int] | None = None,
    ) -> TestDevice:
        # ``local_addr`` picks the source address (e.g. ("127.0.0.2", 0)), so hostile tests can
        # play several sources on loopback; ``None`` leaves the choice to the OS as before.
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                ssl=ctx,
                server_hostname=server_hostname if ctx else None,
                local_addr=local_addr,
            ),
            10,
        )
        return cls(reader, writer)

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        ctx: ssl.SSLContext,
        *,
        client_id: str,
        username: str | None,
        password: bytes | None,
        keep_alive: int = 60,
        clean_session: bool = False,
        local_addr: tuple[str, int] | None = None,
    ) -> TestDevice:
        dev = await cls.open(host, port, ctx, local_addr=local_addr)
        dev.send(
            Connect(
                client_id=client_id,
                keep_alive_seconds=keep_alive,
                clean_session=clean_session,
                username=username,
                password=password,
            )
        )
        ack = await dev.recv(ConnAck)
        if ack.return_code != ConnectReturnCode.ACCEPTED:
            await dev.close()
            raise ConnectRefused(int(ack.return_code))
        return dev

    def send(self, packet: Packet) -> None:
        self.writer.write(self.codec.send(packet))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def packet_id(self) -> int:
        pid = self._next_id
        self._next_id = pid % 65535 + 1
        return pid

    async def _fill(self, timeout: float) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            raise ConnectionResetError("closed by the hub")
        self._queue.extend(self.codec.receive_data(data))

    async def recv(self, kind: type[Packet] | None = None, *, timeout: float = 10.0) -> Packet:  # type: ignore[valid-type]
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._queue:
            await self._fill(max(0.01, deadline - asyncio.get_running_loop().time()))
        packet = self._queue.pop(0)
        if kind is not None and not isinstance(packet, kind):
            raise AssertionError(f"expected {kind.__name__}, got {packet!r}")
        return packet

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        dup: bool = False,
        packet_id: int | None = None,
    ) -> None:
        pid = (packet_id or self.packet_id()) if qos else None
        self.send(Publish(topic=topic, payload=payload, qos=qos, dup=dup, packet_id=pid))
        await self.writer.drain()
        if qos == 1:
            ack = await self.recv(PubAck)
            assert isinstance(ack, PubAck)
            assert ack.packet_id == pid

    async def publish_pipelined(self, topic: str, payloads: list[bytes]) -> list[int]:
        pids = []
        for payload in payloads:
            pid = self.packet_id()
            pids.append(pid)
            self.send(Publish(topic=topic, payload=payload, qos=1, packet_id=pid))
        await self.writer.drain()
        acked = []
        while len(acked) < len(pids):
            ack = await self.recv(PubAck)
            assert isinstance(ack, PubAck)
            acked.append(ack.packet_id)
        return acked

    async def subscribe(self, *filters: str) -> SubAck:
        self.send(Subscribe(self.packet_id(), tuple((f, 1) for f in filters)))
        ack = await self.recv(SubAck)
        assert isinstance(ack, SubAck)
        return ack

    async def ping(self) -> None:
        self.send(PingReq())
        await self.recv(PingResp)

    async def wait_closed(self, timeout: float = 5.0) -> bool:
        """True if the hub closes the connection within ``timeout`` (packets are discarded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while loop.time() < deadline:
                data = await asyncio.wait_for(self.reader.read(65536), deadline - loop.time())
                if not data:
                    return True
                try:
                    self._queue.extend(self.codec.receive_data(data))
                except RemoteProtocolError:
                    pass
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True
        return False

    async def close(self) -> None:
        try:
            if not self.writer.is_closing():
                try:
                    self.send(Disconnect())
                except Exception:
                    pass
                self.writer.close()
                await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
