// herald.js: Herald's JavaScript client (SPEC §11). An ES module, no build step, no dependencies:
//   import { Herald } from "/static/herald.js";
//
// Chat rooms (send, receive, presence) and GraphQL subscriptions that never lose their place:
// every room and subscription remembers the offset of the last event it handed on and, on any
// disconnect, reconnects with full-jitter backoff and resumes with `since`, so the application
// sees every event once, in order. `recovered: false` is told (onGap), never hidden.
//
// Transport: a WebSocket first. When a WebSocket cannot be opened but the server answers plain
// HTTP (a proxy that does not pass upgrades), the Herald object switches to server-sent events
// for good: rooms read /sse/chat/{room} through EventSource and write with POST; subscriptions
// read /graphql/stream (graphql-sse). Reconnects stay the client's own on both transports (it
// resumes with `since`, not EventSource's Last-Event-ID retry), so the rules below hold on both.
//
// Reconnect rules (decided by classifyClose/classifyStatus and Reconnector, plain functions):
// - network loss, 1000/1001/1006/1011, 4010 ("resume with since"): retry, delay uniform(0, step),
//   step 0.5 s doubling to 20 s, reset after each successful connection;
// - 1012 (the replica drains): the first attempt waits uniform(0, 3 s), so the drained replica's
//   clients reach the survivors spread out, not in one burst;
// - 1013 (replica full, or this client too slow): wait at least 5 s;
// - 401/403 (refused handshake), 1008, 4403: never again with this token (onError, state "closed");
//   set `herald.token` and open the room again with `since: room.offset`;
// - 1009, 4400, 4401, 4406, 4409, 4429, HTTP 400/404/422: the same request would fail again: stop.
//
// Works in browsers and in Node 22+ (pass `EventSource` from the npm `eventsource` package there).

/** @typedef {{type: string, [field: string]: any}} Frame  a chat frame of SPEC §4 (or {type: "gap", room}) */
/** @typedef {"connecting" | "open" | "closed"} State */
/** @typedef {"auto" | "websocket" | "sse"} TransportChoice */
/**
 * @typedef {object} Policy  the reconnect schedule; every delay is drawn with full jitter
 * @property {number} baseMs           first backoff step (doubles after every failed attempt)
 * @property {number} capMs            largest backoff step
 * @property {number} tryAgainLaterMs  least wait after 1013
 * @property {number} restartSpreadMs  after 1012 the first attempt waits uniform(0, this); 0: no spread
 * @property {number} requestTimeoutMs a send/presence with no answer by then fails
 * @property {number} requestAttempts  attempts of a send answered `unavailable`/`rate_limited`
 * @property {number} pingEveryMs      a WebSocket that answered nothing since the last ping is dropped
 */

/** @type {Readonly<Policy>} */
export const DEFAULT_POLICY = Object.freeze({
  baseMs: 500,
  capMs: 20000,
  tryAgainLaterMs: 5000,
  restartSpreadMs: 3000,
  requestTimeoutMs: 30000,
  requestAttempts: 4,
  pingEveryMs: 20000,
});

/** Close codes the client acts on (the server's api/errors.py CloseCode). */
export const CloseCode = Object.freeze({
  NORMAL: 1000, GOING_AWAY: 1001, ABNORMAL: 1006, POLICY_VIOLATION: 1008, MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011, SERVICE_RESTART: 1012, TRY_AGAIN_LATER: 1013, INSUFFICIENT_STATE: 4010,
  GQL_BAD_REQUEST: 4400, GQL_UNAUTHORIZED: 4401, GQL_FORBIDDEN: 4403, GQL_SUBPROTOCOL_NOT_ACCEPTABLE: 4406,
  GQL_SUBSCRIBER_ALREADY_EXISTS: 4409, GQL_TOO_MANY_INITIALISATION_REQUESTS: 4429,
});

/** What a disconnect means for the next attempt. */
export const Disconnect = Object.freeze({
  RETRY: "retry", RESTART: "restart", OVERLOAD: "overload", AUTH: "auth", FATAL: "fatal",
});

const AUTH_CODES = new Set([CloseCode.POLICY_VIOLATION, CloseCode.GQL_FORBIDDEN]);
// 4401 is graphql-transport-ws's "subscribe before ack": a client bug, not a token problem
const FATAL_CODES = new Set([
  CloseCode.MESSAGE_TOO_BIG, CloseCode.GQL_BAD_REQUEST, CloseCode.GQL_UNAUTHORIZED,
  CloseCode.GQL_SUBPROTOCOL_NOT_ACCEPTABLE, CloseCode.GQL_SUBSCRIBER_ALREADY_EXISTS,
  CloseCode.GQL_TOO_MANY_INITIALISATION_REQUESTS,
]);

/** @param {number | undefined} code a close code (undefined: the connection broke without one) */
export function classifyClose(code) {
  if (code === CloseCode.SERVICE_RESTART) return Disconnect.RESTART;
  if (code === CloseCode.TRY_AGAIN_LATER) return Disconnect.OVERLOAD;
  if (code !== undefined && AUTH_CODES.has(code)) return Disconnect.AUTH;
  if (code !== undefined && FATAL_CODES.has(code)) return Disconnect.FATAL;
  return Disconnect.RETRY;
}

/** @param {number} status an HTTP status refusing a handshake or a stream */
export function classifyStatus(status) {
  if (status === 401 || status === 403) return Disconnect.AUTH;
  if (status === 400 || status === 404 || status === 422) return Disconnect.FATAL;
  if (status === 429) return Disconnect.OVERLOAD;
  return Disconnect.RETRY;
}

/**
 * What the client raises or reports. `kind`: "auth" (new token needed), "protocol" (retrying
 * cannot help), "refused" (an error frame: bad_request, forbidden, rate_limited after retries),
 * "graphql" (a subscription's errors), "unavailable" (not published), "outcome_unknown" (maybe
 * published: retry with the same key), "closed" (the room was closed), "unsupported".
 */
export class HeraldError extends Error {
  /** @param {string} kind @param {string} message @param {number | string} [code] */
  constructor(kind, message, code) {
    super(message);
    this.name = "HeraldError";
    this.kind = kind;
    this.code = code;
  }
}

/** Seconds-free backoff state of one logical connection. */
export class Reconnector {
  /** @param {Policy} policy @param {() => number} [random] */
  constructor(policy, random = Math.random) {
    this.policy = policy;
    this.random = random;
    /** failed attempts since the last successful connection */
    this.attempt = 0;
  }

  connected() { this.attempt = 0; }

  /** The next full-jitter delay: uniform(0, min(cap, base * 2**attempt)). */
  step() {
    const ceiling = Math.min(this.policy.capMs, this.policy.baseMs * 2 ** this.attempt);
    this.attempt += 1;
    return this.random() * ceiling;
  }

  /** Milliseconds before the next attempt; throws a HeraldError when there must be none. */
  nextDelay(/** @type {string} */ kind, detail = "", /** @type {number | undefined} */ code = undefined) {
    if (kind === Disconnect.AUTH) {
      throw new HeraldError("auth", `the server refused the token (${detail}); set a new token to reconnect`, code);
    }
    if (kind === Disconnect.FATAL) throw new HeraldError("protocol", `the server refused: ${detail}`, code);
    const first = this.attempt === 0;
    const step = this.step();
    if (kind === Disconnect.OVERLOAD) return this.policy.tryAgainLaterMs + step;
    if (kind === Disconnect.RESTART && first) return this.random() * this.policy.restartSpreadMs;
    return step;
  }
}

// ---------------------------------------------------------------- offsets and positions

const OFFSET_RE = /^(\d+)(?:-(\d+))?$/;

/** "<ms>-<seq>" (or "0") as [ms, seq], ordered as the stream is ("1-10" after "1-9"); null if not one. */
export function parseOffset(/** @type {unknown} */ offset) {
  const m = typeof offset === "string" ? OFFSET_RE.exec(offset) : null;
  return m ? [BigInt(m[1]), BigInt(m[2] ?? "0")] : null;
}

/** -1, 0 or 1 as offset `a` comes before, is, or comes after `b`. Never compare offsets as strings. */
export function compareOffsets(/** @type {string} */ a, /** @type {string} */ b) {
  const x = parseOffset(a), y = parseOffset(b);
  if (!x || !y) throw new TypeError(`not offsets: ${a}, ${b}`);
  if (x[0] !== y[0]) return x[0] < y[0] ? -1 : 1;
  return x[1] === y[1] ? 0 : x[1] < y[1] ? -1 : 1;
}

const isEventOffset = (/** @type {unknown} */ v) => typeof v === "string" && v.includes("-") && parseOffset(v) !== null;

/** One room's position: the resume point, the duplicate filter and gap detection (as herald_client's). */
export class RoomTracker {
  /** @param {string} room @param {string | null} [since] */
  constructor(room, since = null) {
    this.room = room;
    /** the `since` of the next connection: the newest message handed on, or where the welcome put us */
    this.resume = since ?? null;
    this._last = since != null ? parseOffset(since) : null;
    this._gapTold = false;
  }

  /** A welcome -> what the application sees before anything else ([] or [the gap frame]). */
  welcome(/** @type {Frame} */ frame) {
    /** @type {Frame[]} */
    const out = [];
    if (frame.recovered === false) {
      if (!this._gapTold) out.push({ type: "gap", room: this.room });
      this._gapTold = true;
      // After a gap every retained event is new, whatever its offset; "0" reaches all of them,
      // so a connection lost before the next message does not report the gap twice.
      this.resume = "0";
      this._last = null;
    }
    if (this.resume === null) {
      // First connection: resume from the room's newest event as of now ("0" for an empty room).
      this.resume = typeof frame.offset === "string" ? frame.offset : "0";
      this._last = parseOffset(this.resume);
    }
    return out;
  }

  /** Whether the application should see this frame (false: a message already handed on). */
  accept(/** @type {Frame} */ frame) {
    if (frame.type !== "message" || !isEventOffset(frame.id)) return true;
    const position = parseOffset(frame.id);
    if (this._last && position && cmp(position, this._last) <= 0) return false;
    this._last = position;
    this.resume = frame.id;
    this._gapTold = false;
    return true;
  }
}

/** @param {bigint[]} x @param {bigint[]} y */
const cmp = (x, y) => (x[0] !== y[0] ? (x[0] < y[0] ? -1 : 1) : x[1] === y[1] ? 0 : x[1] < y[1] ? -1 : 1);

/** A GraphQL subscription's position, when its operation declares `$since` (newBook, chatMessage). */
export class SubscriptionTracker {
  /** @param {string} query @param {Record<string, any> | undefined} variables */
  constructor(query, variables) {
    this.variables = { ...(variables || {}) };
    this.resumable = /\$since\s*:/.test(query);
    this.resume = typeof this.variables.since === "string" ? this.variables.since : null;
    this._last = parseOffset(this.resume);
  }

  variablesForNextAttempt() {
    return this.resumable && this.resume !== null ? { ...this.variables, since: this.resume } : { ...this.variables };
  }

  /** Whether the application should see this result (false: seen before a reconnect). */
  accept(/** @type {any} */ result) {
    const data = result && result.data;
    const root = data && typeof data === "object" && Object.keys(data).length === 1 ? Object.values(data)[0] : null;
    const offset = root && [root.offset, root.id].find(isEventOffset);
    if (!offset) return true;
    const position = /** @type {bigint[]} */ (parseOffset(offset));
    if (this._last && cmp(position, this._last) <= 0) return false;
    this._last = position;
    this.resume = offset;
    return true;
  }
}

// ---------------------------------------------------------------- the client

const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/; // SPEC §3
const GRAPHQL_WS = "graphql-transport-ws";
const UNKNOWN_HINTS = ["unknown", "may or may not"];

/** A pause that `cancel()` ends early (a room closed while it waited). */
function pause(/** @type {number} */ ms) {
  let cancel = () => {};
  const done = new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    cancel = () => { clearTimeout(timer); resolve(undefined); };
  });
  return { done, cancel: () => cancel() };
}

/** A fresh idempotency key (crypto.randomUUID needs a secure context; getRandomValues does not). */
function newKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Herald {
  /**
   * @param {object} options
   * @param {string} options.url       the deployment, e.g. location.origin or "http://127.0.0.1:8000"
   * @param {string} [options.token]   a JWT (auth on); replace it after an "auth" error, then reopen
   * @param {string} [options.user]    the display name when auth is off
   * @param {TransportChoice} [options.transport] "auto" (WebSocket, SSE when it cannot open), or force one
   * @param {Partial<Policy>} [options.policy]
   * @param {() => number} [options.random]  the jitter source (tests pass a seeded one)
   * @param {typeof WebSocket} [options.WebSocket] @param {any} [options.EventSource] @param {typeof fetch} [options.fetch]
   */
  constructor({ url, token = "", user = "", transport = "auto", policy = {}, random = Math.random, ...impl }) {
    const base = new URL(url);
    this.httpBase = base.origin.replace(/^ws/, "http") + base.pathname.replace(/\/$/, "");
    this.wsBase = this.httpBase.replace(/^http/, "ws");
    this.token = token;
    this.user = user;
    /** @type {Policy} */
    this.policy = { ...DEFAULT_POLICY, ...policy };
    this.random = random;
    /** @type {TransportChoice} "auto" until a WebSocket could not be opened ("sse" from then on) */
    this.transport = transport;
    this.WebSocket = impl.WebSocket || globalThis.WebSocket;
    this.EventSource = impl.EventSource || globalThis.EventSource;
    this.fetch = impl.fetch || globalThis.fetch.bind(globalThis);
  }

  /** Whether connections use server-sent events (forced, or after a WebSocket could not open). */
  get usesSse() { return this.transport === "sse" || !this.WebSocket; }

  /**
   * A chat room, connecting at once. Frames reach `onFrame` in order, each once: message, join,
   * leave, and {type: "gap", room} (also `onGap()`) when a resume could not recover everything.
   * @param {string} name
   * @param {object} [options]
   * @param {string | null} [options.since]  resume after this offset ("0": every retained event)
   * @param {(frame: Frame) => void} [options.onFrame] @param {() => void} [options.onGap]
   * @param {(state: State) => void} [options.onState] @param {(error: HeraldError) => void} [options.onError]
   * @param {(welcome: Frame) => void} [options.onWelcome]  each connection's welcome (replica, user)
   */
  room(name, options = {}) {
    if (!ROOM_RE.test(name)) throw new HeraldError("protocol", `invalid room name ${JSON.stringify(name)}`);
    return new Room(this, name, options);
  }

  /**
   * A GraphQL subscription (graphql-transport-ws, or graphql-sse after a fallback), resumed with
   * `since` when the operation declares `$since`. A result after lost events carries
   * `extensions.recovered === false`. Returns a function that stops it.
   * @param {string} query @param {Record<string, any>} [variables]
   * @param {{next?: (result: any) => void, error?: (err: HeraldError) => void, complete?: () => void,
   *   onState?: (state: State) => void}} [sink]  onState: "open" once subscribed, "connecting" while away
   */
  subscribe(query, variables = {}, sink = {}) {
    const subscription = new Subscription(this, query, variables, sink);
    return () => subscription.stop();
  }

  /**
   * Publish over HTTP (POST /api/chat/{room}/messages) with an idempotency key; resolves to the
   * offset. Retried on 503, 429 and network errors with the same key: published at most once.
   */
  async publish(/** @type {string} */ room, /** @type {string} */ text, { key = newKey() } = {}) {
    const reconnector = new Reconnector(this.policy, this.random);
    let unknown = false, detail = "";
    for (let attempt = 0; attempt < this.policy.requestAttempts; attempt++) {
      if (attempt) await pause(reconnector.step()).done;
      let response;
      try {
        response = await this.fetch(`${this.httpBase}/api/chat/${encodeURIComponent(room)}/messages`, {
          method: "POST", headers: { ...this.headers(), "Content-Type": "application/json", "Idempotency-Key": key },
          body: JSON.stringify({ text }),
        });
      } catch (err) {
        unknown = true; // the request may have left: its outcome is unknown
        detail = String(err);
        continue;
      }
      const body = await response.json().catch(() => ({}));
      if (response.status === 202 || response.status === 200) return String(body.id);
      detail = `HTTP ${response.status}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`;
      if (response.status === 401 || response.status === 403) throw new HeraldError("auth", detail, response.status);
      if (response.status === 503) unknown = unknown || UNKNOWN_HINTS.some((h) => detail.includes(h));
      else if (response.status !== 429) throw new HeraldError("refused", detail, response.status);
    }
    throw new HeraldError(unknown ? "outcome_unknown" : "unavailable", `${detail} (after ${this.policy.requestAttempts} attempts)`);
  }

  /** @returns {Record<string, string>} */
  headers() { return this.token ? { Authorization: `Bearer ${this.token}` } : {}; }

  /** @param {string} path @param {Record<string, string | null | undefined>} query */
  url(path, query, ws = false) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
    const s = q.toString();
    return `${ws ? this.wsBase : this.httpBase}${path}${s ? "?" + s : ""}`;
  }

  /**
   * A browser cannot see why a WebSocket handshake failed (a 403 looks like a dead server), so
   * after one, ask `path` over plain HTTP: 401/403 = the token, 4xx = the request; an answer =
   * HTTP works where the WebSocket did not (fall back to SSE); no answer = the server is down.
   * @returns {Promise<{kind: string, detail: string, fallback: boolean}>}
   */
  async diagnose(/** @type {string} */ path) {
    let status;
    try {
      status = (await this.fetch(this.httpBase + path, { headers: this.headers(), cache: "no-store" })).status;
    } catch (err) {
      return { kind: Disconnect.RETRY, detail: `cannot connect: ${err}`, fallback: false };
    }
    const kind = classifyStatus(status);
    const fallback = status < 400 && this.transport === "auto" && !!this.EventSource;
    return { kind, detail: `HTTP ${status}`, fallback };
  }

  /** Switch to server-sent events for good (the WebSocket path is blocked). */
  fallBack() { this.transport = "sse"; }
}

// ---------------------------------------------------------------- one logical connection

/** The reconnect loop shared by rooms and subscriptions: connect, wait as the rules say, again. */
class Link {
  /** @param {Herald} herald */
  constructor(herald) {
    this.herald = herald;
    this.reconnector = new Reconnector(herald.policy, herald.random);
    this.stopped = false;
    /** @type {{done: Promise<unknown>, cancel: () => void} | null} */
    this.waiting = null;
    /** @type {(() => void) | null} ends the current connection */
    this.hangUp = null;
  }

  /** @param {() => Promise<{kind: string, detail: string, code?: number, fallback?: boolean}>} once */
  async run(once, /** @type {(e: HeraldError) => void} */ fail) {
    while (!this.stopped) {
      const { kind, detail, code, fallback } = await once();
      this.hangUp = null;
      if (this.stopped) return;
      if (fallback) { this.herald.fallBack(); continue; }
      let delay;
      try {
        delay = this.reconnector.nextDelay(kind, detail, code);
      } catch (err) {
        fail(/** @type {HeraldError} */ (err));
        return;
      }
      this.waiting = pause(delay);
      await this.waiting.done;
      this.waiting = null;
    }
  }

  stop() {
    this.stopped = true;
    if (this.waiting) this.waiting.cancel();
    if (this.hangUp) this.hangUp();
  }
}

/**
 * A WebSocket of JSON frames, to its end: resolves with what ended it. `onOpen(send)` runs once
 * open; `onFrame(frame, send)` for each frame; `ping(send)` every policy.pingEveryMs. A socket
 * that answered nothing since the last ping (a half-open TCP connection: laptop sleep, Wi-Fi
 * change) is dropped as a network loss; checking "since the last ping" rather than a fixed age
 * keeps throttled background tabs alive.
 * @typedef {(frame: object) => boolean} Send
 * @returns {Promise<{opened: boolean, code?: number, reason: string}>}
 */
function runSocket(/** @type {Link} */ link, /** @type {string} */ url, /** @type {string | undefined} */ protocol,
  /** @type {(send: Send) => void} */ onOpen, /** @type {(f: any, send: Send) => void} */ onFrame,
  /** @type {(send: Send) => void} */ ping) {
  return new Promise((resolve) => {
    const herald = link.herald;
    const ws = protocol ? new herald.WebSocket(url, protocol) : new herald.WebSocket(url);
    let opened = false, ended = false, lastSeen = 0, pingSentAt = 0;
    /** @param {object} frame */
    const send = (frame) => {
      if (ws.readyState !== 1) return false;
      ws.send(JSON.stringify(frame));
      return true;
    };
    const end = (/** @type {number | undefined} */ code, reason = "") => {
      if (ended) return;
      ended = true;
      clearInterval(pinger);
      resolve({ opened, code, reason });
    };
    const pinger = setInterval(() => {
      if (ws.readyState !== 1) return;
      if (pingSentAt && lastSeen < pingSentAt) { ws.close(); end(CloseCode.ABNORMAL, "no answer to a ping"); return; }
      pingSentAt = Date.now();
      ping(send);
    }, herald.policy.pingEveryMs);
    link.hangUp = () => { ws.close(CloseCode.NORMAL, "bye"); end(CloseCode.NORMAL, "closed by the client"); };
    ws.onopen = () => { opened = true; lastSeen = Date.now(); onOpen(send); };
    ws.onmessage = (ev) => {
      if (ended) return;
      lastSeen = Date.now();
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      onFrame(frame, send);
    };
    ws.onclose = (ev) => end(ev.code === CloseCode.ABNORMAL ? undefined : ev.code, ev.reason);
  });
}

/**
 * An EventSource, to its end. Herald ends a stream after an `event: close` carrying the WebSocket
 * close code; a stream that just stops (a killed replica, a network loss) is a network loss.
 * @param {Record<string, (data: any) => void>} handlers  event name -> handler of its JSON data
 * @returns {Promise<{opened: boolean, code?: number, reason: string}>}
 */
function runStream(/** @type {Link} */ link, /** @type {string} */ url, handlers) {
  return new Promise((resolve) => {
    const source = new link.herald.EventSource(url);
    let opened = false, ended = false;
    const end = (/** @type {number | undefined} */ code, reason = "") => {
      if (ended) return;
      ended = true;
      source.close(); // our own reconnect, with `since`, follows the rules of §11
      resolve({ opened, code, reason });
    };
    link.hangUp = () => end(CloseCode.NORMAL, "closed by the client");
    source.onopen = () => {
      opened = true;
      if (handlers.open) handlers.open(null);
    };
    source.onerror = () => end(undefined, "stream lost");
    source.addEventListener("close", (/** @type {MessageEvent} */ ev) => {
      const { code, reason } = JSON.parse(ev.data);
      end(code, reason);
    });
    for (const [name, handle] of Object.entries(handlers)) {
      if (name === "open") continue;
      source.addEventListener(name, (/** @type {MessageEvent} */ ev) => {
        if (ended) return;
        let data;
        try { data = JSON.parse(ev.data); } catch { data = ev.data; }
        handle(data);
      });
    }
  });
}

// ---------------------------------------------------------------- rooms

class Room {
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

  /** The users with an open connection in this room, cluster-wide (needs the WebSocket transport). */
  async presence() {
    if (this.transport === "sse") throw new HeraldError("unsupported", "presence requests need a WebSocket");
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
    if (frame.type !== "message") throw new HeraldError("unsupported", "presence requests need a WebSocket");
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
class Requests {
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

// ---------------------------------------------------------------- GraphQL subscriptions

const OPERATION_ID = "1";

/** One subscription, on its own socket (or stream): when it drops, the operation is sent again. */
class Subscription {
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
