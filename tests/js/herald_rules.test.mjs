// herald.js's rules (SPEC §11) as plain unit tests, with node's own test runner: no server, no browser.
// Run: node --test tests/js/herald_rules.test.mjs (tests/clients/test_js_client_rules.py runs it in make test).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  CloseCode, DEFAULT_POLICY, Disconnect, HeraldError, Reconnector, RoomTracker, SubscriptionTracker,
  classifyClose, classifyStatus, compareOffsets, parseOffset,
} from '../../api/static/herald.js';
import { Requests } from '../../api/static/herald/room.js';

const always = (value) => () => value;

test('close codes: 1012 spreads, 1013 waits, auth codes stop, hopeless ones stop, the rest retry', () => {
  assert.equal(classifyClose(CloseCode.SERVICE_RESTART), Disconnect.RESTART);
  assert.equal(classifyClose(CloseCode.TRY_AGAIN_LATER), Disconnect.OVERLOAD);
  for (const code of [1008, 4403]) assert.equal(classifyClose(code), Disconnect.AUTH, code);
  for (const code of [1009, 4400, 4401, 4406, 4409, 4429]) assert.equal(classifyClose(code), Disconnect.FATAL, code);
  for (const code of [undefined, 1000, 1001, 1011, 4010, 4408, 4500]) assert.equal(classifyClose(code), Disconnect.RETRY, code);
});

test('refused handshakes: 401/403 are the token, 400/404/422 the request, 429 overload, 5xx retry', () => {
  for (const status of [401, 403]) assert.equal(classifyStatus(status), Disconnect.AUTH);
  for (const status of [400, 404, 422]) assert.equal(classifyStatus(status), Disconnect.FATAL);
  assert.equal(classifyStatus(429), Disconnect.OVERLOAD);
  for (const status of [500, 502, 503]) assert.equal(classifyStatus(status), Disconnect.RETRY);
});

test('backoff is full jitter: uniform(0, step), the step doubling from 0.5 s to 20 s', () => {
  const top = new Reconnector(DEFAULT_POLICY, always(0.999999));
  const steps = Array.from({ length: 9 }, () => Math.round(top.nextDelay(Disconnect.RETRY)));
  assert.deepEqual(steps, [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000]);
  assert.equal(new Reconnector(DEFAULT_POLICY, always(0)).nextDelay(Disconnect.RETRY), 0);
  top.connected(); // a connection that worked starts the schedule again
  assert.equal(Math.round(top.nextDelay(Disconnect.RETRY)), 500);
});

test('after 1012 the first attempt waits uniform(0, 3 s); later ones back off as usual', () => {
  const r = new Reconnector(DEFAULT_POLICY, always(0.5));
  assert.equal(r.nextDelay(Disconnect.RESTART), 1500);
  assert.equal(r.nextDelay(Disconnect.RESTART), 500); // second attempt: step 1000 x 0.5
  const none = new Reconnector({ ...DEFAULT_POLICY, restartSpreadMs: 0 }, always(0.5));
  assert.equal(none.nextDelay(Disconnect.RESTART), 0);
});

test('after 1013 the wait is at least 5 s', () => {
  const r = new Reconnector(DEFAULT_POLICY, always(0));
  assert.equal(r.nextDelay(Disconnect.OVERLOAD), 5000);
  assert.ok(new Reconnector(DEFAULT_POLICY, always(0.99)).nextDelay(Disconnect.OVERLOAD) >= 5000);
});

test('an auth refusal or a hopeless close never schedules another attempt', () => {
  const r = new Reconnector(DEFAULT_POLICY);
  assert.throws(() => r.nextDelay(Disconnect.AUTH, 'HTTP 403', undefined), (e) => e instanceof HeraldError && e.kind === 'auth');
  assert.throws(() => r.nextDelay(Disconnect.FATAL, 'close 4400', 4400), (e) => e.kind === 'protocol' && e.code === 4400);
});

test('offsets compare as stream ids, never as strings', () => {
  assert.equal(compareOffsets('1-10', '1-9'), 1);
  assert.equal(compareOffsets('9-0', '10-0'), -1);
  assert.equal(compareOffsets('5-5', '5-5'), 0);
  assert.deepEqual(parseOffset('0'), [0n, 0n]);
  assert.equal(parseOffset('yesterday'), null);
  assert.deepEqual(['10-0', '1-10', '9-3', '1-9'].sort(compareOffsets), ['1-9', '1-10', '9-3', '10-0']);
});

test('a room joined without since resumes from the welcome offset, or from "0" when the room is empty', () => {
  const busy = new RoomTracker('lobby');
  assert.deepEqual(busy.welcome({ type: 'welcome', offset: '7-0' }), []);
  assert.equal(busy.resume, '7-0');
  const empty = new RoomTracker('lobby');
  empty.welcome({ type: 'welcome', offset: null });
  assert.equal(empty.resume, '0');
});

test('a replayed message is handed on once; the resume point follows the last one', () => {
  const t = new RoomTracker('lobby', '1-9');
  t.welcome({ type: 'welcome', offset: '1-11', recovered: true });
  const seen = ['1-9', '1-10', '1-10', '1-11', '1-2'].map((id) => t.accept({ type: 'message', id }));
  assert.deepEqual(seen, [false, true, false, true, false]);
  assert.equal(t.resume, '1-11');
  assert.ok(t.accept({ type: 'join', user: 'bob' })); // presence frames carry no offset
});

test('recovered:false is told once as a gap frame, and resuming after it starts from "0"', () => {
  const t = new RoomTracker('lobby', '1-1');
  assert.deepEqual(t.welcome({ type: 'welcome', offset: '9-0', recovered: false }), [{ type: 'gap', room: 'lobby' }]);
  assert.equal(t.resume, '0');
  // lost again before any message: the same gap, not told twice
  assert.deepEqual(t.welcome({ type: 'welcome', offset: '9-0', recovered: false }), []);
  assert.ok(t.accept({ type: 'message', id: '5-0' })); // older than the old position, but new after a gap
  assert.equal(t.resume, '5-0');
});

test('a subscription with $since resumes after its last result and drops repeats', () => {
  const q = 'subscription($since: String) { newBook(since: $since) { isbn offset } }';
  const t = new SubscriptionTracker(q, { since: '0' });
  const book = (offset) => ({ data: { newBook: { isbn: 'x', offset } } });
  assert.ok(t.accept(book('1-10')));
  assert.equal(t.accept(book('1-9')), false);
  assert.deepEqual(t.variablesForNextAttempt(), { since: '1-10' });
  const plain = new SubscriptionTracker('subscription { newBook { isbn } }', {});
  assert.deepEqual(plain.variablesForNextAttempt(), {});
});

test('requests wait for a socket, go out in order on each new one, and a keepalive pong answers none', async () => {
  const requests = new Requests({ ...DEFAULT_POLICY, requestTimeoutMs: 5000 }, always(0));
  const written = [];
  const send = (frame) => written.push(frame) > 0;
  const presence = requests.call({ type: 'presence' }, null);
  const message = requests.call({ type: 'message', text: 'hi', key: 'k1' }, 'k1');
  requests.attach(send);
  assert.deepEqual(written.map((f) => f.type), ['presence', 'message']);
  requests.detach(); // the socket dropped before any answer: both are sent again, in order
  requests.attach(send);
  requests.keepalive();
  assert.deepEqual(written.map((f) => f.type), ['presence', 'message', 'presence', 'message', 'ping']);
  requests.answer({ type: 'ack', key: 'k1', id: '3-0' }); // acks match by key
  requests.answer({ type: 'presence', users: ['ada'] }); // in order: the presence request's
  requests.answer({ type: 'pong' }); // the keepalive's
  assert.deepEqual((await presence).users, ['ada']);
  assert.equal((await message).id, '3-0');
});

test('a send answered unavailable is retried with its key, then reported unavailable, never twice published', async () => {
  const requests = new Requests({ ...DEFAULT_POLICY, requestAttempts: 2, baseMs: 1 }, always(0));
  const written = [];
  requests.attach((frame) => written.push(frame) > 0);
  const sent = requests.call({ type: 'message', text: 'hi', key: 'k' }, 'k');
  requests.answer({ type: 'error', code: 'unavailable', detail: 'redis is unavailable' });
  await new Promise((resolve) => setTimeout(resolve, 20));
  requests.answer({ type: 'error', code: 'unavailable', detail: 'redis is unavailable' });
  await assert.rejects(sent, (e) => e.kind === 'unavailable');
  assert.deepEqual(written.map((f) => f.key), ['k', 'k']);
});
