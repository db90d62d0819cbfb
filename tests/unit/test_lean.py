"""``api.ws.lean``: the receive queue and the writable flag of Herald's WebSocket protocol keep the semantics of
the ``asyncio.Queue`` and ``asyncio.Event`` they replace (uvicorn relies on them for every ASGI message)."""

from __future__ import annotations

import asyncio

import pytest

from api.ws.lean import Gate, Inbox

TIMEOUT_S = 5


async def test_an_inbox_hands_items_out_in_order() -> None:
    inbox = Inbox()
    assert inbox.empty() and inbox.qsize() == 0
    for item in ("connect", "text", "disconnect"):
        inbox.put_nowait(item)
    assert not inbox.empty() and inbox.qsize() == 3
    assert [await inbox.get() for _ in range(3)] == ["connect", "text", "disconnect"]
    assert inbox.empty()


async def test_a_getter_waits_for_the_next_item() -> None:
    inbox = Inbox()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    inbox.put_nowait("disconnect")
    async with asyncio.timeout(TIMEOUT_S):
        assert await getter == "disconnect"


async def test_each_waiting_getter_gets_one_item() -> None:
    inbox = Inbox()
    getters = [asyncio.create_task(inbox.get()) for _ in range(3)]
    await asyncio.sleep(0)
    for item in (1, 2, 3):
        inbox.put_nowait(item)
    async with asyncio.timeout(TIMEOUT_S):
        assert await asyncio.gather(*getters) == [1, 2, 3]


async def test_a_getter_cancelled_after_it_was_woken_loses_nothing() -> None:
    inbox = Inbox()
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("disconnect")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs: the item goes to the second
    async with asyncio.timeout(TIMEOUT_S):
        assert await second == "disconnect"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert inbox.empty()


async def test_a_cancelled_getter_leaves_the_item_for_a_later_one() -> None:
    inbox = Inbox()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    inbox.put_nowait("text")
    async with asyncio.timeout(TIMEOUT_S):
        assert await inbox.get() == "text"


async def test_a_gate_starts_open_and_wakes_every_waiter_when_opened() -> None:
    gate = Gate()
    assert gate.is_set()
    async with asyncio.timeout(TIMEOUT_S):
        assert await gate.wait()
    gate.clear()
    assert not gate.is_set()
    waiters = [asyncio.create_task(gate.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    gate.set()
    assert gate.is_set()
    async with asyncio.timeout(TIMEOUT_S):
        assert await asyncio.gather(*waiters) == [True, True]


async def test_a_cancelled_gate_waiter_does_not_stop_the_others() -> None:
    gate = Gate()
    gate.clear()
    cancelled, waiting = asyncio.create_task(gate.wait()), asyncio.create_task(gate.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.set()
    async with asyncio.timeout(TIMEOUT_S):
        assert await waiting
