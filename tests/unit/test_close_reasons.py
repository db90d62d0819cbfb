"""Every close Herald sends names a reason (issue 15, item 5): each call in api/ that closes a WebSocket
with a code passes a reason that is not empty. (The shutdown close, sent by the server protocol, is checked
end to end in tests/e2e/test_close_reasons.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

API = Path(__file__).resolve().parents[2] / "api"
CLOSERS = {"close", "_close", "close_soon", "send_close", "Close", "close_action"}


def _is_code(arg: ast.expr) -> bool:
    """``CloseCode.X``, or a variable that holds a code (``code``, ``close.code``)."""
    text = ast.unparse(arg)
    return text.startswith("CloseCode.") or text == "code" or text.endswith(".code")


def close_calls() -> list[tuple[str, ast.Call]]:
    found = []
    for path in sorted(API.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in CLOSERS and node.args and _is_code(node.args[0]):
                found.append((f"{path.relative_to(API.parent)}:{node.lineno}", node))
    return found


def test_every_close_with_a_code_has_a_reason() -> None:
    calls = close_calls()
    assert len(calls) >= 10  # the scan sees the real calls
    for where, call in calls:
        reason = (
            call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "reason"), None)
        )
        assert reason is not None, f"{where}: close without a reason"
        assert not (isinstance(reason, ast.Constant) and not reason.value), f"{where}: empty close reason"
