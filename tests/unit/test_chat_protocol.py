"""The chat protocol machine (SPEC §4), one rule per test, and its token bucket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.errors import CloseCode, ErrorCode
from api.ws.actions import Close, Send
from api.ws.chat_protocol import (
    NOT_JSON,
    PONG,
    AskPresence,
    ChatAction,
    ChatProtocol,
    Publish,
    TokenBucket,
)

MAX_BYTES = 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def machine(clock: Clock, rate: float = 20.0, burst: int = 40, max_bytes: int = MAX_BYTES) -> ChatProtocol:
    return ChatProtocol(max_bytes=max_bytes, bucket=TokenBucket(rate, burst, clock))


@pytest.fixture
def p(clock: Clock) -> ChatProtocol:
    return machine(clock)


def error_of(actions: list[ChatAction]) -> dict[str, Any]:
    assert len(actions) == 1 and isinstance(actions[0], Send), actions
    frame: dict[str, Any] = json.loads(actions[0].text)
    assert frame["type"] == "error" and set(frame) == {"type", "code", "detail"}, frame
    assert isinstance(frame["detail"], str) and frame["detail"]
    return frame


def bad_request(actions: list[ChatAction]) -> str:
    frame = error_of(actions)
    assert frame["code"] == ErrorCode.BAD_REQUEST.value == "bad_request"
    detail: str = frame["detail"]
    return detail


def message(text: Any) -> str:
    return json.dumps({"type": "message", "text": text})


# -- well-formed frames --------------------------------------------------------


def test_a_message_frame_is_published_with_its_text(p: ChatProtocol) -> None:
    assert p.receive(message("hello")) == [Publish("hello")]


def test_a_message_keeps_unicode_and_whitespace_exactly(p: ChatProtocol) -> None:
    assert p.receive(message("  你好 \n 🌍 ")) == [Publish("  你好 \n 🌍 ")]


def test_a_ping_is_answered_with_a_pong(p: ChatProtocol) -> None:
    assert p.receive('{"type":"ping"}') == [PONG]
    assert json.loads(PONG.text) == {"type": "pong"}


def test_a_presence_request_asks_for_the_room_presence(p: ChatProtocol) -> None:
    assert p.receive('{"type":"presence"}') == [AskPresence()]


def test_unknown_extra_fields_are_ignored(p: ChatProtocol) -> None:
    assert p.receive('{"type":"ping","id":7}') == [PONG]
    assert p.receive('{"type":"message","text":"hi","user":"mallory"}') == [Publish("hi")]


# -- bad frames: an error frame, and the connection stays open -------------------


def test_a_frame_that_is_not_json_gets_bad_request_in_the_seed_wording(p: ChatProtocol) -> None:
    detail = bad_request(p.receive("hello there"))
    assert "仅支持JSON格式" in detail
    assert detail == NOT_JSON


@pytest.mark.parametrize("text", ["", "{", '{"type":"message"', "nul", "{'type':'ping'}"])
def test_truncated_or_invalid_json_gets_bad_request(p: ChatProtocol, text: str) -> None:
    assert bad_request(p.receive(text)) == NOT_JSON


@pytest.mark.parametrize("text", ["[]", '"ping"', "42", "null", "true", '[{"type":"ping"}]'])
def test_json_that_is_not_an_object_gets_bad_request(p: ChatProtocol, text: str) -> None:
    bad_request(p.receive(text))


def test_a_frame_without_a_type_gets_bad_request_naming_the_types(p: ChatProtocol) -> None:
    detail = bad_request(p.receive('{"text":"hi"}'))
    assert '"type"' in detail and "message" in detail


@pytest.mark.parametrize("kind", ["subscribe", "MESSAGE", "", "welcome", "pong"])
def test_an_unknown_type_gets_bad_request(p: ChatProtocol, kind: str) -> None:
    assert "unknown" in bad_request(p.receive(json.dumps({"type": kind})))


@pytest.mark.parametrize("kind", [1, None, ["message"], {"a": 1}])
def test_a_type_that_is_not_a_string_gets_bad_request(p: ChatProtocol, kind: object) -> None:
    bad_request(p.receive(json.dumps({"type": kind, "text": "x"})))


def test_a_message_without_text_gets_bad_request_naming_the_field(p: ChatProtocol) -> None:
    assert "text" in bad_request(p.receive('{"type":"message"}'))


@pytest.mark.parametrize("text", ["", 5, None, ["a"], {"a": 1}, True])
def test_a_message_with_empty_or_non_string_text_gets_bad_request(p: ChatProtocol, text: object) -> None:
    assert "text" in bad_request(p.receive(message(text)))


def test_a_bad_frame_does_not_stop_the_next_good_one(p: ChatProtocol) -> None:
    bad_request(p.receive("nope"))
    assert p.receive('{"type":"ping"}') == [PONG]


def test_a_binary_frame_gets_bad_request(p: ChatProtocol) -> None:
    assert bad_request(p.receive_bytes(b'{"type":"ping"}')) == NOT_JSON


def test_bad_frames_do_not_use_up_the_rate_limit(clock: Clock) -> None:
    p = machine(clock, burst=1)
    for _ in range(5):
        bad_request(p.receive('{"type":"message"}'))
    assert p.receive(message("still allowed")) == [Publish("still allowed")]


@given(st.text(max_size=200))
def test_no_text_frame_raises(text: str) -> None:
    actions = ChatProtocol(max_bytes=MAX_BYTES, bucket=TokenBucket(1000, 1000)).receive(text)
    assert len(actions) == 1
    assert isinstance(actions[0], Send | Publish | AskPresence)


@given(st.binary(max_size=200))
def test_no_binary_frame_raises(data: bytes) -> None:
    bad_request(ChatProtocol(max_bytes=MAX_BYTES, bucket=TokenBucket(1, 1)).receive_bytes(data))


# -- size ------------------------------------------------------------------------


def test_a_text_frame_over_the_size_limit_closes_1009(p: ChatProtocol) -> None:
    assert p.receive("x" * (MAX_BYTES + 1)) == [Close(CloseCode.MESSAGE_TOO_BIG, "frame too large")]


def test_a_text_frame_exactly_at_the_size_limit_is_read(p: ChatProtocol) -> None:
    text = message("x" * (MAX_BYTES - len(message(""))))
    assert len(text.encode()) == MAX_BYTES
    assert p.receive(text) == [Publish("x" * (MAX_BYTES - len(message(""))))]


def test_the_size_limit_counts_utf8_bytes_not_characters(p: ChatProtocol) -> None:
    wide = '{"type":"message","text":"' + "é" * (MAX_BYTES // 2) + '"}'
    assert len(wide) < MAX_BYTES < len(wide.encode())
    assert p.receive(wide) == [Close(CloseCode.MESSAGE_TOO_BIG, "frame too large")]
    fits = '{"type":"message","text":"' + "é" * (MAX_BYTES // 2 - 20) + '"}'
    assert len(fits) * 4 > MAX_BYTES >= len(fits.encode())
    assert p.receive(fits) == [Publish("é" * (MAX_BYTES // 2 - 20))]


def test_a_binary_frame_over_the_size_limit_closes_1009(p: ChatProtocol) -> None:
    assert p.receive_bytes(b"x" * (MAX_BYTES + 1)) == [Close(CloseCode.MESSAGE_TOO_BIG, "frame too large")]


# -- rate limit --------------------------------------------------------------------


def test_a_burst_of_messages_is_published_then_the_excess_is_refused(clock: Clock) -> None:
    p = machine(clock, rate=20, burst=40)
    assert [p.receive(message(str(n))) for n in range(40)] == [[Publish(str(n))] for n in range(40)]
    frame = error_of(p.receive(message("one too many")))
    assert frame["code"] == ErrorCode.RATE_LIMITED.value == "rate_limited"
    assert p.rate_limited == 1


def test_every_refused_message_is_counted(clock: Clock) -> None:
    p = machine(clock, rate=1, burst=1)
    p.receive(message("ok"))
    for _ in range(3):
        assert error_of(p.receive(message("no")))["code"] == "rate_limited"
    assert p.rate_limited == 3


def test_the_limit_refills_at_the_configured_rate(clock: Clock) -> None:
    p = machine(clock, rate=20, burst=40)
    for _ in range(40):
        p.receive(message("x"))
    clock.now += 0.1  # 2 tokens at 20/s
    assert p.receive(message("a")) == [Publish("a")]
    assert p.receive(message("b")) == [Publish("b")]
    assert error_of(p.receive(message("c")))["code"] == "rate_limited"


def test_messages_and_presence_requests_count_toward_the_limit_pings_do_not(clock: Clock) -> None:
    p = machine(clock, rate=1, burst=2)
    for _ in range(50):
        assert p.receive('{"type":"ping"}') == [PONG]
    assert p.receive('{"type":"presence"}') == [AskPresence()]
    assert p.receive(message("first")) == [Publish("first")]
    assert error_of(p.receive('{"type":"presence"}'))["code"] == "rate_limited"
    assert error_of(p.receive(message("second")))["code"] == "rate_limited"
    assert p.rate_limited == 2
    assert p.receive('{"type":"ping"}') == [PONG]


# -- token bucket ------------------------------------------------------------------


def test_a_new_bucket_holds_its_burst(clock: Clock) -> None:
    bucket = TokenBucket(rate=5, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_a_bucket_refills_one_token_per_interval(clock: Clock) -> None:
    bucket = TokenBucket(rate=5, burst=3, clock=clock)
    for _ in range(3):
        bucket.take()
    clock.now += 0.19
    assert not bucket.take()
    clock.now += 0.02
    assert bucket.take()
    assert not bucket.take()


def test_a_bucket_never_saves_more_than_its_burst(clock: Clock) -> None:
    bucket = TokenBucket(rate=5, burst=3, clock=clock)
    clock.now += 3600
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_refused_takes_do_not_cost_tokens(clock: Clock) -> None:
    bucket = TokenBucket(rate=10, burst=1, clock=clock)
    bucket.take()
    for _ in range(100):
        assert not bucket.take()
    clock.now += 0.1
    assert bucket.take()


def test_a_steady_sender_at_the_rate_is_never_refused(clock: Clock) -> None:
    bucket = TokenBucket(rate=16, burst=1, clock=clock)  # 1/16 s is exact in binary: no rounding to blame
    for _ in range(200):
        assert bucket.take()
        clock.now += 1 / 16
