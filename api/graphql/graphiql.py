"""A minimal, self-contained query page for ``GET /graphql`` in a browser.

GraphiQL itself loads from a CDN, which an offline deployment cannot reach; this page needs nothing but the
server: it POSTs the query (with variables and an optional bearer token) and shows the JSON answer.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Herald GraphQL</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1rem; display: grid; gap: .5rem;
         grid-template-columns: 1fr 1fr; grid-template-rows: auto 1fr auto; height: calc(100vh - 2rem); }
  header { grid-column: 1 / 3; display: flex; gap: .5rem; align-items: center; }
  textarea, pre { font: 13px ui-monospace, monospace; border: 1px solid #bbb; border-radius: 4px;
                  padding: .5rem; margin: 0; overflow: auto; }
  #query { grid-row: 2; } #result { grid-row: 2 / 4; grid-column: 2; background: #f7f7f7; }
  #variables { grid-row: 3; height: 6rem; }
  input { flex: 1; }
</style>
</head>
<body>
<header>
  <strong>Herald GraphQL</strong>
  <button id="run" title="Ctrl+Enter">Run</button>
  <input id="token" placeholder="bearer token (needed for mutations when auth is on)">
</header>
<textarea id="query" spellcheck="false" aria-label="query">{
  books(limit: 5) { isbn title author addedAt offset }
}</textarea>
<pre id="result" aria-live="polite"></pre>
<textarea id="variables" spellcheck="false" aria-label="variables" placeholder='variables, e.g. {"room": "lobby"}'>
</textarea>
<script>
const $ = (id) => document.getElementById(id);
async function run() {
  let variables = null;
  try {
    variables = $("variables").value.trim() ? JSON.parse($("variables").value) : null;
  } catch (e) {
    $("result").textContent = "variables: " + e.message;
    return;
  }
  const headers = { "Content-Type": "application/json" };
  if ($("token").value.trim()) headers.Authorization = "Bearer " + $("token").value.trim();
  $("result").textContent = "…";
  try {
    const r = await fetch(location.pathname, {
      method: "POST", headers, body: JSON.stringify({ query: $("query").value, variables }),
    });
    $("result").textContent = `HTTP ${r.status}\\n` + JSON.stringify(await r.json(), null, 2);
  } catch (e) {
    $("result").textContent = String(e);
  }
}
$("run").addEventListener("click", run);
document.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
</script>
</body>
</html>
"""
