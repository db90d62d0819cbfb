"""graphql-transport-ws machine, one PROTOCOL.md rule per test (enisdenjo/graphql-ws)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from hypothesis import given, settings
from hypothesis import strategies as st

from api.errors import CLOSE_CODE_EXPLANATIONS, CloseCode
from api.graphql.transport_ws import MAX_CLOSE_REASON_BYTES, GraphQLTransportWS
from api.graphql.types import Action, Start, Stop
from api.ws.actions import Close, Send

GOOD = {"token": "good"}
SUB = "subscription { newBook { isbn } }"


def authorize(payload: dict[str, Any] | None) -> object | None:
    return "alice" if payload is not None and payload.get("token") == "good" else None


def msg(**fields: Any) -> str:
    return json.dumps(fields)


def init(payload: Any = GOOD) -> str:
    return msg(type="connection_init", payload=payload)


def subscribe(op_id: Any = "1", query: str = SUB, **payload: Any) -> str:
    return msg(type="subscribe", id=op_id, payload={"query": query, **payload})


def frames(actions: list[Action]) -> list[dict[str, Any]]:
    assert all(isinstance(a, Send) for a in actions), actions
    return [json.loads(a.text) for a in actions if isinstance(a, Send)]


def closes(actions: list[Action], code: CloseCode) -> str:
    assert len(actions) == 1, actions
    action = actions[0]
    assert isinstance(action, Close) and action.code == code, actions
    return action.reason


@pytest.fixture
def fresh() -> GraphQLTransportWS:
    return GraphQLTransportWS(authorize)


@pytest.fixture
def p() -> GraphQLTransportWS:
    machine = GraphQLTransportWS(authorize)
    machine.receive(init())
    return machine


# --- connection_init ---------------------------------------------------------------------------------------


def test_accepted_connection_init_sends_ack_without_payload(fresh: GraphQLTransportWS) -> None:
    assert fresh.receive(init()) == [Send('{"type":"connection_ack"}')]


def test_accepted_connection_init_sets_principal(fresh: GraphQLTransportWS) -> None:
    fresh.receive(init())
    assert fresh.principal == "alice"


@pytest.mark.parametrize("text", ['{"type":"connection_init"}', '{"type":"connection_init","payload":null}'])
def test_connection_init_without_payload_authorizes_none(text: str) -> None:
    seen: list[object] = []
    GraphQLTransportWS(lambda payload: seen.append(payload)).receive(text)
    assert seen == [None]


def test_rejected_connection_init_closes_4403_forbidden(fresh: GraphQLTransportWS) -> None:
    assert closes(fresh.receive(init({"token": "bad"})), CloseCode.GQL_FORBIDDEN) == "Forbidden"
    assert fresh.principal is None


@pytest.mark.parametrize("payload", ["token", ["token"], 1, True])
def test_connection_init_with_non_object_payload_closes_4400(fresh: GraphQLTransportWS, payload: Any) -> None:
    reason = closes(fresh.receive(init(payload)), CloseCode.GQL_BAD_REQUEST)
    assert "payload" in reason


def test_second_connection_init_closes_4429(p: GraphQLTransportWS) -> None:
    reason = closes(p.receive(init()), CloseCode.GQL_TOO_MANY_INITIALISATION_REQUESTS)
    assert reason == "Too many initialisation requests"


def test_authorizer_that_raises_closes_4500(fresh: GraphQLTransportWS) -> None:
    def boom(payload: dict[str, Any] | None) -> object:
        raise RuntimeError("boom")

    closes(GraphQLTransportWS(boom).receive(init()), CloseCode.GQL_INTERNAL_SERVER_ERROR)


def test_nothing_happens_after_a_close(fresh: GraphQLTransportWS) -> None:
    fresh.receive(init({"token": "bad"}))
    assert fresh.receive(init()) == []
    assert fresh.receive(msg(type="ping")) == []
    assert fresh.init_timeout() == []


# --- init timeout ------------------------------------------------------------------------------------------


def test_init_timeout_without_connection_init_closes_4408(fresh: GraphQLTransportWS) -> None:
    reason = closes(fresh.init_timeout(), CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT)
    assert reason == "Connection initialisation timeout"


def test_init_timeout_after_ack_does_nothing(p: GraphQLTransportWS) -> None:
    assert p.init_timeout() == []


def test_init_timeout_is_not_stopped_by_pings(fresh: GraphQLTransportWS) -> None:
    fresh.receive(msg(type="ping"))
    closes(fresh.init_timeout(), CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT)


# --- ping / pong -------------------------------------------------------------------------------------------


def test_ping_gets_pong(p: GraphQLTransportWS) -> None:
    assert p.receive(msg(type="ping")) == [Send('{"type":"pong"}')]


def test_ping_payload_is_echoed_in_pong(p: GraphQLTransportWS) -> None:
    assert frames(p.receive(msg(type="ping", payload={"n": 1}))) == [{"type": "pong", "payload": {"n": 1}}]


def test_ping_before_connection_init_gets_pong(fresh: GraphQLTransportWS) -> None:
    assert frames(fresh.receive(msg(type="ping"))) == [{"type": "pong"}]


def test_pong_from_client_is_ignored(fresh: GraphQLTransportWS) -> None:
    assert fresh.receive(msg(type="pong", payload={"n": 1})) == []


def test_keepalive_sends_nothing(p: GraphQLTransportWS) -> None:
    assert p.keepalive() == []


# --- subscribe ---------------------------------------------------------------------------------------------


def test_subscribe_before_ack_closes_4401(fresh: GraphQLTransportWS) -> None:
    assert closes(fresh.receive(subscribe()), CloseCode.GQL_UNAUTHORIZED) == "Unauthorized"


def test_invalid_subscribe_before_ack_closes_4400_not_4401(fresh: GraphQLTransportWS) -> None:
    closes(fresh.receive(msg(type="subscribe", id="1")), CloseCode.GQL_BAD_REQUEST)


def test_subscribe_after_ack_starts_the_operation(p: GraphQLTransportWS) -> None:
    text = subscribe("1", variables={"since": "1-0"}, operationName="Books", extensions={"x": 1})
    assert p.receive(text) == [Start("1", SUB, {"since": "1-0"}, "Books")]


def test_subscribe_without_variables_or_name_starts_with_none(p: GraphQLTransportWS) -> None:
    assert p.receive(subscribe("1", variables=None, operationName=None)) == [Start("1", SUB, None, None)]


def test_subscribe_with_active_id_closes_4409(p: GraphQLTransportWS) -> None:
    p.receive(subscribe("1"))
    reason = closes(p.receive(subscribe("1")), CloseCode.GQL_SUBSCRIBER_ALREADY_EXISTS)
    assert reason == "Subscriber for 1 already exists"


def test_4409_reason_with_a_huge_id_still_fits_a_close_frame(p: GraphQLTransportWS) -> None:
    p.receive(subscribe("é" * 200))
    reason = closes(p.receive(subscribe("é" * 200)), CloseCode.GQL_SUBSCRIBER_ALREADY_EXISTS)
    assert reason == CLOSE_CODE_EXPLANATIONS[CloseCode.GQL_SUBSCRIBER_ALREADY_EXISTS]


def test_id_of_a_completed_operation_can_be_reused(p: GraphQLTransportWS) -> None:
    p.receive(subscribe("1"))
    p.complete("1")
    assert p.receive(subscribe("1")) == [Start("1", SUB, None, None)]


def test_id_of_an_errored_operation_can_be_reused(p: GraphQLTransportWS) -> None:
    p.receive(subscribe("1"))
    p.error("1", '[{"message":"no"}]')
    assert p.receive(subscribe("1")) == [Start("1", SUB, None, None)]


# --- invalid messages --------------------------------------------------------------------------------------

INVALID = {
    "not JSON": ("{nope", "JSON"),
    "JSON array": ("[]", "object"),
    "JSON string": ('"connection_init"', "object"),
    "missing type": ("{}", "type"),
    "empty type": ('{"type":""}', "type"),
    "numeric type": ('{"type":1}', "string"),
    "unknown type": ('{"type":"start","id":"1"}', "start"),
    "server type next": ('{"type":"next","id":"1","payload":{}}', "next"),
    "ping payload string": ('{"type":"ping","payload":"x"}', "payload"),
    "subscribe without id": (msg(type="subscribe", payload={"query": SUB}), "'id'"),
    "subscribe numeric id": (subscribe(1), "'id'"),
    "subscribe empty id": (subscribe(""), "non-empty"),
    "subscribe without payload": (msg(type="subscribe", id="1"), "'payload'"),
    "subscribe without query": (msg(type="subscribe", id="1", payload={}), "'query'"),
    "subscribe numeric query": (msg(type="subscribe", id="1", payload={"query": 1}), "'query'"),
    "subscribe variables array": (subscribe("1", variables=[1]), "'variables'"),
    "subscribe numeric operationName": (subscribe("1", operationName=1), "'operationName'"),
    "subscribe extensions string": (subscribe("1", extensions="x"), "'extensions'"),
    "complete without id": (msg(type="complete"), "'id'"),
}


@pytest.mark.parametrize(("text", "hint"), INVALID.values(), ids=INVALID.keys())
def test_invalid_message_closes_4400_with_a_helpful_reason(p: GraphQLTransportWS, text: str, hint: str) -> None:
    assert hint in closes(p.receive(text), CloseCode.GQL_BAD_REQUEST)


def test_invalid_message_before_connection_init_closes_4400(fresh: GraphQLTransportWS) -> None:
    closes(fresh.receive("{nope"), CloseCode.GQL_BAD_REQUEST)


def test_overlong_invalid_type_falls_back_to_the_standard_reason(p: GraphQLTransportWS) -> None:
    reason = closes(p.receive(msg(type="x" * 500)), CloseCode.GQL_BAD_REQUEST)
    assert reason == "Invalid message received"


# --- complete, both ways -----------------------------------------------------------------------------------


def test_client_complete_stops_the_operation(p: GraphQLTransportWS) -> None:
    p.receive(subscribe("1"))
    assert p.receive(msg(type="complete", id="1")) == [Stop("1")]


def test_no_server_complete_or_next_after_client_complete(p: GraphQLTransportWS) -> None:
    p.receive(subscribe("1"))
    p.receive(msg(type="complete", id="1"))
    assert p.next("1", '{"data":{}}') == []
    assert p.complete("1") == []


def test_client_complete_of_unknown_id_is_ignored(p: GraphQLTransportWS) -> None:
    assert p.receive(msg(type="complete", id="9")) == []


def test_server_complete_sends_complete_once(p: GraphQLTransportWS) -> None:
    p.receive(subscribe("1"))
    assert frames(p.complete("1")) == [{"id": "1", "type": "complete"}]
    assert p.complete("1") == []


# --- next / error ------------------------------------------------------------------------------------------


def test_next_splices_the_serialised_result_verbatim(p: GraphQLTransportWS) -> None:
    p.receive(subscribe("1"))
    result = '{"data": {"newBook": {"isbn": "x"}} , "extensions":{"recovered":false}}'
    [send] = p.next("1", result)
    assert isinstance(send, Send) and result in send.text
    assert json.loads(send.text) == {"id": "1", "type": "next", "payload": json.loads(result)}


def test_next_escapes_the_operation_id(p: GraphQLTransportWS) -> None:
    p.receive(subscribe('a"b\\'))
    assert frames(p.next('a"b\\', '{"data":null}'))[0]["id"] == 'a"b\\'


def test_next_for_an_inactive_operation_sends_nothing(p: GraphQLTransportWS) -> None:
    assert p.next("1", '{"data":{}}') == []


def test_error_sends_error_list_and_ends_the_operation_without_complete(p: GraphQLTransportWS) -> None:
    p.receive(subscribe("1"))
    errors = '[{"message":"Cannot query field"}]'
    assert frames(p.error("1", errors)) == [
        {"id": "1", "type": "error", "payload": [{"message": "Cannot query field"}]}
    ]
    assert p.complete("1") == []
    assert p.closed() == []


# --- disconnect --------------------------------------------------------------------------------------------


def test_closed_returns_the_operations_still_running(p: GraphQLTransportWS) -> None:
    for op_id in "123":
        p.receive(subscribe(op_id))
    p.complete("2")
    assert p.closed() == ["1", "3"]
    assert p.next("1", '{"data":{}}') == []


def test_closed_after_a_4409_still_returns_the_running_operation(p: GraphQLTransportWS) -> None:
    p.receive(subscribe("1"))
    p.receive(subscribe("1"))
    assert p.closed() == ["1"]


# --- what real clients accept ------------------------------------------------------------------------------


async def test_gql_client_reads_our_next_error_and_complete_frames(p: GraphQLTransportWS) -> None:
    # async: gql's transport takes the running event loop (a sync test would leave a new one unclosed)
    client = WebsocketsTransport(url="ws://127.0.0.1:1")
    for op_id in "12":
        p.receive(subscribe(op_id))
    [next_frame] = frames(p.next("1", '{"data":{"a":1}}'))
    assert client._parse_answer_graphqlws(next_frame)[2].data == {"a": 1}  # type: ignore[union-attr]
    assert client._parse_answer_graphqlws(frames(p.complete("1"))[0])[0] == "complete"
    with pytest.raises(TransportQueryError):
        client._parse_answer_graphqlws(frames(p.error("2", '[{"message":"no"}]'))[0])


# --- never raises ------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["connection_init", "ping", "pong", "subscribe", "complete", "next", "x"])},
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
        if isinstance(action, Close):
            assert len(action.reason.encode()) <= MAX_CLOSE_REASON_BYTES


@settings(max_examples=300)
@given(st.text())
def test_random_text_never_raises(text: str) -> None:
    for machine in (GraphQLTransportWS(authorize), GraphQLTransportWS(lambda _: "anyone")):
        check(machine.receive(text))


@settings(max_examples=300)
@given(st.lists(messages | ticks | st.text(max_size=20), max_size=12), st.sampled_from(["1", "2"]))
def test_random_sessions_never_raise(steps: list[str], op_id: str) -> None:
    machine = GraphQLTransportWS(lambda _: "anyone")
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
