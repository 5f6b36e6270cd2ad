"""CoalescingWriter: one write per loop turn; a large payload goes out by reference, in order."""

from __future__ import annotations

import asyncio

import pytest

from taureau.net.server import CoalescingWriter
from taureau.protocol import encode_message, message_head

pytestmark = pytest.mark.anyio


class Transport:
    def __init__(self) -> None:
        self.calls: list[list[bytes | bytearray]] = []

    def write(self, data) -> None:
        self.calls.append([data])

    def writelines(self, parts) -> None:
        self.calls.append(list(parts))

    def is_closing(self) -> bool:
        return False


async def test_large_payloads_keep_their_place_among_buffered_frames():
    transport = Transport()
    writer = CoalescingWriter(transport)  # type: ignore[arg-type]
    big = b"B" * 100_000
    writer.write(b"one")
    writer.write_large(b"<head>", big)
    writer.write(b"two")
    assert transport.calls == []  # nothing before the end of the loop turn
    await asyncio.sleep(0)
    assert len(transport.calls) == 1
    parts = transport.calls[0]
    assert any(part is big for part in parts)  # not copied
    assert b"".join(parts) == b"one<head>" + big + b"two"
    writer.write(b"three")
    await asyncio.sleep(0)
    assert transport.calls[1] == [bytearray(b"three")]  # small frames: one buffer, one write


async def test_clear_drops_queued_payloads():
    transport = Transport()
    writer = CoalescingWriter(transport)  # type: ignore[arg-type]
    writer.write_large(b"h", b"p" * 10)
    writer.clear()
    await asyncio.sleep(0)
    assert transport.calls == []


def test_message_head_and_entry_make_the_frame_encode_message_makes():
    entry = b"e" * 70_000
    head = message_head(3, 7, 9, -1, 0, len(entry))
    assert head + entry == encode_message(3, 7, 9, -1, 0, entry)
