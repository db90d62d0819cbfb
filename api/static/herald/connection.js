// herald/connection.js: one logical connection's reconnect loop (Link), and one attempt over a
// WebSocket (runSocket) or an EventSource (runStream), each resolving with what ended it.

import { CloseCode, Reconnector, pause } from "./rules.js";

/** @typedef {import("../herald.js").Herald} Herald */
/** @typedef {import("./rules.js").HeraldError} HeraldError */

/** The reconnect loop shared by rooms and subscriptions: connect, wait as the rules say, again. */
export class Link {
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
export function runSocket(/** @type {Link} */ link, /** @type {string} */ url, /** @type {string | undefined} */ protocol,
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
export function runStream(/** @type {Link} */ link, /** @type {string} */ url, handlers) {
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
