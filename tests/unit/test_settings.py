"""The README's settings table is the documentation: it must match the model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from api.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(HERALD_[A-Z0-9_]+)` \| ([^|]+) \|", re.M)


def readme_settings() -> dict[str, str]:
    return {name: default.strip() for name, default in ROW.findall(README.read_text())}


def model_default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        return "`<hostname>-<pid>`"
    return "unset" if field.default is None else f"`{field.default}`"


def test_readme_lists_every_setting_with_its_default() -> None:
    documented = readme_settings()
    expected = {f"HERALD_{name.upper()}": model_default(name) for name in Settings.model_fields}
    assert documented == expected


def test_settings_come_from_herald_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_HISTORY_SIZE", "7")
    monkeypatch.setenv("HERALD_REDIS_URL", "redis://127.0.0.1:1/0")
    settings = Settings()
    assert settings.history_size == 7
    assert settings.redis_url == "redis://127.0.0.1:1/0"


def test_default_replica_id_differs_per_process_but_is_stable_within_one() -> None:
    child = subprocess.run(
        [sys.executable, "-c", "from api.settings import Settings; print(Settings().replica_id)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    here = Settings().replica_id
    assert here == Settings().replica_id
    assert child != here and child.rsplit("-", 1)[0] == here.rsplit("-", 1)[0]


def test_invalid_setting_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_SEND_QUEUE", "0")
    with pytest.raises(ValueError, match="send_queue"):
        Settings()


def test_replica_acks_are_refused_with_the_embedded_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_REDIS_MIN_REPLICAS_ACK", "1")
    with pytest.raises(ValueError, match="redis_min_replicas_ack needs a real Redis"):
        Settings()
    monkeypatch.setenv("HERALD_REDIS_URL", "redis+sentinel://127.0.0.1:26379/mymaster")
    assert Settings().redis_min_replicas_ack == 1
