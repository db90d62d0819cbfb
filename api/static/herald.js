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
// Written for browsers; other runtimes pass `WebSocket`, `EventSource` and `fetch` to the constructor.
//
// The entry point; the rest is in herald/: rules.js (decisions, no I/O), connection.js (the reconnect
// loop, one WebSocket or EventSource attempt), room.js, subscription.js.

import { DEFAULT_POLICY, Disconnect, HeraldError, Reconnector, UNKNOWN_HINTS, classifyStatus, newKey, pause } from "./herald/rules.js";
import { Room } from "./herald/room.js";
import { Subscription } from "./herald/subscription.js";

export {
  CloseCode, DEFAULT_POLICY, Disconnect, HeraldError, Reconnector, RoomTracker, SubscriptionTracker,
  classifyClose, classifyStatus, compareOffsets, parseOffset,
} from "./herald/rules.js";

/** @typedef {import("./herald/rules.js").Frame} Frame */
/** @typedef {import("./herald/rules.js").State} State */
/** @typedef {import("./herald/rules.js").TransportChoice} TransportChoice */
/** @typedef {import("./herald/rules.js").Policy} Policy */

const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/; // SPEC §3

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
    /** @type {TransportChoice} "auto" until the first WebSocket opens ("websocket") or cannot ("sse", for good) */
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

  /**
   * Who has a connection open in `room`, cluster-wide, over HTTP (GET /api/chat/{room}/presence): what
   * `room.presence()` asks on an SSE transport. Rejects with "auth", "refused" or "unavailable".
   * @returns {Promise<string[]>}
   */
  async presence(/** @type {string} */ room) {
    let response;
    try {
      response = await this.fetch(`${this.httpBase}/api/chat/${encodeURIComponent(room)}/presence`, { headers: this.headers() });
    } catch (err) {
      throw new HeraldError("unavailable", String(err));
    }
    const body = await response.json().catch(() => ({}));
    if (response.status === 200) return body.users;
    const detail = `HTTP ${response.status}: ${JSON.stringify(body.detail)}`;
    if (response.status === 401 || response.status === 403) throw new HeraldError("auth", detail, response.status);
    throw new HeraldError(response.status === 503 ? "unavailable" : "refused", detail, response.status);
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
