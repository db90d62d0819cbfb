// herald/subscription.js: a GraphQL subscription over graphql-transport-ws (enisdenjo/graphql-ws
// PROTOCOL.md), or graphql-sse after a fallback, resumed with `since` when the operation declares it.

import { HeraldError, SubscriptionTracker, classifyClose } from "./rules.js";
import { Link, runSocket, runStream } from "./connection.js";

/** @typedef {import("../herald.js").Herald} Herald */
/** @typedef {import("./rules.js").State} State */

const GRAPHQL_WS = "graphql-transport-ws";
const OPERATION_ID = "1";

/** One subscription, on its own socket (or stream): when it drops, the operation is sent again. */
export class Subscription {
  /** @param {Herald} herald @param {string} query @param {Record<string, any>} variables @param {any} sink */
  constructor(herald, query, variables, sink) {
    this.herald = herald;
    this.query = query;
    this.sink = sink;
    /** @type {State} */
    this.state = "connecting";
    this.tracker = new SubscriptionTracker(query, variables);
    this.link = new Link(herald);
    this.link.run(async () => {
      const ended = await this.connectOnce();
      if (!this.link.stopped) this.setState("connecting");
      return ended;
    }, (err) => {
      this.setState("closed");
      if (this.sink.error) this.sink.error(err);
    });
  }

  stop() {
    this.link.stop();
    this.setState("closed");
  }

  /** @param {State} state */
  setState(state) {
    if (state === this.state) return;
    this.state = state;
    if (this.sink.onState) this.sink.onState(state);
  }

  live() {
    this.link.reconnector.connected();
    this.setState("open");
  }

  /** @param {any} result */
  next(result) {
    if (this.tracker.accept(result) && this.sink.next) this.sink.next(result);
  }

  /** The server ended the operation: no reconnect. */
  finish(/** @type {HeraldError | null} */ error) {
    this.link.stop();
    this.setState("closed");
    if (error && this.sink.error) this.sink.error(error);
    if (!error && this.sink.complete) this.sink.complete();
  }

  async connectOnce() {
    const herald = this.herald;
    const variables = this.tracker.variablesForNextAttempt();
    if (herald.usesSse) {
      const url = herald.url("/graphql/stream", { query: this.query, variables: JSON.stringify(variables), token: herald.token });
      const { opened, code, reason } = await runStream(this.link, url, {
        open: () => this.live(),
        next: (result) => this.next(result),
        complete: () => this.finish(null),
      });
      if (!opened && code === undefined) return herald.diagnose("/health");
      return { kind: classifyClose(code), detail: `stream ended ${reason}`, code };
    }
    const result = await runSocket(this.link, herald.url("/graphql", {}, true), GRAPHQL_WS,
      (send) => send({ type: "connection_init", payload: herald.token ? { token: herald.token } : {} }),
      (message, send) => {
        if (message.type === "connection_ack") {
          this.live();
          send({ type: "subscribe", id: OPERATION_ID, payload: { query: this.query, variables } });
        } else if (message.type === "ping") send({ type: "pong" });
        else if (message.id !== OPERATION_ID) return;
        else if (message.type === "next") this.next(message.payload);
        else if (message.type === "error") this.finish(new HeraldError("graphql", [].concat(message.payload || []).map((e) => e.message).join("; ")));
        else if (message.type === "complete") this.finish(null);
      }, (send) => send({ type: "ping" }));
    if (!result.opened) return herald.diagnose("/health");
    if (herald.transport === "auto") herald.transport = "websocket";
    return { kind: classifyClose(result.code), detail: `close ${result.code ?? "(none)"} ${result.reason}`, code: result.code };
  }
}
