"""``api.ws.loop_local.LoopLocal``: the frame flusher and the keepalive wheel are one per event loop."""

from __future__ import annotations

import asyncio
import gc

from api.ws.coalesce import flusher_for
from api.ws.keepalive import ping_wheel
from api.ws.loop_local import LoopLocal


def test_one_object_per_loop_made_on_first_use() -> None:
    made: list[asyncio.AbstractEventLoop] = []
    local = LoopLocal(lambda loop: made.append(loop) or object())
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert made == []
        assert local(first) is local(first)
        assert local(second) is not local(first)
        assert made == [first, second]
    finally:
        first.close()
        second.close()


def test_a_closed_loop_is_not_kept_alive() -> None:
    local = LoopLocal(lambda loop: object())
    loop = asyncio.new_event_loop()
    local(loop)
    loop.close()
    del loop
    gc.collect()
    assert len(local._by_loop) == 0


def test_the_flusher_and_the_wheel_are_the_loops_own() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert flusher_for(loop) is flusher_for(loop)
        assert ping_wheel(loop) is ping_wheel(loop)
    finally:
        loop.close()
