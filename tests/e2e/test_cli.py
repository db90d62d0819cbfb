"""The ``herald`` console script as a newcomer meets it: the installed entry point, run as a process (what each
command says and returns is tested in-process, tests/unit/test_cli.py)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

HERALD = Path(sys.executable).parent / "herald"
ROOT = Path(__file__).resolve().parents[2]


def herald(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HERALD), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_version_prints_the_installed_version() -> None:
    run = herald("--version")
    assert run.returncode == 0
    assert run.stdout.strip() == f"herald {metadata.version('herald')}"


def test_bench_help_gives_defaults_workloads_and_output_formats(tmp_path: Path) -> None:
    run = herald("bench", "--help", cwd=tmp_path)  # not from the checkout: the package is installed
    assert run.returncode == 0, run.stderr
    for text in ("(default 5; --quick 1)", "(default 200", "W5", "Output formats:", "--out", "markdown table"):
        assert text in run.stdout


def test_bench_refuses_an_unknown_option_with_usage() -> None:
    run = herald("bench", "--no-such-option")
    assert run.returncode == 2
    assert "usage: herald bench" in run.stderr


@pytest.mark.timeout(180)
def test_the_wheel_ships_the_benchmarks_and_declares_the_bench_extra(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("herald-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        meta = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert {"benchmarks/run.py", "benchmarks/args.py", "benchmarks/baseline_picows.py"} <= names
    # The offline pages' assets: GraphiQL and friends, each with its licence.
    assert {"api/static/vendor/graphiql/graphiql.min.js", "api/static/vendor/graphiql/LICENSE"} <= names
    assert "Provides-Extra: otel" in meta
    assert "Provides-Extra: bench" in meta
    assert "picows" in meta
