// The npm graphql-sse client, unchanged, against two Herald replicas (distinct connections mode).
// Usage: node graphql_sse.mjs A_URL B_URL ROOM
// Subscribes twice (identical operations) on A, sends messages with mutations over SSE on B,
// runs a query, a bad document, and a `since` subscription on B; prints one JSON summary line.
import { createClient } from 'graphql-sse';

const [a, b, room] = process.argv.slice(2);
const WAIT_MS = 15000;
const COUNT = 3;
const clientA = createClient({ url: `${a}/graphql/stream`, retryAttempts: 0 });
const clientB = createClient({ url: `${b}/graphql/stream`, retryAttempts: 0 });
const CHAT = 'subscription C($room: String!, $since: String) { chatMessage(room: $room, since: $since) { id user text } }';
const SEND = 'mutation S($room: String!, $text: String!) { sendMessage(room: $room, text: $text) { id text } }';

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// One operation to completion (queries, mutations, bad documents).
function once(client, payload) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const results = [];
      client.subscribe(payload, {
        next: (result) => results.push(result),
        error: reject,
        complete: () => resolve(results),
      });
    }),
    payload.query,
  );
}

// The first `count` results of a subscription, then unsubscribe.
function take(client, payload, count) {
  let dispose;
  const done = new Promise((resolve, reject) => {
    const results = [];
    dispose = client.subscribe(payload, {
      next: (result) => {
        results.push(result);
        if (results.length === count) {
          dispose();
          resolve(results);
        }
      },
      error: reject,
      complete: () => resolve(results),
    });
  });
  return withTimeout(done, `${count} results of ${payload.query}`);
}

async function gauge(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

async function until(url, name, value) {
  const deadline = Date.now() + WAIT_MS;
  while ((await gauge(url, name)) < value) {
    if (Date.now() > deadline) throw new Error(`${name} never reached ${value}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const summary = {};
summary.query = await once(clientA, { query: '{ books(limit: 1) { isbn } }' });
summary.badDocument = await once(clientA, { query: '{ nope }' });
const before = await gauge(a, 'herald_graphql_executions_total');
const subscribers = [
  take(clientA, { query: CHAT, variables: { room } }, COUNT),
  take(clientA, { query: CHAT, variables: { room } }, COUNT),
];
await until(a, 'herald_graphql_subscriptions', 2);
summary.sent = [];
for (let i = 1; i <= COUNT; i++) {
  summary.sent.push(...(await once(clientB, { query: SEND, variables: { room, text: `m${i}` } })));
}
summary.received = await Promise.all(subscribers);
summary.executions = (await gauge(a, 'herald_graphql_executions_total')) - before;
// History holds fewer than were sent (HERALD_HISTORY_SIZE): since "0" cannot be fully recovered.
summary.since = await take(clientB, { query: CHAT, variables: { room, since: '0' } }, 2);
clientA.dispose();
clientB.dispose();
console.log(JSON.stringify(summary));
