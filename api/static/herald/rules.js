// herald/rules.js: the decisions of herald.js as plain functions and classes, no socket and no
// clock (the I/O in connection.js, room.js and subscription.js asks them): how long to wait before the
// next attempt (or whether to give up), which `since` to resume from, and what the application sees
// of a frame (deduplicated by offset; a gap frame when the server could not recover). Every rule of
// SPEC §11 is therefore a plain unit test (tests/js/herald_rules.test.mjs), as in herald_client/core.py.

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
 * published: retry with the same key), "closed" (the room was closed).
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

export const UNKNOWN_HINTS = ["unknown", "may or may not"];

/** A pause that `cancel()` ends early (a room closed while it waited). */
export function pause(/** @type {number} */ ms) {
  let cancel = () => {};
  const done = new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    cancel = () => { clearTimeout(timer); resolve(undefined); };
  });
  return { done, cancel: () => cancel() };
}

/** A fresh idempotency key (crypto.randomUUID needs a secure context; getRandomValues does not). */
export function newKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
