"""Field rules of MQTT 3.1.1 shared by the decoder and the encoder.

The same rules hold in both directions: what we refuse to receive we also refuse to send. Each
check returns ``None`` when the value is acceptable and otherwise a short reason, so that the
decoder can raise :class:`~ironhub.errors.RemoteProtocolError` and the encoder
:class:`~ironhub.errors.LocalProtocolError` with the same words. Reasons never quote the value:
topics and identifiers come from the peer, and quoting them would let it write into our logs.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_PACKET_BYTES",
    "MAX_PACKET_ID",
    "MAX_REMAINING_LENGTH",
    "MAX_STRING_BYTES",
    "SUBACK_RETURN_CODES",
    "topic_filter_problem",
    "topic_name_problem",
]

#: The largest remaining length four variable-length bytes can carry [MQTT-2.2.3].
MAX_REMAINING_LENGTH = 268_435_455

#: The largest whole packet: one type byte, four length bytes and the largest body.
MAX_PACKET_BYTES = 1 + 4 + MAX_REMAINING_LENGTH

#: Packet identifiers are 16-bit and never 0 [MQTT-2.3.1-1].
MAX_PACKET_ID = 65_535

#: Strings and binary fields carry a two-byte length prefix [MQTT-1.5.3].
MAX_STRING_BYTES = 65_535

#: The return codes a SUBACK may carry: a granted QoS or the failure code 0x80 [MQTT-3.9.3].
SUBACK_RETURN_CODES = frozenset({0x00, 0x01, 0x02, 0x80})


def _noncharacters() -> str:
    # The Unicode non-characters: U+FDD0..U+FDEF and the last two code points of every plane.
    planes = "".join(
        f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
    )
    return "\ufdd0-\ufdef" + planes


# [MQTT-1.5.3-2] forbids U+0000 in every string. [MQTT-1.5.3] says strings SHOULD NOT contain the
# C0 and C1 control characters or non-characters and lets a receiver close the connection when
# they appear. We refuse them in topic names and filters (they are routing keys, end up in logs,
# ACL patterns and storage keys, and no Azure IoT topic uses them) but not in client identifiers,
# user names or payloads, whose character rules belong to the hub.
_TOPIC_FORBIDDEN = "\x00-\x1f\x7f-\x9f" + _noncharacters()
_FORBIDDEN_IN_FILTER = re.compile(f"[{_TOPIC_FORBIDDEN}]")
_FORBIDDEN_IN_NAME = re.compile(f"[{_TOPIC_FORBIDDEN}+#]")


def topic_name_problem(topic: str, max_levels: int | None = None) -> str | None:
    """Say what is wrong with a topic name (PUBLISH or will topic), or return ``None``.

    Args:
        topic: the decoded topic name.
        max_levels: the largest number of ``/``-separated levels to accept; ``None`` for no cap.

    Returns:
        A short reason that does not quote the topic, or ``None`` when the topic is acceptable.
    """
    if not topic:
        return "empty topic name [MQTT-4.7.3-1]"
    if topic.isascii() and topic.isprintable():
        # The hot path: printable ASCII (U+0020..U+007E) holds no control characters and no
        # non-characters, so only the wildcards are left to look for.
        if "+" in topic or "#" in topic:
            return "wildcard character in a topic name [MQTT-3.3.2-2]"
    elif _FORBIDDEN_IN_NAME.search(topic) is not None:
        if "+" in topic or "#" in topic:
            return "wildcard character in a topic name [MQTT-3.3.2-2]"
        return "control character or non-character in a topic name [MQTT-1.5.3]"
    if max_levels is not None and topic.count("/") >= max_levels:
        return f"topic name has more than {max_levels} levels"
    return None


def topic_filter_problem(topic_filter: str, max_levels: int | None = None) -> str | None:
    """Say what is wrong with a topic filter (SUBSCRIBE, UNSUBSCRIBE), or return ``None``.

    Args:
        topic_filter: the decoded topic filter.
        max_levels: the largest number of ``/``-separated levels to accept; ``None`` for no cap.

    Returns:
        A short reason that does not quote the filter, or ``None`` when the filter is acceptable.
    """
    if not topic_filter:
        return "empty topic filter [MQTT-4.7.3-1]"
    if not (topic_filter.isascii() and topic_filter.isprintable()) and (
        _FORBIDDEN_IN_FILTER.search(topic_filter) is not None
    ):
        return "control character or non-character in a topic filter [MQTT-1.5.3]"
    if max_levels is not None and topic_filter.count("/") >= max_levels:
        return f"topic filter has more than {max_levels} levels"
    if "+" in topic_filter or "#" in topic_filter:
        levels = topic_filter.split("/")
        last = len(levels) - 1
        for index, level in enumerate(levels):
            if "#" in level and (level != "#" or index != last):
                return "'#' must be the whole last level of a topic filter [MQTT-4.7.1-2]"
            if "+" in level and level != "+":
                return "'+' must be a whole level of a topic filter [MQTT-4.7.1-3]"
    return None
