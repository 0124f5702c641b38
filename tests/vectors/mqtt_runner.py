"""The reference runner for the MQTT vectors, against the sans-IO codec (README.md here).

It drives :class:`ironhub.codec.mqtt.MQTTConnection` exactly as README.md describes, so the unit
tests and the fuzz harness share one reading of the format. Live-socket runners follow the same
rules over TCP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.vectors.load import vector_bytes

from ironhub.codec.mqtt import (
    ConnAck,
    Connect,
    ConnectionState,
    ConnectReturnCode,
    MQTTConnection,
    MQTTLimits,
    Packet,
    Role,
)
from ironhub.errors import RemoteProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["CLIENT_CONNECT", "Outcome", "feed", "role_of", "run_vector", "split_at"]

#: What the client-role runner sends before feeding a ``mqtt_client_*`` vector.
CLIENT_CONNECT = Connect(client_id="vector", keep_alive_seconds=60)


@dataclass(frozen=True)
class Outcome:
    """What feeding a byte stream produced: the packets, then possibly the error."""

    packets: tuple[Packet, ...]
    error: RemoteProtocolError | None
    connection: MQTTConnection = field(compare=False, repr=False)

    @property
    def expect(self) -> str:
        """The outcome in the vector vocabulary: ``close``, ``connack:N`` or ``packets``."""
        if self.error is None:
            return "packets"
        if self.error.connack_code is not None:
            return f"connack:{self.error.connack_code}"
        return "close"


def role_of(file_name: str) -> Role:
    """``mqtt_server_*`` files feed a server, ``mqtt_client_*`` files a client."""
    return Role.CLIENT if file_name.startswith("mqtt_client") else Role.SERVER


def split_at(data: bytes, cuts: Iterable[int]) -> Iterator[bytes]:
    """Yield ``data`` cut at the given offsets (sorted, clipped, duplicates allowed)."""
    start = 0
    for cut in sorted(min(max(cut, 0), len(data)) for cut in cuts):
        yield data[start:cut]
        start = cut
    yield data[start:]


def feed(
    role: Role,
    chunks: Iterable[bytes],
    *,
    accept_connect: bool = False,
    limits: MQTTLimits | None = None,
) -> Outcome:
    """Feed chunks to a fresh connection and collect what comes out.

    A client-role connection first sends :data:`CLIENT_CONNECT`. With ``accept_connect``, a
    server answers ``ConnAck(ACCEPTED)`` as soon as a CONNECT comes out, then calls
    ``receive_data(b"")`` for the packets held meanwhile, before the next chunk.
    """
    connection = MQTTConnection(role) if limits is None else MQTTConnection(role, limits)
    if role is Role.CLIENT:
        connection.send(CLIENT_CONNECT)
    packets: list[Packet] = []
    try:
        for chunk in chunks:
            packets += connection.receive_data(chunk)
            if accept_connect and connection.state is ConnectionState.CONNECT_RECEIVED:
                connection.send(ConnAck(ConnectReturnCode.ACCEPTED))
                packets += connection.receive_data(b"")
    except RemoteProtocolError as error:
        return Outcome(tuple(packets), error, connection)
    return Outcome(tuple(packets), None, connection)


def run_vector(
    vector: dict[str, Any], role: Role, cuts: Iterable[int] = (), limits: MQTTLimits | None = None
) -> Outcome:
    """Run one vector, its bytes cut at ``cuts`` (none: all at once)."""
    return feed(
        role,
        split_at(vector_bytes(vector), cuts),
        accept_connect=vector.get("accept_connect", False),
        limits=limits,
    )
