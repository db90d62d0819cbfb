"""Prepared frames must be byte-for-byte what a WebSocket client parses."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from api.ws.frame_io import text_frame


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_parses_back_to_the_same_text_at_every_length_boundary(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    payload = payload.decode(errors="ignore").encode()
    frame = parse(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert frame.data == payload
