"""Mutation operators shared by the text- and JSON-grammar fuzz harnesses.

``fuzz_cloud.py`` (the Azure hub topics and twin bodies) and ``fuzz_dps.py`` (the DPS wire) feed
different seeds and token pools to the same operators: one to four (mostly one) edits, so that
near-valid inputs stay common and reach the deep checks.
"""

from __future__ import annotations

import random

#: How many operations one mutation applies: mostly one, so that near-valid inputs stay common.
OPERATION_COUNTS = (1, 1, 1, 2, 3, 4)
_TEXT_OPERATIONS = (
    "token", "token", "delete", "set", "duplicate", "splice", "case", "encode", "levels",
)  # fmt: skip
_PAYLOAD_OPERATIONS = ("token", "token", "flip", "delete", "truncate", "repeat", "splice")


def mutate_text(
    text: str,
    rng: random.Random,
    pool: tuple[str, ...],
    *,
    tokens: tuple[str, ...],
    max_chars: int,
) -> str:
    """Apply character, token, percent-encoding and level operations to a text."""
    chars = list(text)
    for _ in range(rng.choice(OPERATION_COUNTS)):
        position = rng.randint(0, len(chars))
        operation = rng.choice(_TEXT_OPERATIONS)
        if operation == "token":
            chars[position:position] = list(rng.choice(tokens))
        elif operation == "delete":
            del chars[position : position + rng.randint(1, 6)]
        elif operation == "set" and position < len(chars):
            chars[position] = chr(rng.choice((rng.randrange(0x20, 0x7F), rng.randrange(0x110000))))
        elif operation == "duplicate":
            chars[position:position] = chars[position : position + rng.randint(1, 40)]
        elif operation == "splice":
            other = rng.choice(pool)
            chars[position:] = list(other[rng.randint(0, len(other)) :])
        elif operation == "case" and position < len(chars):
            chars[position] = chars[position].swapcase()
        elif operation == "encode" and position < len(chars):
            chars[position : position + 1] = list(f"%{ord(chars[position]) & 0xFF:02X}")
        elif operation == "levels":
            levels = "".join(chars).split("/")
            if rng.random() < 0.5:
                rng.shuffle(levels)
            else:
                levels.pop(rng.randrange(len(levels)))
            chars = list("/".join(levels))
    return "".join(chars)[:max_chars]


def mutate_payload(
    data: bytes,
    rng: random.Random,
    pool: tuple[bytes, ...],
    *,
    tokens: tuple[bytes, ...],
    max_bytes: int,
) -> bytes:
    """Apply byte and JSON-token operations to a body."""
    buffer = bytearray(data)
    for _ in range(rng.choice(OPERATION_COUNTS)):
        position = rng.randint(0, len(buffer))
        operation = rng.choice(_PAYLOAD_OPERATIONS)
        if operation == "token":
            buffer[position:position] = rng.choice(tokens)
        elif operation == "flip" and position < len(buffer):
            buffer[position] ^= 1 << rng.randrange(8)
        elif operation == "delete":
            del buffer[position : position + rng.randint(1, 8)]
        elif operation == "truncate":
            del buffer[position:]
        elif operation == "repeat":
            buffer[position:position] = buffer[position : position + rng.randint(1, 64)] * (
                rng.randint(1, 40)
            )
        else:
            other = rng.choice(pool)
            buffer[position:] = other[rng.randint(0, len(other)) :]
    return bytes(buffer[:max_bytes])
