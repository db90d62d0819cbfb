"""Legacy graphql-ws machine, one subscriptions-transport-ws PROTOCOL.md rule per test."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError, TransportServerError
from gql.transport.websockets import WebsocketsTransport
from hypothesis import given, settings
from hypothesis import strategies as st

from api.errors import CloseCode
from api.graphql.legacy_ws import MAX_PENDING, GraphQLWS
from api.graphql.types import Action, Start, Stop
from api.ws.actions import Close, Send

GOOD = {"token": "good"}
SUB = "subscription { newBook { isbn } }"
ACK = Send('{"type":"connection_ack"}')
KA = Send('{"type":"ka"}')


def authorize(payload: dict[str, Any] | None) -> object | None:
    return "alice" if payload is not None and payload.get("token") == "good" else None


def msg(**fields: Any) -> str:
    return json.dumps(fields)


def init(payload: Any = GOOD) -> str:
    return msg(type="connection_init", payload=payload)


def start(op_id: Any = "1", query: Any = SUB, **payload: Any) -> str:
    return msg(type="start", id=op_id, payload={"query": query, **payload})


def stop(op_id: str = "1") -> str:
    return msg(type="stop", id=op_id)


def frames(actions: list[Action]) -> list[dict[str, Any]]:
    assert all(isinstance(a, Send) for a in actions), actions
    return [json.loads(a.text) for a in actions if isinstance(a, Send)]


def started(op_id: str = "1") -> Start:
    return Start(op_id, SUB, None, None)


def complete_frame(op_id: str = "1") -> Send:
    return Send(json.dumps({"type": "complete", "id": op_id}, separators=(",", ":")))


@pytest.fixture
def fresh() -> GraphQLWS:
    return GraphQLWS(authorize)


@pytest.fixture
def p() -> GraphQLWS:
    machine = GraphQLWS(authorize)
    machine.receive(init())
    return machine


# --- connection_init ---------------------------------------------------------------------------------------


def test_accepted_connection_init_sends_ack_then_ka(fresh: GraphQLWS) -> None:
    assert fresh.receive(init()) == [ACK, KA]
    assert fresh.principal == "alice"


def test_connection_init_without_payload_authorizes_none() -> None:
    seen: list[object] = []
    GraphQLWS(lambda payload: seen.append(payload)).receive(msg(type="connection_init"))
    assert seen == [None]


def test_rejected_connection_init_sends_connection_error_then_closes_4403(fresh: GraphQLWS) -> None:
    actions = fresh.receive(init({"token": "bad"}))
    assert actions[0] == Send('{"type":"connection_error","payload":{"message":"Forbidden"}}')
    assert actions[1:] == [Close(CloseCode.GQL_FORBIDDEN, "Forbidden")]
    assert fresh.principal is None


def test_authorizer_that_raises_sends_connection_error_and_closes_1011() -> None:
    def boom(payload: dict[str, Any] | None) -> object:
        raise RuntimeError("boom")

    actions = GraphQLWS(boom).receive(init())
    assert frames(actions[:1])[0]["type"] == "connection_error"
    assert actions[1:] == [Close(CloseCode.INTERNAL_ERROR, "internal error")]


def test_connection_init_with_non_object_payload_gets_connection_error_and_stays_open(fresh: GraphQLWS) -> None:
    assert frames(fresh.receive(init("token")))[0]["type"] == "connection_error"
    assert fresh.receive(init()) == [ACK, KA]


def test_repeated_connection_init_is_acknowledged_again_without_reauthorizing() -> None:
    calls: list[object] = []

    def counting(payload: dict[str, Any] | None) -> object:
        calls.append(payload)
        return "alice"

    machine = GraphQLWS(counting)
    machine.receive(init())
    assert machine.receive(init({"token": "other"})) == [ACK, KA]
    assert calls == [GOOD]


def test_nothing_happens_after_a_close(fresh: GraphQLWS) -> None:
    fresh.receive(init({"token": "bad"}))
    assert fresh.receive(init()) == []
    assert fresh.keepalive() == []
    assert fresh.init_timeout() == []


# --- unparsable and unknown frames -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["{nope", "", "[]", "5", "null", '"start"'])
def test_unparsable_frame_gets_connection_error_and_the_socket_stays_open(p: GraphQLWS, text: str) -> None:
    [error] = frames(p.receive(text))
    assert error["type"] == "connection_error" and isinstance(error["payload"]["message"], str)
    assert p.receive(start()) == [started()]


def test_unknown_type_gets_error_frame_invalid_message_type(p: GraphQLWS) -> None:
    assert frames(p.receive(msg(type="subscribe", id="7"))) == [
        {"type": "error", "id": "7", "payload": {"message": "Invalid message type!"}}
    ]


def test_unknown_type_without_id_gets_error_frame_without_id(p: GraphQLWS) -> None:
    assert frames(p.receive(msg(type="ping"))) == [{"type": "error", "payload": {"message": "Invalid message type!"}}]


def test_connection_terminate_closes_1000(p: GraphQLWS) -> None:
    assert p.receive(msg(type="connection_terminate")) == [Close(CloseCode.NORMAL, "connection_terminate")]


# --- start / stop ------------------------------------------------------------------------------------------


def test_start_after_ack_starts_the_operation(p: GraphQLWS) -> None:
    text = start("1", variables={"room": "lobby"}, operationName="Chat")
    assert p.receive(text) == [Start("1", SUB, {"room": "lobby"}, "Chat")]


def test_start_before_connection_init_waits_for_the_ack(fresh: GraphQLWS) -> None:
    assert fresh.receive(start("1")) == []
    assert fresh.receive(init()) == [ACK, KA, started("1")]


def test_stop_before_connection_init_is_applied_after_the_ack(fresh: GraphQLWS) -> None:
    fresh.receive(start("1"))
    fresh.receive(stop("1"))
    assert fresh.receive(init()) == [ACK, KA, started("1"), Stop("1"), complete_frame("1")]


def test_operations_sent_before_a_rejected_init_never_start(fresh: GraphQLWS) -> None:
    fresh.receive(start("1"))
    assert not any(isinstance(a, Start) for a in fresh.receive(init({"token": "bad"})))
    assert fresh.closed() == []


def test_too_many_operations_before_init_get_connection_error(fresh: GraphQLWS) -> None:
    for n in range(MAX_PENDING):
        assert fresh.receive(start(str(n))) == []
    assert frames(fresh.receive(start("overflow")))[0]["type"] == "connection_error"
    assert len(fresh.receive(init())) == 2 + MAX_PENDING


def test_start_with_an_active_id_stops_the_old_operation_first(p: GraphQLWS) -> None:
    p.receive(start("1"))
    assert p.receive(start("1", "{ books { isbn } }")) == [Stop("1"), Start("1", "{ books { isbn } }", None, None)]


BAD_STARTS = {
    "no payload": (msg(type="start", id="1"), "'payload'"),
    "no query": (msg(type="start", id="1", payload={}), "'query'"),
    "numeric query": (start("1", 5), "'query'"),
    "variables list": (start("1", variables=[1]), "'variables'"),
    "numeric operationName": (start("1", operationName=2), "'operationName'"),
}


@pytest.mark.parametrize(("text", "hint"), BAD_STARTS.values(), ids=BAD_STARTS.keys())
def test_start_that_cannot_run_gets_an_error_frame_for_its_id(p: GraphQLWS, text: str, hint: str) -> None:
    [error] = frames(p.receive(text))
    assert error["type"] == "error" and error["id"] == "1" and hint in error["payload"]["message"]
    assert p.closed() == []


def test_start_with_a_non_string_id_gets_an_error_frame_echoing_it(p: GraphQLWS) -> None:
    [error] = frames(p.receive(start(3)))
    assert error["type"] == "error" and error["id"] == 3


def test_stop_stops_the_operation_and_sends_complete(p: GraphQLWS) -> None:
    p.receive(start("1"))
    assert p.receive(stop("1")) == [Stop("1"), complete_frame("1")]
    assert p.next("1", '{"data":{}}') == []
    assert p.complete("1") == []


def test_stop_of_an_unknown_id_does_nothing(p: GraphQLWS) -> None:
    assert p.receive(stop("9")) == []


# --- data / error / complete -------------------------------------------------------------------------------


def test_data_splices_the_serialised_result_verbatim(p: GraphQLWS) -> None:
    p.receive(start("1"))
    result = '{"data": {"newBook": {"isbn": "x"}} , "extensions":{"recovered":false}}'
    [send] = p.next("1", result)
    assert isinstance(send, Send) and result in send.text
    assert json.loads(send.text) == {"type": "data", "id": "1", "payload": json.loads(result)}


def test_data_for_an_inactive_operation_sends_nothing(p: GraphQLWS) -> None:
    assert p.next("1", '{"data":{}}') == []


def test_error_carries_the_first_error_object_and_ends_the_operation(p: GraphQLWS) -> None:
    p.receive(start("1"))
    errors = '[{"message":"Cannot query field","locations":[{"line":1,"column":3}]},{"message":"second"}]'
    assert frames(p.error("1", errors)) == [
        {
            "type": "error",
            "id": "1",
            "payload": {"message": "Cannot query field", "locations": [{"line": 1, "column": 3}]},
        }
    ]
    assert p.complete("1") == []


@pytest.mark.parametrize("errors_json", ["[]", "not json", "[1]", '"x"'])
def test_error_with_unusable_errors_json_still_sends_an_error_object(p: GraphQLWS, errors_json: str) -> None:
    p.receive(start("1"))
    assert frames(p.error("1", errors_json))[0]["payload"] == {"message": "Unknown error"}


def test_complete_sends_complete_and_ends_the_operation(p: GraphQLWS) -> None:
    p.receive(start("1"))
    assert p.complete("1") == [complete_frame("1")]
    assert p.closed() == []


# --- keepalive and init timeout ----------------------------------------------------------------------------


def test_keepalive_before_ack_sends_nothing(fresh: GraphQLWS) -> None:
    assert fresh.keepalive() == []


def test_keepalive_after_ack_sends_ka(p: GraphQLWS) -> None:
    assert p.keepalive() == [KA]


def test_init_timeout_without_init_sends_connection_error_and_closes_4408(fresh: GraphQLWS) -> None:
    actions = fresh.init_timeout()
    assert frames(actions[:1])[0]["type"] == "connection_error"
    assert actions[1:] == [Close(CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT, "Connection initialisation timeout")]


def test_init_timeout_after_ack_does_nothing(p: GraphQLWS) -> None:
    assert p.init_timeout() == []


# --- disconnect --------------------------------------------------------------------------------------------


def test_closed_returns_the_operations_still_running(p: GraphQLWS) -> None:
    for op_id in "123":
        p.receive(start(op_id))
    p.receive(stop("2"))
    assert p.closed() == ["1", "3"]
    assert p.keepalive() == []


# --- what real clients accept ------------------------------------------------------------------------------


async def test_gql_apollo_client_reads_our_frames(p: GraphQLWS) -> None:
    # async: gql's transport takes the running event loop (a sync test would leave a new one unclosed)
    client = WebsocketsTransport(url="ws://127.0.0.1:1")
    for op_id in "12":
        p.receive(start(op_id))
    assert client._parse_answer_apollo(frames(p.keepalive())[0])[0] == "ka"
    assert client._parse_answer_apollo(frames(p.next("1", '{"data":{"a":1}}'))[0])[2].data == {"a": 1}  # type: ignore[union-attr]
    assert client._parse_answer_apollo(frames(p.complete("1"))[0])[0] == "complete"
    with pytest.raises(TransportQueryError):
        client._parse_answer_apollo(frames(p.error("2", '[{"message":"no"}]'))[0])
    with pytest.raises(TransportServerError):
        client._parse_answer_apollo(frames(GraphQLWS(authorize).receive(init({}))[:1])[0])


# --- never raises ------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["connection_init", "connection_terminate", "start", "stop", "data", "x"])},
    optional={
        "id": st.sampled_from(["1", "2", ""]) | json_values,
        "payload": st.fixed_dictionaries({"query": st.just(SUB) | json_values}, optional={"token": st.just("good")})
        | json_values,
    },
).map(json.dumps)
ticks = st.sampled_from(["init_timeout", "keepalive", "next", "error", "complete", "closed"])


def check(actions: list[Action]) -> None:
    assert isinstance(actions, list)
    for action in actions:
        assert isinstance(action, Send | Close | Start | Stop)
        if isinstance(action, Send):
            json.loads(action.text)


@settings(max_examples=300)
@given(st.text())
def test_random_text_never_raises(text: str) -> None:
    for machine in (GraphQLWS(authorize), GraphQLWS(lambda _: "anyone")):
        check(machine.receive(text))


@settings(max_examples=300)
@given(st.lists(messages | ticks | st.text(max_size=20), max_size=12), st.sampled_from(["1", "2"]))
def test_random_sessions_never_raise(steps: list[str], op_id: str) -> None:
    machine = GraphQLWS(lambda _: "anyone")
    for step in steps:
        if step in ("init_timeout", "keepalive"):
            check(getattr(machine, step)())
        elif step in ("next", "complete"):
            check(machine.next(op_id, '{"data":{}}') if step == "next" else machine.complete(op_id))
        elif step == "error":
            check(machine.error(op_id, '[{"message":"x"}]'))
        elif step == "closed":
            assert all(isinstance(i, str) for i in machine.closed())
        else:
            check(machine.receive(step))
