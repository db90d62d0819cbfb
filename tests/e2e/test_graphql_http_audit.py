"""SPEC §5, GraphQL over HTTP, checked by the reference: the npm ``graphql-http`` package's ``serverAudits``
(the GraphQL-over-HTTP conformance suite) run by node against a real ``herald serve`` on a real
redis-server. Every MUST and SHOULD audit passes (MAYs too, today; only MUST/SHOULD are required).

Also the cross-site POST of issue 12: a mutation sent as ``text/plain`` or as a form (requests any web
page can make without a CORS preflight) is 415 and publishes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import Herald, RedisServer
from tests.helpers.services import REQUIRE_SERVICES_ENV, require

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

AUDIT_DIR = Path(__file__).resolve().parents[1] / "graphql_http"
NPM_TIMEOUT_S = 300
AUDIT_TIMEOUT_S = 120


def _audit_tool() -> str:
    """node, with the pinned graphql-http installed next to audit.mjs (``npm ci`` once, from the lock file)."""
    node = require("node", "the GraphQL-over-HTTP audit runs the npm graphql-http package")
    if not (AUDIT_DIR / "node_modules" / "graphql-http").is_dir():
        npm = require("npm", "installs the graphql-http package for the audit")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=AUDIT_DIR, capture_output=True, text=True, timeout=NPM_TIMEOUT_S
        )
        if done.returncode != 0:
            reason = f"npm ci failed (no registry?): {done.stderr[-500:]}"
            if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
                pytest.fail(reason)
            pytest.skip(reason)
    return node


@pytest.fixture(scope="module")
def herald(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    replica = Herald(tmp_path_factory.mktemp("audit"), redis_server.url, f"audit-{prefix}", HERALD_KEY_PREFIX=prefix)
    yield replica.start()
    replica.stop()


def test_graphql_http_server_audits_pass_every_must_and_should(herald: Herald, request: pytest.FixtureRequest) -> None:
    node = _audit_tool()
    done = subprocess.run(
        [node, "audit.mjs", f"{herald.http}/graphql"],
        cwd=AUDIT_DIR,
        capture_output=True,
        text=True,
        timeout=AUDIT_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) >= 50, "the audit suite ran only partly"
    failed = [
        f"{result['id']} {result['name']}: {result['reason']}"
        for result in results
        if result["status"] != "ok" and result["name"].split()[0] in ("MUST", "SHOULD")
    ]
    assert failed == []
    request.node.user_properties.append(("graphql_http_audits_ok", sum(r["status"] == "ok" for r in results)))
    request.node.user_properties.append(("graphql_http_audits", len(results)))


ADD_BOOK = 'mutation { addBook(isbn: "%s", title: "T", author: "A") { isbn } }'


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        pytest.param("text/plain", lambda query: json.dumps({"query": query}), id="text-plain-json"),
        pytest.param("text/plain;charset=UTF-8", lambda query: json.dumps({"query": query}), id="text-plain-charset"),
        pytest.param("application/x-www-form-urlencoded", lambda query: f"query={query}", id="form"),
        pytest.param("multipart/form-data; boundary=x", lambda query: json.dumps({"query": query}), id="multipart"),
        pytest.param("application/json; charset=latin-1", lambda query: json.dumps({"query": query}), id="latin-1"),
        pytest.param(None, lambda query: json.dumps({"query": query}), id="no-content-type"),
    ],
)
def test_a_cross_site_post_never_runs_a_mutation(
    herald: Herald, content_type: str | None, encode: Callable[[str], str]
) -> None:
    isbn = f"x-{uuid.uuid4().hex[:8]}"
    headers = {"Content-Type": content_type} if content_type else {}
    # httpx adds no Content-Type of its own to a raw `content=` body
    response = httpx.post(f"{herald.http}/graphql", content=encode(ADD_BOOK % isbn), headers=headers, timeout=5)
    assert response.status_code == 415
    assert response.json()["errors"][0]["message"].startswith("The request body must be application/json")
    assert httpx.get(f"{herald.http}/api/books/{isbn}", timeout=5).status_code == 404  # nothing was added


def test_graphql_response_json_is_negotiated_and_refusals_are_400(herald: Herald) -> None:
    url = f"{herald.http}/graphql"
    modern = {"Accept": "application/graphql-response+json"}

    ok = httpx.post(url, json={"query": "{ books { isbn } }"}, headers=modern, timeout=5)
    assert (ok.status_code, ok.headers["content-type"]) == (200, "application/graphql-response+json")
    for query in ("{ books {", "{ nope }"):
        legacy = httpx.post(url, json={"query": query}, timeout=5)
        refused = httpx.post(url, json={"query": query}, headers=modern, timeout=5)
        assert (legacy.status_code, refused.status_code) == (200, 400)
        assert "data" not in refused.json() and refused.json()["errors"]
    coercion = {"query": "query Q($n: Int) { books(limit: $n) { isbn } }", "variables": {"n": "many"}}
    assert httpx.post(url, json=coercion, headers=modern, timeout=5).status_code == 400
    assert httpx.post(url, json=coercion, timeout=5).status_code == 200
    for extensions in ("x", 1, True, ["a"]):
        bad = httpx.post(url, json={"query": "{ books { isbn } }", "extensions": extensions}, timeout=5)
        assert bad.status_code == 400
    assert (
        httpx.post(url, json={"query": "{ books { isbn } }"}, headers={"Accept": "text/html"}, timeout=5).status_code
        == 406
    )
