"""What the ``herald`` command says and returns, run in-process through ``api.cli.main`` (the installed
entry point itself, ``--version`` and ``bench`` are run as processes in tests/e2e/test_cli.py)."""

from __future__ import annotations

import socket

import pytest

from api.auth import Auth
from api.cli import main
from api.settings import Settings

SECRET = "s" * 32


def test_bare_herald_prints_help_listing_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: herald")
    for command in ("serve", "token", "bench"):
        assert f"    {command} " in out


def test_serve_help_describes_the_command_and_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Run one Herald replica" in out
    assert "README.md" in out
    for name in Settings.model_fields:
        assert f"HERALD_{name.upper()} " in out
    assert "HERALD_PORT                           8000" in out
    assert "HERALD_REPLICA_ID                     <hostname>-<pid>" in out


def test_a_port_in_use_is_one_line_and_status_2_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    run = capsys.readouterr()
    assert run.err.strip() == f"herald serve: cannot listen on 127.0.0.1:{port}: the address is already in use"
    assert run.out == ""


def test_an_address_that_cannot_be_bound_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "192.0.2.1", "--port", "0"]) == 2  # TEST-NET-1: never this machine's
    assert (
        capsys.readouterr().err.strip() == "herald serve: cannot listen on 192.0.2.1:0: Cannot assign requested address"
    )


def test_an_invalid_setting_is_one_line_and_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HERALD_PORT", "eighty")
    assert main(["serve"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("herald: invalid settings: HERALD_PORT:")


def test_token_prints_a_jwt_herald_accepts_for_its_user_and_rooms(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HERALD_JWT_SECRET", SECRET)
    assert main(["token", "--user", "ada", "--ttl", "60", "--channels", "lobby, ops"]) == 0
    run = capsys.readouterr()
    assert run.err == ""
    principal = Auth(SECRET).verify(run.out.strip())
    assert principal.user == "ada"
    assert principal.may_use("lobby") and principal.may_use("ops") and not principal.may_use("elsewhere")
    assert principal.expires_at is not None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--ttl", "0"), "--ttl must be a positive number of seconds"),
        (("--ttl", "-5"), "--ttl must be a positive number of seconds"),
        (("--channels", "lobby,no spaces allowed"), "not room names"),
    ],
)
def test_token_refuses_what_it_cannot_honour(
    args: tuple[str, ...], says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HERALD_JWT_SECRET", SECRET)
    assert main(["token", "--user", "ada", *args]) == 2
    run = capsys.readouterr()
    assert says in run.err and run.out == ""


def test_token_without_a_secret_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HERALD_JWT_SECRET", raising=False)
    assert main(["token", "--user", "ada"]) == 2
    assert capsys.readouterr().err.strip() == "herald token: HERALD_JWT_SECRET is not set"


def test_a_short_secret_is_warned_about_once_in_heralds_words(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HERALD_JWT_SECRET", "short")
    assert main(["token", "--user", "ada"]) == 0  # pytest turns warnings into errors: PyJWT's own is silenced
    run = capsys.readouterr()
    assert run.out.count(".") == 2  # a JWT
    assert run.err.strip() == "herald token: warning: HERALD_JWT_SECRET is shorter than 32 bytes"
