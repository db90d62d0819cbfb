"""One GraphQL WebSocket after the handshake: a machine (either subprotocol) driven over a ``Connection``.

The machine decides; this runner only performs its actions: ``Send`` pushes into the connection's bounded
queue, ``Start`` runs the operation in a task of its own, ``Stop`` leaves its stream and cancels that task,
and ``Close`` sends what precedes it (legacy ``connection_error``) and closes. A timer task raises the init
timeout and, for the legacy protocol, the ``ka`` keep-alives. Subscriptions join a shared stream
(``api.graphql.shared``), so their events arrive already executed, as one JSON text for every member.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

from graphql import DocumentNode, ExecutionResult, GraphQLError, OperationType
from starlette.websockets import WebSocket

from api.auth import Auth, Principal
from api.errors import CLOSE_CODE_EXPLANATIONS, CloseCode, HeraldError, RateLimited
from api.graphql.legacy_ws import GraphQLWS
from api.graphql.schema import Context
from api.graphql.service import GraphQLService, errors_json, result_json, stream_key
from api.graphql.shared import FellBehind, Membership
from api.graphql.transport_ws import GraphQLTransportWS
from api.graphql.types import Action, GraphQLWSMachine, Start, Stop
from api.identity import Access, identify
from api.limits import WriteLimits, writer_key
from api.models import over_limit
from api.settings import Settings
from api.ws.actions import Close, Send
from api.ws.connection import Connection
from broker import Unavailable

log = logging.getLogger(__name__)

END_TIMEOUT_S = 5.0


@dataclass(eq=False, slots=True)
class Operation:
    op_id: str
    task: asyncio.Task[None] | None = None
    membership: Membership | None = None

    def stop(self) -> None:
        # Leave first, synchronously: a restarted legacy id must not receive this run's results.
        if self.membership is not None:
            self.membership.leave()
        if self.task is not None:
            self.task.cancel()


class Session:
    def __init__(
        self,
        websocket: WebSocket,
        conn: Connection,
        *,
        service: GraphQLService,
        auth: Auth,
        write_limits: WriteLimits,
        settings: Settings,
        legacy: bool,
    ) -> None:
        self.websocket = websocket
        self.conn = conn
        self.service = service
        self.auth = auth
        self.write_limits = write_limits
        self.settings = settings
        self.legacy = legacy
        self.machine: GraphQLWSMachine = (GraphQLWS if legacy else GraphQLTransportWS)(self._authorize)
        self.principal: Principal | None = None
        self.ops: dict[str, Operation] = {}

    def _authorize(self, payload: dict[str, Any] | None) -> Principal | None:
        websocket = self.websocket
        try:
            principal = identify(self.auth, Access.SOCKET, websocket.query_params, websocket.headers, payload)
        except HeraldError:
            return None
        assert principal is not None  # a socket always has one
        self.principal, self.conn.user = principal, principal.user
        self.conn.expire_at(principal.expires_at, CloseCode.GQL_FORBIDDEN)
        return principal

    # -- the socket ------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        self.conn.start_writer()
        ticker = asyncio.create_task(self._tick(), name=f"herald-graphql-tick-{self.conn.id}")
        try:
            await self._receive_loop()
        finally:
            ticker.cancel()
            await asyncio.wait([ticker])

    async def _receive_loop(self) -> None:
        max_bytes = self.settings.max_message_bytes
        while not self.conn.closed:
            try:
                message = await self.conn.receive()
            except (OSError, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:  # graphql-ws reads a binary frame as its text too
                data = message.get("bytes") or b""
                too_big, text = len(data) > max_bytes, data.decode("utf-8", "replace")
            else:
                too_big = over_limit(text, max_bytes)
            if too_big:  # uvicorn enforces the byte limit itself (1009); this is the backstop for other servers
                await self.conn.close(CloseCode.MESSAGE_TOO_BIG, CLOSE_CODE_EXPLANATIONS[CloseCode.MESSAGE_TOO_BIG])
                return
            try:
                await self.apply(self.machine.receive(text))
            except Exception:
                log.exception("graphql connection %s failed", self.conn.id)
                self._fail()
                return

    async def _tick(self) -> None:
        """The init timeout, then (legacy only) a ``ka`` every HERALD_GRAPHQL_KEEPALIVE_S."""
        loop, settings = asyncio.get_running_loop(), self.settings
        init_at: float | None = loop.time() + settings.graphql_init_timeout_s
        every = settings.graphql_keepalive_s
        next_ka = loop.time() + every if self.legacy else math.inf
        try:
            while not self.conn.closed and (init_at is not None or next_ka < math.inf):
                await asyncio.sleep(max(0.0, min(init_at or math.inf, next_ka) - loop.time()))
                now = loop.time()
                if init_at is not None and now >= init_at:
                    init_at = None
                    await self.apply(self.machine.init_timeout())
                if now >= next_ka:
                    next_ka = now + every
                    await self.apply(self.machine.keepalive())
        except Exception:
            log.exception("graphql connection %s timer failed", self.conn.id)
            self._fail()

    async def apply(self, actions: list[Action]) -> None:
        close = next((action for action in actions if isinstance(action, Close)), None)
        if close is not None:
            # What precedes a close (legacy connection_error) must reach the client before it.
            await self.conn.stop_writer()
            for action in actions:
                if isinstance(action, Send):
                    with contextlib.suppress(OSError, RuntimeError):
                        await self.conn.send_now(action.text)
            await self.conn.close(close.code, close.reason)
            return
        for action in actions:
            if isinstance(action, Send):
                self.conn.push(action.text)
            elif isinstance(action, Start):
                limit = self.settings.graphql_max_operations
                if len(self.ops) >= limit:
                    refusal = GraphQLError(
                        f"too many operations on this socket (HERALD_GRAPHQL_MAX_OPERATIONS={limit})"
                    )
                    self._send(self.machine.error(action.op_id, errors_json([refusal])))
                    continue
                op = self.ops[action.op_id] = Operation(action.op_id)
                op.task = asyncio.create_task(self._run(op, action), name=f"herald-graphql-{self.conn.id}")
            elif isinstance(action, Stop):
                stopped = self.ops.pop(action.op_id, None)
                if stopped is not None:
                    stopped.stop()

    def _send(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.conn.push(action.text)

    def _fail(self) -> None:
        code = CloseCode.INTERNAL_ERROR if self.legacy else CloseCode.GQL_INTERNAL_SERVER_ERROR
        self.machine.closed()
        self.conn.close_soon(code, CLOSE_CODE_EXPLANATIONS[code])

    async def end(self) -> None:
        self.machine.closed()
        ops, self.ops = list(self.ops.values()), {}
        for op in ops:
            op.stop()
        tasks = [op.task for op in ops if op.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=END_TIMEOUT_S)

    # -- operations ------------------------------------------------------------------------------------------

    async def _run(self, op: Operation, start: Start) -> None:
        try:
            await self._operation(op, start)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("graphql operation %r on connection %s failed", start.op_id, self.conn.id)
            self._fail()
        finally:
            if op.membership is not None:
                op.membership.leave()
            if self.ops.get(op.op_id) is op:
                del self.ops[op.op_id]

    async def _operation(self, op: Operation, start: Start) -> None:
        prepared = self.service.prepare(start.query)
        errors = prepared.errors or prepared.operation_errors(start.operation_name)
        if errors or prepared.document is None:
            self._request_errors(start.op_id, errors)
            return
        operation = prepared.operation(start.operation_name)
        context = self.service.context(self.principal)
        if operation is not None and operation.operation is OperationType.SUBSCRIPTION:
            await self._subscription(op, start, prepared.document, context)
            return
        if operation is not None and operation.operation is OperationType.MUTATION and self.principal is not None:
            client = self.websocket.client.host if self.websocket.client else None
            try:
                self.write_limits.take(writer_key(self.principal.user, client, self.auth.enabled))
            except RateLimited as exc:  # an error result for this operation; the socket stays open
                limited = ExecutionResult(None, [GraphQLError(exc.detail, extensions={"code": exc.error_code})])
                self._send(self.machine.next(start.op_id, result_json(limited)))
                self._send(self.machine.complete(start.op_id))
                return
        result = await self.service.execute(prepared.document, start.variables, start.operation_name, context)
        self._send(self.machine.next(start.op_id, result_json(result)))
        self._send(self.machine.complete(start.op_id))

    def _request_errors(self, op_id: str, errors: list[GraphQLError]) -> None:
        """Errors before execution: graphql-transport-ws ``error``; legacy ``data`` + ``complete``, as its server."""
        if self.legacy:
            self._send(self.machine.next(op_id, '{"errors":' + errors_json(errors) + "}"))
            self._send(self.machine.complete(op_id))
        else:
            self._send(self.machine.error(op_id, errors_json(errors)))

    async def _subscription(self, op: Operation, start: Start, document: DocumentNode, context: Context) -> None:
        op_id, service = start.op_id, self.service
        source = await service.source(document, start.variables, start.operation_name, context)
        if isinstance(source, ExecutionResult):  # the subscribe resolver refused (bad room, bad since...)
            self._send(self.machine.next(op_id, result_json(source)))
            self._send(self.machine.complete(op_id))
            return
        channels = self.principal.channels if self.principal is not None else None
        key = stream_key(start.query, start.operation_name, start.variables, channels)
        run = service.runner(document, start.variables, start.operation_name, context)

        def deliver(result: str) -> None:
            self._send(self.machine.next(op_id, result))

        slow_close_s = self.settings.slow_close_s

        async def replay(result: str) -> None:
            for action in self.machine.next(op_id, result):
                if isinstance(action, Send):
                    try:
                        async with asyncio.timeout(slow_close_s):
                            await self.conn.put(action.text)
                    except TimeoutError:
                        raise FellBehind(f"replay not read within {slow_close_s:g} s") from None

        try:
            op.membership = await service.subscribe(source, run, key, deliver, replay)
        except Unavailable as exc:
            self._send(self.machine.next(op_id, result_json(ExecutionResult(None, [GraphQLError(str(exc))]))))
            self._send(self.machine.complete(op_id))
            return
        except FellBehind as exc:
            self.conn.close_soon(CloseCode.TRY_AGAIN_LATER, f"slow consumer: {exc}")
            return
        await asyncio.get_running_loop().create_future()  # live until stopped: Stop or the socket's end cancel us
