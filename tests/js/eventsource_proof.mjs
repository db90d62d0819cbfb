// N npm `eventsource` clients on one chat room, for the SSE half of the SIGTERM proof (issue 13 item 5).
// Usage: node eventsource_proof.mjs URL CLIENTS LAST MODE
//   MODE "hint":      the client unchanged: after a stream ends it reconnects by itself, after the server's
//                     `retry:` hint (1-3 s, drawn per stream), sending Last-Event-ID.
//   MODE "immediate": no jittered first delay: on the stream's `event: close` the client reconnects at once
//                     (a new EventSource with ?since=<the last event id>), as a naive client would.
// Prints {"ready": {replica: clients}} once every client is welcomed, then one summary line when every
// client has LAST (or after the time limit): each client's numbers and the times of its welcomes.
import { EventSource } from 'eventsource';

const [url, clientsArg, lastArg, mode] = process.argv.slice(2);
const CLIENTS = Number(clientsArg);
const LAST = Number(lastArg);
const LIMIT_MS = 90000;

function client() {
  const state = { numbers: [], welcomes: [], lastId: null, source: null, done: false };
  const open = (since) => {
    const source = new EventSource(since ? `${url}&since=${encodeURIComponent(since)}` : url);
    state.source = source;
    source.addEventListener('welcome', (event) => {
      const welcome = JSON.parse(event.data);
      state.welcomes.push({ t: Date.now() / 1000, replica: welcome.replica, recovered: welcome.recovered ?? null });
      if (event.lastEventId) state.lastId = event.lastEventId;
    });
    source.addEventListener('message', (event) => {
      state.lastId = event.lastEventId;
      state.numbers.push(Number(JSON.parse(event.data).text));
      if (state.numbers.at(-1) === LAST) {
        state.done = true;
        source.close();
      }
    });
    if (mode === 'immediate') {
      source.addEventListener('close', () => {
        source.close();
        open(state.lastId);
      });
    }
  };
  open(null);
  return state;
}

const clients = Array.from({ length: CLIENTS }, client);
const started = Date.now();
const tick = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

while (clients.some((c) => c.welcomes.length === 0)) {
  if (Date.now() - started > LIMIT_MS) break;
  await tick(20);
}
const ready = {};
for (const c of clients) {
  const replica = c.welcomes[0]?.replica ?? 'none';
  ready[replica] = (ready[replica] ?? 0) + 1;
}
console.log(JSON.stringify({ ready }));

while (clients.some((c) => !c.done) && Date.now() - started < LIMIT_MS) await tick(50);
for (const c of clients) c.source.close();
const summary = JSON.stringify({ clients: clients.map((c) => ({ numbers: c.numbers, welcomes: c.welcomes })) });
process.stdout.write(summary + '\n', () => process.exit(0)); // exit only once a piped stdout took it all
