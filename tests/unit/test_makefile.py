"""``make run`` installs what running needs, ``make test`` the rest (issue 15, item 2). Read from ``make -n``
(print the commands, run none), so nothing is installed here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def planned(target: str, tmp_path: Path, *variables: str) -> list[str]:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # -B: as if nothing were installed yet; a fresh VENV path so no stamp of this checkout counts.
    run = subprocess.run(
        [make, "-n", "-B", target, f"VENV={tmp_path / 'venv'}", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    return [line.rstrip() for line in run.stdout.splitlines() if "pip install" in line or "herald " in line]


def test_make_run_installs_only_the_runtime_dependencies(tmp_path: Path) -> None:
    lines = planned("run", tmp_path)
    installs = [line for line in lines if "pip install" in line and "--upgrade pip" not in line]
    assert installs == [f"{tmp_path / 'venv'}/bin/pip install -q -e ."]
    assert lines[-1] == f"{tmp_path / 'venv'}/bin/herald serve"


def test_make_run_takes_a_port(tmp_path: Path) -> None:
    assert planned("run", tmp_path, "PORT=9001")[-1].endswith("herald serve --port 9001")


def test_make_test_installs_the_test_benchmark_and_tracing_extras_and_the_python_client(tmp_path: Path) -> None:
    installs = [line for line in planned("pytest", tmp_path) if "-e " in line]
    assert installs == [f'{tmp_path / "venv"}/bin/pip install -q -e ".[dev,bench,otel]" -e clients/python']
