// Herald web page: one chat room, who is present, and a live list of new books.
// Plain browser JavaScript, no build step, no external resources.
"use strict";

const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/; // SPEC §3, same rule as the server
// WebSocket close codes the page reacts to (the server's api/errors.py CloseCode).
const CLOSE = { ABNORMAL: 1006, POLICY: 1008, TOO_BIG: 1009, TRY_LATER: 1013, GQL_FORBIDDEN: 4403, GQL_SUBPROTOCOL: 4406 };
const BACKOFF_MS = 500, BACKOFF_CAP_MS = 15000, STABLE_MS = 5000, PING_EVERY_MS = 20000;
const MAX_MESSAGES = 500, MAX_BOOKS = 100;
const BOOK_FIELDS = "isbn title author addedAt offset";
const NEW_BOOK = `subscription($since:String){ newBook(since:$since){ ${BOOK_FIELDS} } }`;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;

// ---------------------------------------------------------------- helpers

// Build an element. Children are appended as nodes or text, so user data is never parsed as HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

let noticeTimer = null;
function notice(text, kind = "info") {
  Object.assign($("notice"), { textContent: text, className: kind, hidden: false });
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { $("notice").hidden = true; }, 6000);
}

// Offsets are Redis stream ids "<ms>-<seq>". "1-10" comes after "1-9", so never compare the strings.
function parseOffset(s) {
  const [ms, seq = "0"] = String(s).split("-");
  try { return [BigInt(ms), BigInt(seq)]; } catch { return [-1n, -1n]; }
}
function cmpOffset(a, b) {
  const [am, as] = parseOffset(a), [bm, bs] = parseOffset(b);
  if (am !== bm) return am < bm ? -1 : 1;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

function fmtTime(epochS) {
  if (typeof epochS !== "number") return "";
  return new Date(epochS * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function jsonHeaders() {
  const h = { "Content-Type": "application/json" };
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

// Reads go over plain REST (SPEC §6): the page's history and book list do not depend on GraphQL.
async function getJSON(path) {
  const r = await fetch(path, { headers: jsonHeaders() });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(describeDetail(body.detail) || `HTTP ${r.status}`);
  return body;
}

// ---------------------------------------------------------------- auto-reconnecting socket

// A JSON WebSocket that reconnects by itself. url() is called on every attempt so it can carry the
// newest `since`. Backoff is capped-exponential with jitter, so when a replica restarts (1012) its
// clients do not all land on the next replica in the same millisecond. onClose(code) returns false
// to give up (e.g. expired token), anything else to retry.
function liveSocket({ url, protocol, onOpen, onFrame, onClose, onRetry }) {
  let ws = null, attempt = 0, retryTimer = null, pinger = null, stopped = false;
  let openedAt = 0, lastSeen = 0, pingSentAt = 0;

  function send(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  function connect() {
    retryTimer = null;
    openedAt = lastSeen = pingSentAt = 0;
    const me = (ws = protocol ? new WebSocket(url(), protocol) : new WebSocket(url()));
    me.onopen = () => { if (me === ws) { openedAt = lastSeen = Date.now(); if (onOpen) onOpen(send); } };
    me.onmessage = (ev) => {
      if (me !== ws) return; // a frame from a socket we already gave up on
      lastSeen = Date.now();
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      onFrame(frame, send);
    };
    me.onclose = (ev) => { if (me === ws) down(ev.code); };
    // A half-open TCP connection (laptop sleep, Wi-Fi change) never fires onclose. Both protocols
    // answer {"type":"ping"} with a pong: if nothing at all came back since our last ping, drop it.
    // (Checking "since the last ping" rather than a fixed age keeps throttled background tabs alive.)
    pinger = setInterval(() => {
      if (me.readyState !== WebSocket.OPEN) return;
      if (pingSentAt && lastSeen < pingSentAt) { drop(); return; }
      pingSentAt = Date.now();
      send({ type: "ping" });
    }, PING_EVERY_MS);
  }

  function down(code) {
    clearInterval(pinger);
    ws = null;
    if (stopped || onClose(code) === false) return;
    // A connection that lived a while was healthy: start the backoff again from the bottom.
    if (openedAt && Date.now() - openedAt > STABLE_MS) attempt = 0;
    const delay = Math.min(BACKOFF_CAP_MS, BACKOFF_MS * 2 ** attempt++) * (0.5 + Math.random() / 2);
    if (onRetry) onRetry(delay);
    retryTimer = setTimeout(connect, delay);
  }

  function drop() { const old = ws; if (old) { down(CLOSE.ABNORMAL); old.close(); } }

  function stop() {
    stopped = true;
    clearTimeout(retryTimer);
    clearInterval(pinger);
    const old = ws;
    ws = null;
    if (old) old.close();
  }

  connect();
  return { send, drop, stop };
}

// ---------------------------------------------------------------- chat

// pos: the offset we have seen up to. undefined = "no position yet" (connect live-only and take the
// welcome's offset). Every reconnect passes since=pos, and anything at or before pos is a replay.
const chat = { gen: 0, room: "", user: "", me: "", pos: undefined, sock: null, welcomed: false };

function setStatus(text, state) { Object.assign($("status"), { textContent: text }).dataset.state = state; }
function setInputEnabled(on) { $("message-input").disabled = $("send").disabled = !on; }

function appendLine(node) {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.append(node);
  while (box.childElementCount > MAX_MESSAGES) box.firstElementChild.remove();
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function systemLine(text, kind = "") {
  appendLine(el("div", { class: ("system " + kind).trim() }, text));
}

function addMessage(m) {
  if (chat.pos !== undefined && cmpOffset(m.id, chat.pos) <= 0) return; // already shown
  chat.pos = m.id;
  const mine = m.user === chat.me ? " mine" : "";
  appendLine(el("div", { class: "message" + mine, "data-id": m.id },
    el("time", {}, fmtTime(m.ts)), el("span", { class: "user" }, m.user), el("span", { class: "text" }, m.text)));
}

function renderPresence(users) {
  $("presence").replaceChildren(...users.map((u) => el("li", u === chat.me ? { class: "me" } : {}, u)));
}

const CHAT_ERRORS = {
  rate_limited: "Slow down: you are sending too fast, that message was not sent.",
  unavailable: "The service is temporarily unavailable, that message was not sent.",
};

function onChatFrame(f, send) {
  switch (f.type) {
    case "welcome":
      chat.welcomed = true;
      chat.me = f.user;
      if (chat.pos === undefined) chat.pos = f.offset ?? "0"; // nothing replayed: resume from here
      setStatus("connected", "connected");
      setInputEnabled(true);
      $("replica").textContent = "served by replica " + f.replica;
      if (f.recovered === false) systemLine("Some earlier messages could not be recovered: the room's history no longer reaches back that far.", "warn");
      send({ type: "presence" });
      break;
    case "message":
      addMessage(f);
      break;
    case "join":
    case "leave":
      systemLine(`${f.user} ${f.type === "join" ? "joined" : "left"}`);
      send({ type: "presence" });
      break;
    case "presence":
      renderPresence(f.users || []);
      break;
    case "error":
      notice(CHAT_ERRORS[f.code] || `Error (${f.code}): ${f.detail || ""}`, "error");
      break;
    default: // heartbeat, pong: they only prove the socket is alive, which liveSocket noted
  }
}

function onChatClose(code) {
  setInputEnabled(false);
  if (code === CLOSE.POLICY) {
    setStatus("disconnected", "down");
    notice("Your token expired or does not allow this room. Open a new link to rejoin.", "error");
    return false;
  }
  if (code === CLOSE.TOO_BIG) notice("That message was too large to send.", "error");
  if (code === CLOSE.TRY_LATER) notice("The server is busy; reconnecting shortly.", "error");
  // A refused handshake (bad room or token: HTTP 403) looks like any network failure to a browser.
  if (!chat.welcomed) notice("Could not connect to the room yet (server down, or a bad room name or token?). Retrying.", "error");
  return true;
}

async function join(room, user) {
  const gen = ++chat.gen;
  if (chat.sock) chat.sock.stop();
  user = user || "anonymous";
  // me: as typed until the welcome says who the server thinks we are (the token's sub with auth on).
  Object.assign(chat, { room, user, me: user, pos: undefined, sock: null, welcomed: false });
  $("messages").replaceChildren();
  $("presence").replaceChildren();
  $("replica").textContent = "";
  $("room-title").textContent = "#" + room;
  setInputEnabled(false);
  setStatus("connecting…", "connecting");
  const link = new URLSearchParams({ room, user: chat.user });
  if (token) link.set("token", token);
  history.replaceState(null, "", location.pathname + "?" + link); // the address bar is now a shareable link

  // Show recent history, then connect with since=<its last id>: the server replays whatever was
  // published in between, so history and live messages meet without a gap or a duplicate.
  try {
    const messages = await getJSON(`/api/chat/${encodeURIComponent(room)}/messages?limit=50`); // oldest first
    if (gen !== chat.gen) return; // the user joined another room meanwhile
    messages.forEach(addMessage);
    if (chat.pos === undefined) chat.pos = "0"; // empty room: everything published from now on
  } catch {
    if (gen !== chat.gen) return; // history is a nicety: without it, connect live-only
  }
  chat.sock = liveSocket({
    url: () => {
      const q = new URLSearchParams({ user: chat.user });
      if (token) q.set("token", token);
      if (chat.pos !== undefined) q.set("since", chat.pos);
      return `${wsBase}/ws/chat/${encodeURIComponent(room)}?${q}`;
    },
    onFrame: onChatFrame,
    onClose: onChatClose,
    onRetry: () => setStatus("reconnecting…", "reconnecting"),
  });
}

function checkRoom() {
  const input = $("room");
  const ok = ROOM_RE.test(input.value.trim());
  input.setCustomValidity(ok ? "" : "Room names are 1–64 letters, digits, '_', '.' or '-'.");
  return ok;
}

$("room").addEventListener("input", () => $("room").setCustomValidity(""));
$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (!checkRoom()) {
    $("room").reportValidity();
    notice($("room").validationMessage, "error");
    return;
  }
  join($("room").value.trim(), $("user").value.trim());
});

$("send-form").addEventListener("submit", (e) => {
  e.preventDefault(); // Enter in the input lands here too
  const input = $("message-input");
  if (!input.value.trim()) return;
  // Our own message is not drawn now: it is drawn when the room echoes it with its offset.
  if (chat.sock && chat.sock.send({ type: "message", text: input.value })) input.value = "";
  else notice("Not connected: your message was kept, send it again once connected.", "error");
});

// ---------------------------------------------------------------- books

// pos only advances with books that came through the feed (or the initial query), never with the
// answer to our own POST: the feed must still resume from before any book it has not delivered yet.
const books = { pos: null, isbns: new Set(), sock: null };

function addBook(b, fromFeed, atTop) {
  if (fromFeed && (books.pos === null || cmpOffset(b.offset, books.pos) > 0)) books.pos = b.offset;
  if (books.isbns.has(b.isbn)) return;
  books.isbns.add(b.isbn);
  const li = el("li", { "data-isbn": b.isbn },
    el("strong", {}, b.title), " by ", el("span", { class: "author" }, b.author),
    el("small", {}, ` ISBN ${b.isbn} · ${fmtTime(b.addedAt)}`));
  const list = $("books");
  if (atTop) list.prepend(li);
  else list.append(li);
  while (list.childElementCount > MAX_BOOKS) list.lastElementChild.remove();
}

const setBooksStatus = (text) => { $("books-status").textContent = text; };

function onBooksFrame(f, send) {
  switch (f.type) {
    case "connection_ack":
      setBooksStatus("live");
      send({ type: "subscribe", id: "books", payload: { query: NEW_BOOK, variables: { since: books.pos } } });
      break;
    case "next": {
      const p = f.payload || {};
      if (p.errors) notice("Book feed: " + p.errors.map((e) => e.message).join("; "), "error");
      if (p.data && p.data.newBook) addBook(p.data.newBook, true, true);
      break;
    }
    case "ping":
      send({ type: "pong" });
      break;
    case "error": // the operation itself was refused: retrying the same document will not help
      notice("Book feed refused: " + [].concat(f.payload || []).map((e) => e.message).join("; "), "error");
      setBooksStatus("stopped");
      break;
    case "complete": // the server ended the stream (e.g. shutting down): resubscribe from books.pos
      books.sock.drop();
      break;
    default: // pong
  }
}

async function startBooks() {
  try {
    (await getJSON("/api/books?limit=20")).forEach((b) => addBook(b, true, false)); // newest first
  } catch (err) {
    notice("Could not load books: " + err.message, "error");
  }
  // Subscribe from the newest book shown, so a book added meanwhile is replayed, not missed.
  if (books.pos === null) books.pos = "0";
  setBooksStatus("connecting…");
  books.sock = liveSocket({
    url: () => `${wsBase}/graphql` + (token ? "?token=" + encodeURIComponent(token) : ""),
    protocol: "graphql-transport-ws",
    onOpen: (send) => send({ type: "connection_init", payload: token ? { token } : {} }),
    onFrame: onBooksFrame,
    onClose: (code) => {
      if (code === CLOSE.GQL_FORBIDDEN || code === CLOSE.GQL_SUBPROTOCOL) {
        setBooksStatus("offline");
        notice("The book feed refused this page (token missing or invalid?).", "error");
        return false;
      }
      return true;
    },
    onRetry: () => setBooksStatus("reconnecting…"),
  });
}

function describeDetail(detail) {
  // FastAPI's 422 detail is a list of {loc, msg}; our own errors carry a plain string.
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  return typeof detail === "string" ? detail : "";
}

function bookError(status, body) {
  if (status === 409) return "A book with that ISBN already exists.";
  if (status === 401) return "Not authorised: adding a book needs a valid token (open the page with &token=…).";
  if (status === 422) return "Invalid book: " + describeDetail(body.detail);
  if (status === 503) return "The service is temporarily unavailable; try again.";
  return `Could not add the book (HTTP ${status}). ${describeDetail(body.detail)}`;
}

$("book-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget, button = $("add-book");
  const show = (text, ok) => Object.assign($("book-result"), { textContent: text, className: ok ? "" : "error" });
  const book = { isbn: $("book-isbn").value.trim(), title: $("book-title").value.trim(), author: $("book-author").value.trim() };
  button.disabled = true;
  show("Adding…", true);
  try {
    const r = await fetch("/api/books", { method: "POST", headers: jsonHeaders(), body: JSON.stringify(book) });
    const body = await r.json().catch(() => ({}));
    if (r.status !== 201) return show(bookError(r.status, body), false);
    form.reset();
    addBook(body, false, true);
    show(`Added “${body.title}”.`, true);
  } catch {
    show("Network error: the book was not added.", false);
  } finally {
    button.disabled = false;
  }
});

// ---------------------------------------------------------------- start

startBooks();
if (params.has("room")) {
  // /?room=R&user=U[&token=T] is a shareable link: join straight away.
  $("room").value = params.get("room");
  $("user").value = params.get("user") || "";
  if (checkRoom()) join($("room").value.trim(), $("user").value.trim());
  else notice($("room").validationMessage, "error");
}
