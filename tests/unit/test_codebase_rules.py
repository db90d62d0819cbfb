"""Rules of the codebase that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def is_close_code(token: tokenize.TokenInfo) -> bool:
    if token.type != tokenize.NUMBER or not token.string.isdigit():
        return False
    value = int(token.string)
    # 1000 itself is too common a number (ms per second, limits) to police.
    return 1001 <= value <= 1015 or 4000 <= value <= 4999


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_close_codes_are_spelled_only_in_errors_py() -> None:
    offenders = []
    for path in python_files("api") + python_files("broker"):
        if path.name == "errors.py":
            continue
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if is_close_code(token):
                offenders.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {token.line.strip()}")
    assert offenders == []


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_broker_knows_nothing_of_http() -> None:
    http = {"fastapi", "starlette", "uvicorn", "api", "graphene", "graphql"}
    for path in python_files("broker"):
        assert imported_modules(path).isdisjoint(http), path


def test_api_reaches_redis_only_through_broker() -> None:
    for path in python_files("api"):
        assert imported_modules(path).isdisjoint({"redis", "fakeredis"}), path


def test_modules_stay_small() -> None:
    for path in python_files("api") + python_files("broker"):
        assert len(path.read_text().splitlines()) <= 400, path


def full_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_api_uses_only_the_broker_facade() -> None:
    # ``broker``'s namespace is its public surface; a submodule import couples api/ to one implementation.
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in python_files("api")
        for name in sorted(full_imports(path))
        if name.startswith("broker.")
    ]
    assert offenders == []
