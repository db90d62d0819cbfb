"""The ``herald`` console script as a newcomer meets it: the installed entry point, run as a process."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from api.settings import Settings

HERALD = Path(sys.executable).parent / "herald"
ROOT = Path(__file__).resolve().parents[2]


def herald(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HERALD), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_version_prints_the_installed_version() -> None:
    run = herald("--version")
    assert run.returncode == 0
    assert run.stdout.strip() == f"herald {metadata.version('herald')}"


def test_bare_herald_prints_help_listing_every_command() -> None:
    run = herald()
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: herald")
    for command in ("serve", "token", "bench"):
        assert f"    {command} " in run.stdout


def test_serve_help_describes_the_command_and_lists_every_setting() -> None:
    run = herald("serve", "--help")
    assert run.returncode == 0, run.stderr
    assert "Run one Herald replica" in run.stdout
    assert "README.md" in run.stdout
    for name in Settings.model_fields:
        assert f"HERALD_{name.upper()} " in run.stdout
    assert "HERALD_PORT                           8000" in run.stdout


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


def herald_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([str(HERALD), *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def test_a_port_in_use_is_one_line_and_status_2_before_anything_starts() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = herald("serve", "--port", str(port))
    assert run.returncode == 2
    assert run.stderr.strip() == f"herald serve: cannot listen on 127.0.0.1:{port}: the address is already in use"
    assert "startup" not in run.stdout + run.stderr


def test_an_invalid_setting_is_one_line_and_status_2() -> None:
    run = herald_env("serve", HERALD_PORT="eighty")
    assert run.returncode == 2
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("herald: invalid settings: HERALD_PORT:")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--ttl", "0"), "--ttl must be a positive number of seconds"),
        (("--ttl", "-5"), "--ttl must be a positive number of seconds"),
        (("--channels", "lobby,no spaces allowed"), "not room names"),
    ],
)
def test_token_refuses_what_it_cannot_honour(args: tuple[str, ...], says: str) -> None:
    run = herald_env("token", "--user", "ada", *args, HERALD_JWT_SECRET="s" * 32)
    assert run.returncode == 2
    assert says in run.stderr and run.stdout == ""


def test_a_short_secret_is_warned_about_once_in_heralds_words() -> None:
    run = herald_env("token", "--user", "ada", HERALD_JWT_SECRET="short")
    assert run.returncode == 0
    assert run.stdout.count(".") == 2  # a JWT
    assert run.stderr.strip() == "herald token: warning: HERALD_JWT_SECRET is shorter than 32 bytes"
