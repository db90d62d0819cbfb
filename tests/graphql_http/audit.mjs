// node audit.mjs http://127.0.0.1:PORT/graphql  ->  one JSON array on stdout: [{id, name, status, reason}]
// status is "ok", "warn" or "error" as graphql-http reports it (a failed MUST is "error", a failed SHOULD/MAY "warn").
import { serverAudits } from "graphql-http";

const url = process.argv[2];
if (!url) {
  console.error("usage: node audit.mjs URL");
  process.exit(2);
}
const results = [];
for (const audit of serverAudits({ url })) {
  const result = await audit.fn();
  results.push({ id: result.id, name: result.name, status: result.status, reason: result.reason ?? null });
}
console.log(JSON.stringify(results));
