// Herald web page: one chat room, who is present, and a live list of new books.
// An ES module, no build step, no external resources. Connections, reconnects and resuming
// without loss are herald.js's (SPEC §11); this file only draws what it reports.
import { Herald, compareOffsets } from "/static/herald.js";

const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/; // SPEC §3, same rule as the server
const MAX_MESSAGES = 500, MAX_BOOKS = 100;
const BOOK_FIELDS = "isbn title author addedAt offset";
const NEW_BOOK = `subscription($since:String){ newBook(since:$since){ ${BOOK_FIELDS} } }`;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
// ?transport=sse forces server-sent events (normally only used when a WebSocket cannot open)
const transport = ["websocket", "sse"].includes(params.get("transport")) ? params.get("transport") : "auto";
const herald = new Herald({ url: location.origin, token, transport });

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

// ---------------------------------------------------------------- chat

// The room's connection, reconnects and resume (with `since`) are herald.js's; the page draws.
const chat = { gen: 0, room: null, opened: false };

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
  const me = chat.room ? chat.room.me : $("user").value.trim() || "anonymous";
  appendLine(el("div", { class: "message" + (m.user === me ? " mine" : ""), "data-id": m.id },
    el("time", {}, fmtTime(m.ts)), el("span", { class: "user" }, m.user), el("span", { class: "text" }, m.text)));
}

function renderPresence(users) {
  const me = chat.room && chat.room.me;
  $("presence").replaceChildren(...users.map((u) => el("li", u === me ? { class: "me" } : {}, u)));
}

async function refreshPresence(room) {
  try {
    renderPresence(await room.presence());
  } catch { /* the room closed or reconnects: the next welcome asks again */ }
}

const SEND_ERRORS = {
  rate_limited: "Slow down: you are sending too fast, that message was not sent.",
  unavailable: "The service is temporarily unavailable, that message was not sent.",
  outcome_unknown: "The service did not confirm that message; it may or may not have been sent.",
};

function onRoomState(room, state) {
  if (room !== chat.room) return;
  setInputEnabled(state === "open");
  if (state === "open") {
    chat.opened = true;
    setStatus("connected", "connected");
  } else if (state === "connecting") {
    setStatus(chat.opened ? "reconnecting…" : "connecting…", chat.opened ? "reconnecting" : "connecting");
  } else {
    setStatus("disconnected", "down");
  }
}

function onRoomError(err) {
  if (err.kind === "auth") notice("Your token expired or does not allow this room. Open a new link to rejoin.", "error");
  else if (err.code === 1009) notice("That message was too large to send; rejoin the room to go on.", "error");
  else notice("Disconnected: " + err.message, "error");
}

function onRoomFrame(room, f) {
  if (room !== chat.room) return;
  switch (f.type) {
    case "gap":
      systemLine("Some earlier messages could not be recovered: the room's history no longer reaches back that far.", "warn");
      break;
    case "message":
      addMessage(f);
      break;
    case "join":
    case "leave":
      systemLine(`${f.user} ${f.type === "join" ? "joined" : "left"}`);
      refreshPresence(room);
      break;
    default:
  }
}

async function join(name, user) {
  const gen = ++chat.gen;
  if (chat.room) chat.room.close();
  chat.room = null;
  chat.opened = false;
  user = user || "anonymous";
  herald.user = user;
  $("messages").replaceChildren();
  $("presence").replaceChildren();
  $("replica").textContent = "";
  $("room-title").textContent = "#" + name;
  setInputEnabled(false);
  setStatus("connecting…", "connecting");
  const link = new URLSearchParams({ room: name, user });
  if (token) link.set("token", token);
  if (transport !== "auto") link.set("transport", transport);
  history.replaceState(null, "", location.pathname + "?" + link); // the address bar is now a shareable link

  // Show recent history, then join with since=<its last id>: the server replays whatever was
  // published in between, so history and live messages meet without a gap or a duplicate.
  let since = null;
  try {
    const messages = await getJSON(`/api/chat/${encodeURIComponent(name)}/messages?limit=50`); // oldest first
    if (gen !== chat.gen) return; // the user joined another room meanwhile
    messages.forEach(addMessage);
    since = messages.length ? messages[messages.length - 1].id : "0"; // empty room: everything from now on
  } catch {
    if (gen !== chat.gen) return; // history is a nicety: without it, join live-only
  }
  const room = herald.room(name, {
    since,
    onFrame: (f) => onRoomFrame(room, f),
    onState: (state) => onRoomState(room, state),
    onError: onRoomError,
    onWelcome: (w) => {
      $("replica").textContent = "served by replica " + w.replica;
      $("transport").textContent = room.transport === "sse" ? "server-sent events" : "WebSocket";
      refreshPresence(room);
    },
  });
  chat.room = room;
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
  const input = $("message-input"), text = input.value;
  if (!text.trim() || !chat.room) return;
  // Our own message is not drawn now: it is drawn when the room echoes it with its offset.
  // herald.js keeps it (and its idempotency key) across a reconnect; on failure it comes back here.
  input.value = "";
  chat.room.send(text).catch((err) => {
    if (!input.value) input.value = text;
    notice(SEND_ERRORS[err.kind] || SEND_ERRORS[err.code] || "Not sent: " + err.message, "error");
  });
});

// ---------------------------------------------------------------- books

// pos only advances with books that came through the feed (or the initial query), never with the
// answer to our own POST: the feed must still resume from before any book it has not delivered yet.
const books = { pos: null, isbns: new Set() };

function addBook(b, fromFeed, atTop) {
  if (fromFeed && (books.pos === null || compareOffsets(b.offset, books.pos) > 0)) books.pos = b.offset;
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
const BOOKS_STATE = { connecting: "reconnecting…", open: "live", closed: "stopped" };

async function startBooks() {
  try {
    (await getJSON("/api/books?limit=20")).forEach((b) => addBook(b, true, false)); // newest first
  } catch (err) {
    notice("Could not load books: " + err.message, "error");
  }
  // Subscribe from the newest book shown, so a book added meanwhile is replayed, not missed;
  // herald.js resumes from the newest one delivered after every reconnect.
  setBooksStatus("connecting…");
  herald.subscribe(NEW_BOOK, { since: books.pos ?? "0" }, {
    next: (result) => {
      if (result.errors) notice("Book feed: " + result.errors.map((e) => e.message).join("; "), "error");
      if (result.data && result.data.newBook) addBook(result.data.newBook, true, true);
    },
    error: (err) => notice(err.kind === "auth" ? "The book feed refused this page (token missing or invalid?)."
      : "Book feed refused: " + err.message, "error"),
    onState: (state) => setBooksStatus(BOOKS_STATE[state]),
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
