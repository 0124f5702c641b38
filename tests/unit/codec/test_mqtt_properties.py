"""Property tests: any split gives the same packets, and any bytes give packets or an error.

SECURITY-TESTS.md 3.2 items 12 and 13, after h11's fuzz contract: whatever arrives, the codec
returns packets or raises RemoteProtocolError, nothing else; its buffer stays bounded; and the
packets do not depend on how the stream was cut into reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.vectors.load import load_vectors, vector_bytes
from tests.vectors.mqtt_runner import CLIENT_CONNECT, Outcome, feed, split_at

from ironhub.codec.mqtt import (
    SUBACK_FAILURE,
    ConnAck,
    Connect,
    ConnectionState,
    ConnectReturnCode,
    Disconnect,
    MQTTLimits,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Role,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    Will,
    encode_packet,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- valid packets ---------------------------------------------------------------------------

# Letters, digits, symbols, spaces, marks; no surrogates, controls, unassigned code points or
# non-characters (category Cn), which topics may not carry; no separators or wildcards.
_TOPIC_CHARACTERS = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc", "Cn"), exclude_characters="+#/"
)
_LEVELS = st.text(_TOPIC_CHARACTERS, max_size=6)
topic_names = st.lists(_LEVELS, min_size=1, max_size=5).map("/".join).filter(bool)
topic_filters = st.builds(
    lambda levels, tail: "/".join([*levels, *tail]),
    st.lists(st.one_of(_LEVELS, st.just("+")), max_size=4),
    st.sampled_from([[], ["#"]]),
).filter(bool)
packet_ids = st.integers(1, 65535)
payloads = st.binary(max_size=200)
strings = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        topic=draw(topic_names),
        payload=draw(payloads),
        qos=qos,
        retain=draw(st.booleans()),
        dup=qos > 0 and draw(st.booleans()),
        packet_id=draw(packet_ids) if qos else None,
    )


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    clean = draw(st.booleans())
    username = draw(st.none() | strings)
    return Connect(
        client_id=draw(strings if clean else strings.filter(bool)),
        keep_alive_seconds=draw(st.integers(0, 65535)),
        clean_session=clean,
        username=username,
        password=None if username is None else draw(st.none() | st.binary(max_size=20)),
        will=draw(
            st.none() | st.builds(Will, topic_names, payloads, st.integers(0, 2), st.booleans())
        ),
    )


def _id_packets(*kinds: type) -> st.SearchStrategy[Packet]:
    return st.one_of(*(st.builds(kind, packet_ids) for kind in kinds))


client_packets: st.SearchStrategy[Packet] = st.one_of(
    publishes(),
    _id_packets(PubAck, PubRec, PubRel, PubComp),
    st.builds(
        Subscribe,
        packet_ids,
        st.lists(st.tuples(topic_filters, st.integers(0, 2)), min_size=1, max_size=8).map(tuple),
    ),
    st.builds(Unsubscribe, packet_ids, st.lists(topic_filters, min_size=1, max_size=8).map(tuple)),
    st.just(PingReq()),
)

server_packets: st.SearchStrategy[Packet] = st.one_of(
    publishes(),
    _id_packets(PubAck, PubRec, PubRel, PubComp, UnsubAck),
    st.builds(
        SubAck,
        packet_ids,
        st.lists(st.sampled_from([0, 1, 2, SUBACK_FAILURE]), min_size=1, max_size=8).map(tuple),
    ),
    st.just(PingResp()),
)

# Room for a whole generated stream to be held behind its CONNECT.
ROOMY = MQTTLimits(max_connect_packet_bytes=65_536)


def _stream(packets: Iterable[Packet]) -> bytes:
    return b"".join(encode_packet(packet) for packet in packets)


@FAST
@given(
    connect=connects(),
    packets=st.lists(client_packets, max_size=8),
    disconnect=st.booleans(),
    data=st.data(),
)
def test_server_any_split_gives_the_same_packets(
    connect: Connect, packets: list[Packet], disconnect: bool, data: st.DataObject
) -> None:
    sent = [connect, *packets, *([Disconnect()] if disconnect else [])]
    stream = _stream(sent)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    whole = feed(Role.SERVER, [stream], accept_connect=True, limits=ROOMY)
    cut = feed(Role.SERVER, split_at(stream, cuts), accept_connect=True, limits=ROOMY)
    assert whole.error is None
    assert cut.error is None
    assert list(whole.packets) == list(cut.packets) == sent


@FAST
@given(
    session_present=st.booleans(),
    packets=st.lists(server_packets, max_size=8),
    data=st.data(),
)
def test_client_any_split_gives_the_same_packets(
    session_present: bool, packets: list[Packet], data: st.DataObject
) -> None:
    sent = [ConnAck(ConnectReturnCode.ACCEPTED, session_present), *packets]
    stream = _stream(sent)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    whole = feed(Role.CLIENT, [stream])
    cut = feed(Role.CLIENT, split_at(stream, cuts))
    assert whole.error is None
    assert cut.error is None
    assert list(whole.packets) == list(cut.packets) == sent


def test_byte_at_a_time_equals_all_at_once_for_a_long_session() -> None:
    sent = [
        CLIENT_CONNECT,
        *(
            Publish(f"devices/d/messages/events/n={i}", b"x" * i, 1, packet_id=i + 1)
            for i in range(300)
        ),
        Disconnect(),
    ]
    stream = _stream(sent)
    one = feed(Role.SERVER, split_at(stream, range(1, len(stream))), accept_connect=True)
    assert one.error is None
    assert list(one.packets) == sent


# -- the fuzz contract -----------------------------------------------------------------------


def _check_contract(outcome: Outcome, limits: MQTTLimits) -> None:
    # ``feed`` catches RemoteProtocolError only: anything else has already failed the test.
    statistics = outcome.connection.statistics()
    assert statistics.bytes_buffered <= limits.max_packet_bytes
    if outcome.error is not None:
        assert outcome.connection.state is ConnectionState.CLOSED
        assert statistics.bytes_buffered == 0


_CONNECT_BYTES = encode_packet(CLIENT_CONNECT)
_CONNACK_BYTES = encode_packet(ConnAck(ConnectReturnCode.ACCEPTED))
_LIMITS = MQTTLimits()
_SMALL = MQTTLimits(
    max_connect_packet_bytes=40,
    max_packet_bytes=80,
    max_topic_levels=3,
    max_subscriptions_per_packet=2,
)


def _frame(first: int, body: bytes) -> bytes:
    # A packet with a correct remaining length around an arbitrary body, so that fuzzing
    # reaches the body decoders instead of stopping at framing.
    length, header = len(body), bytearray([first])
    while True:
        byte, length = length & 0x7F, length >> 7
        header.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(header) + body


framed = st.builds(_frame, st.integers(0, 255), st.binary(max_size=40))
chunks = st.lists(st.binary(max_size=64), max_size=8)


@FAST
@given(chunks=chunks, role=st.sampled_from(Role), limits=st.sampled_from([_LIMITS, _SMALL]))
def test_random_bytes_before_the_handshake(
    chunks: list[bytes], role: Role, limits: MQTTLimits
) -> None:
    _check_contract(feed(role, chunks, limits=limits), limits)


@FAST
@given(chunks=chunks, limits=st.sampled_from([_LIMITS, _SMALL]))
def test_random_bytes_after_an_accepted_connect(chunks: list[bytes], limits: MQTTLimits) -> None:
    outcome = feed(Role.SERVER, [_CONNECT_BYTES, *chunks], accept_connect=True, limits=limits)
    _check_contract(outcome, limits)


@FAST
@given(chunks=chunks, limits=st.sampled_from([_LIMITS, _SMALL]))
def test_random_bytes_after_connack(chunks: list[bytes], limits: MQTTLimits) -> None:
    _check_contract(feed(Role.CLIENT, [_CONNACK_BYTES, *chunks], limits=limits), limits)


@FAST
@given(
    packets=st.lists(framed, max_size=6),
    role=st.sampled_from(Role),
    limits=st.sampled_from([_LIMITS, _SMALL]),
    data=st.data(),
)
def test_random_bodies_in_valid_frames(
    packets: list[bytes], role: Role, limits: MQTTLimits, data: st.DataObject
) -> None:
    prefix = _CONNECT_BYTES if role is Role.SERVER else _CONNACK_BYTES
    stream = prefix + b"".join(packets)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=4))
    outcome = feed(role, split_at(stream, cuts), accept_connect=True, limits=limits)
    _check_contract(outcome, limits)


_SEEDS = [
    (Role.CLIENT if name.startswith("mqtt_client") else Role.SERVER, vector_bytes(vector))
    for name in ("mqtt_server_malformed", "mqtt_client_malformed")
    for vector in load_vectors(name)
]


@st.composite
def mutated_seeds(draw: st.DrawFn) -> tuple[Role, bytes]:
    role, seed = draw(st.sampled_from(_SEEDS))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat"]))
        if operation == "flip" and position < len(data):
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 4))]
        elif operation == "truncate":
            del data[position:]
        else:
            data += data[position:]
    return role, bytes(data)


@settings(FAST, max_examples=300)
@given(case=mutated_seeds(), accept=st.booleans(), data=st.data())
def test_mutated_vectors(case: tuple[Role, bytes], accept: bool, data: st.DataObject) -> None:
    role, stream = case
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=4))
    _check_contract(feed(role, split_at(stream, cuts), accept_connect=accept), _LIMITS)
