// herald/room.js: a chat room kept open across disconnects and resumed with `since` (SPEC §4, §10, §11).

import { HeraldError, RoomTracker, UNKNOWN_HINTS, classifyClose, newKey, pause } from "./rules.js";
import { Link, runSocket, runStream } from "./connection.js";

/** @typedef {import("../herald.js").Herald} Herald */
/** @typedef {import("./rules.js").Frame} Frame */
/** @typedef {import("./rules.js").State} State */
/** @typedef {import("./rules.js").Policy} Policy */

export class Room {
  /** @param {Herald} herald @param {string} name @param {any} options */
  constructor(herald, name, options) {
    this.herald = herald;
    this.name = name;
    this.options = options;
    /** @type {State} */
    this.state = "connecting";
    /** replica id of the current (or last) connection, from its welcome */
    this.replica = null;
    /** the user the server says we are (the token's sub with auth on) */
    this.me = herald.user || "anonymous";
    this.tracker = new RoomTracker(name, options.since ?? null);
    this.link = new Link(herald);
    this.requests = new Requests(herald.policy, herald.random);
    this.link.run(async () => {
      const ended = await this.connectOnce();
      if (!this.link.stopped) this.setState("connecting"); // while the next attempt waits too
      return ended;
    }, (err) => this.fail(err));
  }

  /** The offset to resume from later (`since`): the last message handed on, or where we joined. */
  get offset() { return this.tracker.resume; }

  /** "websocket" or "sse": what the current (or next) connection uses. */
  get transport() { return this.herald.usesSse ? "sse" : "websocket"; }

  /**
   * Publish `text`; resolves to its offset once the server acknowledged it. The idempotency key
   * (a fresh one by default) goes with every attempt: a send retried across a reconnect or after
   * `unavailable` is published at most once. Rejects with HeraldError "unavailable" (not
   * published), "outcome_unknown" (maybe published), "refused", "auth" or "closed".
   */
  async send(/** @type {string} */ text, { key = newKey() } = {}) {
    if (this.state === "closed") throw new HeraldError("closed", `room ${this.name} is closed`);
    if (this.transport === "sse") return this.herald.publish(this.name, text, { key });
    const answer = await this.requests.call({ type: "message", text, key }, key);
    return String(answer.id);
  }

  /** The users with an open connection in this room, cluster-wide (on SSE: GET /api/chat/{room}/presence). */
  async presence() {
    if (this.transport === "sse") return this.herald.presence(this.name);
    const answer = await this.requests.call({ type: "presence" }, null);
    return /** @type {string[]} */ (answer.users || []);
  }

  /** Close and stop reconnecting; pending requests fail with "closed". */
  close() {
    if (this.state === "closed") return;
    this.link.stop();
    this.requests.fail(new HeraldError("closed", `room ${this.name} closed`));
    this.setState("closed");
  }

  /** @param {HeraldError} err */
  fail(err) {
    this.requests.fail(err);
    this.setState("closed");
    if (this.options.onError) this.options.onError(err);
  }

  /** @param {State} state */
  setState(state) {
    if (state === this.state) return;
    this.state = state;
    if (this.options.onState) this.options.onState(state);
  }

  /** @param {Frame} frame */
  emit(frame) {
    if (frame.type === "gap" && this.options.onGap) this.options.onGap();
    if (this.options.onFrame) this.options.onFrame(frame);
  }

  /** @param {Frame} welcome */
  welcomed(welcome) {
    this.replica = welcome.replica;
    this.me = welcome.user;
    this.link.reconnector.connected();
    if (this.options.onWelcome) this.options.onWelcome(welcome);
    for (const frame of this.tracker.welcome(welcome)) this.emit(frame);
    this.setState("open");
  }

  /** @param {Frame} frame */
  received(frame) {
    if (frame.type === "message" || frame.type === "join" || frame.type === "leave") {
      if (this.tracker.accept(frame)) this.emit(frame);
    } else if (frame.type === "ack" || frame.type === "error" || frame.type === "presence" || frame.type === "pong") {
      this.requests.answer(frame);
    }
  }

  /** A request that waited for a socket that never opened, done over HTTP (after a fallback). */
  async overHttp(/** @type {any} */ frame) {
    if (frame.type === "presence") return { type: "presence", room: this.name, users: await this.herald.presence(this.name) };
    return { type: "ack", key: frame.key, id: await this.herald.publish(this.name, frame.text, { key: frame.key }) };
  }

  async connectOnce() {
    const herald = this.herald;
    const query = { user: herald.user, token: herald.token, since: this.tracker.resume };
    const path = `/${encodeURIComponent(this.name)}`;
    if (this.transport === "sse") {
      const handlers = { welcome: (/** @type {Frame} */ f) => this.welcomed(f) };
      for (const type of ["message", "join", "leave"]) Object.assign(handlers, { [type]: (/** @type {Frame} */ f) => this.received(f) });
      const { opened, code, reason } = await runStream(this.link, herald.url(`/sse/chat${path}`, query), handlers);
      if (!opened && code === undefined) return herald.diagnose(`/api/chat${path}/messages?limit=1`);
      return { kind: classifyClose(code), detail: `close ${code ?? "(none)"} ${reason}`, code };
    }
    let welcomed = false;
    const url = herald.url(`/ws/chat${path}`, query, true);
    const result = await runSocket(this.link, url, undefined, () => {}, (frame, send) => {
      if (!welcomed && frame.type === "welcome") {
        welcomed = true;
        this.welcomed(frame);
        this.requests.attach(send);
      } else if (welcomed) this.received(frame);
    }, () => this.requests.keepalive());
    this.requests.detach();
    if (!result.opened) {
      const diagnosis = await herald.diagnose(`/api/chat${path}/messages?limit=1`);
      // what waited for this socket goes over HTTP instead
      if (diagnosis.fallback) this.requests.handOver((frame) => this.overHttp(frame));
      return diagnosis;
    }
    if (herald.transport === "auto") herald.transport = "websocket"; // WebSockets pass: no fallback later
    return { kind: classifyClose(result.code), detail: `close ${result.code ?? "(none)"} ${result.reason}`, code: result.code };
  }
}

/**
 * Requests on a room's socket (send, presence): each is answered once, or fails clearly. A request
 * stays pending until answered; it is written on the current socket if there is one and re-sent,
 * in order, on every new one (a message keeps its idempotency key: published at most once). The
 * server handles one frame of a socket at a time, so answers without a key come back in order.
 */
export class Requests {
  /** @param {Policy} policy @param {() => number} random */
  constructor(policy, random) {
    this.policy = policy;
    this.random = random;
    /** @type {{frame: object, key: string | null, written: boolean, settle: (f: Frame | Error) => void}[]} */
    this.pending = [];
    /** @type {typeof this.pending} */
    this.inflight = [];
    /** @type {((frame: object) => boolean) | null} */
    this.send = null;
  }

  /** @param {object} frame @param {string | null} key @returns {Promise<Frame>} */
  async call(frame, key) {
    const deadline = Date.now() + this.policy.requestTimeoutMs;
    let unknown = false;
    /** @type {Frame} */
    let answer = { type: "error" };
    for (let attempt = 0; attempt < this.policy.requestAttempts; attempt++) {
      const request = { frame, key, written: false, settle: (/** @type {Frame | Error} */ _) => {} };
      const answered = new Promise((resolve) => { request.settle = resolve; });
      this.pending.push(request);
      this.write(request);
      const timeout = pause(Math.max(0, deadline - Date.now()));
      const got = await Promise.race([answered, timeout.done]);
      timeout.cancel();
      this.forget(request);
      if (got instanceof Error) throw got;
      if (got === undefined) {
        if (request.written || unknown) throw new HeraldError("outcome_unknown", "no answer in time: the outcome is unknown");
        throw new HeraldError("unavailable", "not connected in time; not sent");
      }
      answer = /** @type {Frame} */ (got);
      if (answer.type !== "error") return answer;
      if (answer.code === "unavailable") unknown = unknown || UNKNOWN_HINTS.some((h) => String(answer.detail).includes(h));
      else if (answer.code !== "rate_limited") throw new HeraldError("refused", `${answer.code}: ${answer.detail}`, answer.code);
      if (attempt + 1 < this.policy.requestAttempts) {
        await pause(Math.min(this.random() * this.policy.baseMs * 2 ** attempt, Math.max(0, deadline - Date.now()))).done;
      }
    }
    const detail = `${answer.code}: ${answer.detail} (after ${this.policy.requestAttempts} attempts)`;
    if (unknown) throw new HeraldError("outcome_unknown", detail, answer.code);
    throw new HeraldError(answer.code === "unavailable" ? "unavailable" : "refused", detail, answer.code);
  }

  /** @param {typeof this.pending[number]} request */
  write(request) {
    if (!this.send || this.inflight.includes(request)) return;
    if (this.send(request.frame)) {
      this.inflight.push(request);
      request.written = true;
    }
  }

  /** A new connection: every unanswered request goes out on it, in order, before anything new. */
  attach(/** @type {(frame: object) => boolean} */ send) {
    this.send = send;
    this.inflight = [];
    for (const request of this.pending) this.write(request);
  }

  /** The connection is gone: what was in flight is sent again on the next one. */
  detach() {
    this.send = null;
    this.inflight = [];
  }

  /** A keepalive ping: its pong comes back in order with the answers, so it holds its place too. */
  keepalive() {
    if (!this.send || !this.send({ type: "ping" })) return;
    this.inflight.push({ frame: {}, key: null, written: true, settle: () => {} });
  }

  /** After a fallback to SSE: every pending request is answered by `perform` instead. */
  handOver(/** @type {(frame: any) => Promise<Frame>} */ perform) {
    for (const request of this.pending) perform(request.frame).then(request.settle, request.settle);
    this.pending = [];
  }

  /** An ack (matched by key) or an error/presence/pong (the oldest in flight). */
  answer(/** @type {Frame} */ frame) {
    const request = frame.type === "ack" ? this.inflight.find((r) => r.key === frame.key) : this.inflight[0];
    if (!request) return;
    this.forget(request);
    request.settle(frame);
  }

  /** @param {typeof this.pending[number]} request */
  forget(request) {
    this.pending = this.pending.filter((r) => r !== request);
    this.inflight = this.inflight.filter((r) => r !== request);
  }

  fail(/** @type {Error} */ error) {
    for (const request of this.pending) request.settle(error);
    this.pending = [];
    this.inflight = [];
  }
}
