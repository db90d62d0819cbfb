"""Each test file sits in the layer ``tests/conftest.py`` describes, so ``pytest tests/unit`` stays fast and
in-process, and only ``tests/e2e`` starts ``herald serve``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
STARTS_HERALD = re.compile(r"\bherald_factory\b|\bHerald\(")
REAL_REDIS = re.compile(r"\bredis_server\b|\bown_redis\b|\bRedisServer\b")


def files(layer: str) -> list[Path]:
    return sorted((TESTS / layer).glob("test_*.py"))


@pytest.mark.parametrize("layer", ["unit", "integration"])
def test_only_e2e_tests_start_herald_serve(layer: str) -> None:
    offenders = [path.name for path in files(layer) if STARTS_HERALD.search(path.read_text())]
    assert offenders == [], f"these start herald serve: move them to tests/e2e ({offenders})"


def test_unit_tests_need_no_redis_server() -> None:
    offenders = [path.name for path in files("unit") if REAL_REDIS.search(path.read_text())]
    assert offenders == [], f"these use a real redis-server: move them to tests/integration ({offenders})"


def test_every_layer_has_tests() -> None:
    assert all(files(layer) for layer in ("unit", "integration", "e2e"))
