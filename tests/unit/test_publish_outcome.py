"""What a publish's future says for each reply of the publish script: what arrives from Redis is input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker import Published, Unavailable
from broker.broker import _settle_published


async def settled(reply: Any = None, error: BaseException | None = None) -> asyncio.Future[Published]:
    loop = asyncio.get_running_loop()
    raw: asyncio.Future[Any] = loop.create_future()
    published: asyncio.Future[Published] = loop.create_future()
    raw.add_done_callback(lambda done: _settle_published(published, done))
    if error is not None:
        raw.set_exception(error)
    else:
        raw.set_result(reply)
    await asyncio.wait([published], timeout=1.0)
    return published


async def test_a_reply_becomes_the_offset_and_whether_it_repeated() -> None:
    assert (await settled([b"1700000000000-3", 1])).result() == Published("1700000000000-3", True)
    assert (await settled([b"1-0", 0])).result() == Published("1-0", False)


async def test_an_error_is_the_publishs_error() -> None:
    outcome = await settled(error=Unavailable("redis is unavailable"))
    with pytest.raises(Unavailable):
        outcome.result()


@pytest.mark.parametrize("reply", [None, b"1-0", [b"1-0"], [b"1-0", 0, 0], 7])
async def test_a_reply_of_another_shape_fails_the_publish_instead_of_leaving_it_waiting(reply: Any) -> None:
    outcome = await settled(reply)
    assert outcome.done() and outcome.exception() is not None
