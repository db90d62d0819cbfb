// The npm eventsource client, unchanged: a chat room over SSE, printing every event as a JSON line.
// Usage: node eventsource_chat.mjs URL LAST_TEXT
// It reconnects on its own (with Last-Event-ID) when a stream ends; exits once LAST_TEXT arrived.
import { EventSource } from 'eventsource';

const [url, last] = process.argv.slice(2);
const source = new EventSource(url);
const print = (kind, event) => console.log(JSON.stringify({ kind, id: event.lastEventId, data: JSON.parse(event.data) }));
for (const kind of ['welcome', 'join', 'leave', 'close']) {
  source.addEventListener(kind, (event) => print(kind, event));
}
source.addEventListener('message', (event) => {
  print('message', event);
  if (JSON.parse(event.data).text === last) {
    source.close();
    process.exit(0);
  }
});
source.addEventListener('error', (event) => console.log(JSON.stringify({ kind: 'error', message: String(event.message ?? '') })));
setTimeout(() => {
  console.log(JSON.stringify({ kind: 'timeout' }));
  process.exit(3);
}, 60000);
