"""The sans-I/O core of herald_client: every reconnect rule of SPEC §11 without a socket."""

from __future__ import annotations

import random

import pytest
from herald_client.core import (
    CloseCode,
    Disconnect,
    Reconnector,
    ReconnectPolicy,
    RoomTracker,
    SubscriptionTracker,
    classify_close,
    classify_handshake,
    parse_offset,
)
from herald_client.errors import AuthRefused, ProtocolError


class MaxRandom(random.Random):
    """uniform(a, b) -> b: the ceiling of every jittered delay."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_doubles_from_half_a_second_to_twenty_seconds_as_full_jitter_ceilings() -> None:
    backoff = Reconnector(ReconnectPolicy(), MaxRandom())
    ceilings = [backoff.next_delay(Disconnect.RETRY) for _ in range(9)]
    assert ceilings == [0.5, 1, 2, 4, 8, 16, 20, 20, 20]


def test_backoff_is_full_jitter_and_starts_over_after_a_connection() -> None:
    backoff = Reconnector(ReconnectPolicy(), random.Random(7))
    delays = [backoff.next_delay(Disconnect.RETRY) for _ in range(200)]
    assert all(0 <= delay <= 20 for delay in delays)
    assert min(delays) < 1 and max(delays) > 10  # spread over the whole range, not a fixed schedule
    backoff.connected()
    assert backoff.next_delay(Disconnect.RETRY) <= 0.5


@pytest.mark.parametrize("code", [1008, 4403])
def test_an_auth_refusal_is_never_retried(code: int) -> None:
    kind = classify_close(code)
    assert kind is Disconnect.AUTH
    with pytest.raises(AuthRefused) as raised:
        Reconnector(ReconnectPolicy()).next_delay(kind, "refused", code)
    assert raised.value.code == code


def test_a_403_handshake_is_an_auth_refusal_and_a_502_is_retried() -> None:
    assert classify_handshake(403) is Disconnect.AUTH
    assert classify_handshake(502) is Disconnect.RETRY
    assert classify_handshake(503) is Disconnect.RETRY


@pytest.mark.parametrize("code", [1009, 4400, 4401, 4406, 4409, 4429])
def test_codes_a_retry_cannot_fix_raise(code: int) -> None:
    with pytest.raises(ProtocolError):
        Reconnector(ReconnectPolicy()).next_delay(classify_close(code), "", code)


@pytest.mark.parametrize("code", [None, 1000, 1001, 1006, 1011, 4010, 4408, 4500])
def test_other_disconnects_retry_with_backoff(code: int | None) -> None:
    assert classify_close(code) is Disconnect.RETRY
    assert Reconnector(ReconnectPolicy(), MaxRandom()).next_delay(classify_close(code)) == 0.5


def test_try_again_later_waits_at_least_five_seconds() -> None:
    backoff = Reconnector(ReconnectPolicy(), random.Random(1))
    delays = [backoff.next_delay(classify_close(CloseCode.TRY_AGAIN_LATER)) for _ in range(20)]
    assert all(delay >= 5 for delay in delays)


def test_a_restart_spreads_the_first_attempt_then_backs_off() -> None:
    policy = ReconnectPolicy(restart_spread_s=3.0)
    firsts = []
    for seed in range(200):
        backoff = Reconnector(policy, random.Random(seed))
        firsts.append(backoff.next_delay(classify_close(CloseCode.SERVICE_RESTART)))
    assert all(0 <= delay <= 3 for delay in firsts)
    assert max(firsts) - min(firsts) > 2  # spread over the window, not one instant
    backoff = Reconnector(policy, MaxRandom())
    assert backoff.next_delay(Disconnect.RESTART) == 3.0
    assert backoff.next_delay(Disconnect.RESTART) == 1.0  # later attempts: the normal backoff (step 2)


def test_without_spread_a_restart_reconnects_at_once() -> None:
    assert Reconnector(ReconnectPolicy(restart_spread_s=0), MaxRandom()).next_delay(Disconnect.RESTART) == 0


def test_offsets_compare_as_the_stream_orders_them() -> None:
    assert parse_offset("1-10") > parse_offset("1-9")
    assert parse_offset("2-0") > parse_offset("1-99")
    assert parse_offset("0") < parse_offset("0-1")
    with pytest.raises(ValueError):
        parse_offset("abc")


def test_a_room_resumes_after_the_last_message_and_drops_repeats() -> None:
    tracker = RoomTracker("lobby")
    assert tracker.welcome({"type": "welcome", "offset": "5-0"}) == []
    assert tracker.resume == "5-0"
    assert not tracker.accept({"type": "message", "id": "5-0"})  # joined after it
    assert tracker.accept({"type": "message", "id": "1-10"}) is False
    assert tracker.accept({"type": "message", "id": "6-0"})
    assert tracker.accept({"type": "message", "id": "6-1"})
    assert tracker.resume == "6-1"
    assert not tracker.accept({"type": "message", "id": "6-0"})  # a replay overlapping what was seen
    assert tracker.accept({"type": "join", "user": "ada"})


def test_an_empty_room_resumes_from_its_beginning() -> None:
    tracker = RoomTracker("lobby")
    tracker.welcome({"type": "welcome", "offset": None})
    assert tracker.resume == "0"
    assert tracker.accept({"type": "message", "id": "1-0"})


def test_a_resume_that_was_not_recovered_yields_a_gap_frame_first() -> None:
    tracker = RoomTracker("lobby", since="3-0")
    assert tracker.welcome({"type": "welcome", "offset": "90-0", "recovered": False}) == [
        {"type": "gap", "room": "lobby"}
    ]
    # every retained event is new after a gap, even one below the old position (Redis lost history)
    assert tracker.resume == "0"
    assert tracker.accept({"type": "message", "id": "2-0"})
    assert tracker.resume == "2-0"
    assert tracker.welcome({"type": "welcome", "offset": "90-0", "recovered": True}) == []


def test_a_gap_is_told_once_even_when_the_connection_drops_before_the_next_message() -> None:
    tracker = RoomTracker("lobby", since="3-0")
    assert len(tracker.welcome({"type": "welcome", "offset": "9-0", "recovered": False})) == 1
    assert tracker.welcome({"type": "welcome", "offset": "9-0", "recovered": False}) == []
    assert tracker.accept({"type": "message", "id": "5-0"})
    assert len(tracker.welcome({"type": "welcome", "offset": "9-0", "recovered": False})) == 1


def test_a_subscription_with_a_since_variable_resumes_from_its_last_result() -> None:
    tracker = SubscriptionTracker("subscription S($since: String) { newBook(since: $since) { offset } }", None)
    assert tracker.variables_for_next_attempt() == {}
    assert tracker.accept({"data": {"newBook": {"offset": "4-0"}}})
    assert tracker.variables_for_next_attempt() == {"since": "4-0"}
    assert not tracker.accept({"data": {"newBook": {"offset": "4-0"}}})
    assert tracker.accept({"data": {"newBook": {"offset": "4-1"}}, "extensions": {"recovered": False}})


def test_a_subscription_without_since_just_resubscribes() -> None:
    tracker = SubscriptionTracker("subscription { newBook { isbn } }", {"x": 1})
    assert tracker.accept({"data": {"newBook": {"isbn": "1"}}})
    assert tracker.variables_for_next_attempt() == {"x": 1}
