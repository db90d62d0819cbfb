"""herald.js's rules (SPEC §11), unit-tested with node's own test runner (tests/js/herald_rules.test.mjs):
close codes, full-jitter backoff, the first delay after 1012, offsets, dedup, gaps, request order."""

from __future__ import annotations

import subprocess

from tests.helpers.node import JS_DIR
from tests.helpers.services import require

RUN_TIMEOUT_S = 60


def test_herald_js_rules_pass_under_node_test() -> None:
    node = require("node", "node 20 or later")
    done = subprocess.run(
        [node, "--test", "herald_rules.test.mjs"], cwd=JS_DIR, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout
