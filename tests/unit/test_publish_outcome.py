"""What a publish's ``then`` is told for each reply of the publish script: what arrives from Redis is input."""

from __future__ import annotations

from typing import Any

import pytest

from broker import Published, Unavailable
from broker.broker import _settle_published


def told(reply: Any, error: BaseException | None = None) -> list[tuple[Published | None, BaseException | None]]:
    calls: list[tuple[Published | None, BaseException | None]] = []
    _settle_published(lambda published, failed: calls.append((published, failed)), reply, error)
    return calls


def test_a_reply_becomes_the_offset_and_whether_it_repeated() -> None:
    assert told([b"1700000000000-3", 1]) == [(Published("1700000000000-3", True), None)]
    assert told([b"1-0", 0]) == [(Published("1-0", False), None)]


def test_an_error_is_the_publishs_error() -> None:
    error = Unavailable("redis is unavailable")
    assert told(None, error) == [(None, error)]


@pytest.mark.parametrize("reply", [None, b"1-0", [b"1-0"], [b"1-0", 0, 0], 7])
def test_a_reply_of_another_shape_fails_the_publish_instead_of_leaving_it_waiting(reply: Any) -> None:
    [(published, error)] = told(reply)
    assert published is None and error is not None


def test_a_publishers_callback_is_called_once_and_its_failure_stays_its_own(caplog: pytest.LogCaptureFixture) -> None:
    from broker.publisher import _Then

    calls: list[object] = []

    def broken(result: Any, error: BaseException | None) -> None:
        calls.append(result)
        raise RuntimeError("a bug in the caller")

    waiter = _Then(broken)
    waiter.set_result("first")  # the sender goes on to the batch's next call: nothing raised here
    waiter.set_exception(Unavailable("late"))  # e.g. the batch failing afterwards: not told twice
    assert calls == ["first"] and waiter.done()
    assert "a publish's completion failed" in caplog.text
