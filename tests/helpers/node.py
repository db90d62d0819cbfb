"""Real JavaScript clients for tests: ``node`` and the npm packages pinned in tests/js (lockfile).

``node_modules()`` installs them with ``npm ci`` on first use (the registry must be reachable then);
without node the tests skip, or fail when HERALD_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers.services import require

JS_DIR = Path(__file__).resolve().parents[1] / "js"
INSTALL_TIMEOUT_S = 300


def node_modules() -> Path:
    """tests/js with its packages installed; returns the directory to run scripts in."""
    require("node", "node 20 or later")
    npm = require("npm", "comes with node")
    if not (JS_DIR / "node_modules" / ".package-lock.json").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            check=True,
            capture_output=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    return JS_DIR
