"""SPEC §7 at the unit level: which tokens ``Auth`` accepts, and ``herald token`` end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import jwt
import pytest

from api.auth import ANONYMOUS, Auth, bearer, token_from
from api.errors import Forbidden, Unauthorized

SECRET = "unit-secret-" + "s" * 60


@pytest.fixture
def auth() -> Auth:
    return Auth(SECRET)


def test_a_token_it_issued_names_its_user_and_rooms(auth: Auth) -> None:
    principal = auth.verify(auth.issue("alice", ttl_s=60, channels=["lobby", "ops"]))
    assert principal.user == "alice"
    assert principal.channels == frozenset({"lobby", "ops"})
    assert principal.expires_at is not None and principal.expires_at > time.time()
    principal.check_room("lobby")
    with pytest.raises(Forbidden):
        principal.check_room("elsewhere")


def test_a_token_without_channels_allows_every_room_and_without_exp_never_expires(auth: Auth) -> None:
    principal = auth.verify(auth.issue("bob"))
    assert principal.channels is None and principal.expires_at is None
    assert principal.may_use("anything") and not principal.expired()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("not-a-jwt", id="malformed"),
        pytest.param(jwt.encode({"sub": "eve"}, "another-secret-" + "x" * 60, algorithm="HS256"), id="wrong-signature"),
        pytest.param(jwt.encode({"sub": "eve", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256"), id="expired"),
        pytest.param(jwt.encode({"user": "eve"}, SECRET, algorithm="HS256"), id="no-sub"),
        pytest.param(
            jwt.encode({"sub": "eve", "channels": "lobby"}, SECRET, algorithm="HS256"), id="channels-not-list"
        ),
        pytest.param(jwt.encode({"sub": "eve"}, SECRET, algorithm="HS512"), id="other-algorithm"),
        pytest.param(jwt.encode({"sub": "\0\n"}, SECRET, algorithm="HS256"), id="sub-only-control-chars"),
    ],
)
def test_bad_tokens_are_unauthorized(auth: Auth, token: str | None) -> None:
    with pytest.raises(Unauthorized):
        auth.verify(token)


def test_an_unsigned_token_is_refused(auth: Auth) -> None:
    unsigned = jwt.encode({"sub": "eve"}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        auth.verify(unsigned)


def test_without_a_secret_the_user_is_the_display_name_cleaned() -> None:
    anonymous = Auth(None)
    assert not anonymous.enabled
    assert anonymous.principal("ignored-token", "carol").user == "carol"
    assert anonymous.principal(None, None).user == ANONYMOUS
    # NUL separates user from connection in presence entries; a newline would forge log lines.
    assert anonymous.principal(None, "ev\0e\n").user == "eve"
    assert anonymous.principal(None, "\0").user == ANONYMOUS
    assert len(anonymous.principal(None, "x" * 500).user) == 64


def test_token_comes_from_the_query_or_a_bearer_header() -> None:
    assert token_from({"token": "q"}, {"authorization": "Bearer h"}) == "q"
    assert token_from({}, {"authorization": "Bearer h"}) == "h"
    assert token_from({}, {"authorization": "bearer  h "}) == "h"
    assert token_from({}, {"authorization": "Basic dXNlcg=="}) is None
    assert bearer("Bearer ") is None


def test_graphql_init_payload_token_or_authorization(auth: Auth) -> None:
    token = auth.issue("dora")
    assert auth.from_init_payload({"token": token}, None).user == "dora"
    assert auth.from_init_payload({"authorization": f"Bearer {token}"}, None).user == "dora"
    assert auth.from_init_payload({}, token).user == "dora"
    with pytest.raises(Unauthorized):
        auth.from_init_payload({"token": 42}, None)


def herald_token(*args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "HERALD_JWT_SECRET"}
    if secret is not None:
        env["HERALD_JWT_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "api", "token", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_herald_token_prints_a_token_the_server_accepts(auth: Auth) -> None:
    result = herald_token("--user", "erin", "--ttl", "120", "--channels", "lobby, ops,")
    assert result.returncode == 0, result.stderr
    principal = auth.verify(result.stdout.strip())
    assert principal.user == "erin"
    assert principal.channels == frozenset({"lobby", "ops"})
    assert principal.expires_at is not None and 100 < principal.expires_at - time.time() <= 121


def test_herald_token_without_a_secret_says_so() -> None:
    result = herald_token("--user", "erin", secret=None)
    assert result.returncode == 2
    assert "HERALD_JWT_SECRET" in result.stderr and result.stdout == ""
