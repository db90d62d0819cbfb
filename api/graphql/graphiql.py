"""GraphiQL for ``GET /graphql`` in a browser, served entirely from the package.

The GraphiQL 3 UMD build, React 18 and graphql-ws are vendored under ``api/static/vendor`` (see its README for
versions and licences), so the page works offline: schema explorer, autocomplete, queries and mutations over
HTTP, subscriptions over graphql-transport-ws on the same path. URLs are relative to ``/graphql``, so the page
also works behind a path prefix.

A token (when auth is on) goes in ``?token=`` on the page's URL: it becomes the ``Authorization`` header of HTTP
requests and the ``connection_init`` payload of the WebSocket.
"""

from __future__ import annotations

VENDOR = "static/vendor"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Herald GraphQL</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{VENDOR}/graphiql/graphiql.min.css">
<style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="{VENDOR}/react/react.production.min.js"></script>
<script src="{VENDOR}/react-dom/react-dom.production.min.js"></script>
<script src="{VENDOR}/graphql-ws/graphql-ws.min.js"></script>
<script src="{VENDOR}/graphiql/graphiql.min.js"></script>
<script>
(() => {{
  const token = new URLSearchParams(location.search).get("token");
  const http = location.origin + location.pathname;
  const ws = http.replace(/^http/, "ws");
  const fetcher = GraphiQL.createFetcher({{
    url: http,
    headers: token ? {{ Authorization: "Bearer " + token }} : {{}},
    wsClient: graphqlWs.createClient({{
      url: ws,
      lazy: true,
      connectionParams: token ? {{ token }} : {{}},
    }}),
  }});
  const defaultQuery = `# Herald GraphQL. Ctrl-Enter runs; the Docs button explores the schema.
# Subscriptions run over the graphql-transport-ws WebSocket on this path.
{{
  books(limit: 5) {{ isbn title author addedAt offset }}
}}
`;
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {{ fetcher, defaultQuery, isHeadersEditorEnabled: true }}),
  );
}})();
</script>
</body>
</html>
"""
