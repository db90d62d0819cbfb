"""SPEC §7 at the unit level: which tokens ``Auth`` accepts, and ``herald token`` end to end."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import subprocess
import sys
import time

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.auth import ANONYMOUS, MAX_SUB_LENGTH, Auth, bearer, token_from
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
    assert principal.may_use("anything") and principal.expires_at is None


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


def _signed(claims: dict[str, object]) -> str:
    """A correctly signed token around ``claims`` exactly as given (json.dumps writes 1e400 as Infinity)."""
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    signature = hmac.new(SECRET.encode(), header + b"." + body, hashlib.sha256).digest()
    return b".".join((header, body, base64.urlsafe_b64encode(signature).rstrip(b"="))).decode()


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"sub": "eve", "exp": 10**400}, id="exp-10^400"),
        pytest.param({"sub": "eve", "exp": float("inf")}, id="exp-infinity"),
        pytest.param({"sub": "eve", "exp": float("nan")}, id="exp-nan"),
        pytest.param({"sub": "eve", "iat": float("inf")}, id="iat-infinity"),
        pytest.param({"sub": "eve", "exp": "soon"}, id="exp-string"),
        pytest.param({"sub": "ali\u0000ce"}, id="sub-with-nul"),
        pytest.param({"sub": "alice\n2026 INFO forged"}, id="sub-with-newline"),
        pytest.param({"sub": "alice\u2028"}, id="sub-with-line-separator"),
        pytest.param({"sub": "alice\ud800"}, id="sub-with-lone-surrogate"),
        pytest.param({"sub": "a" * 100_000}, id="sub-100KB"),
        pytest.param({"sub": "a" * (MAX_SUB_LENGTH + 1)}, id="sub-one-too-long"),
        pytest.param({"sub": 42}, id="sub-number"),
        pytest.param({"sub": ""}, id="sub-empty"),
    ],
)
def test_claims_herald_cannot_represent_are_refused_not_500(auth: Auth, claims: dict[str, object]) -> None:
    with pytest.raises(Unauthorized):
        auth.verify(_signed(claims))


def test_a_subject_at_the_length_bound_is_accepted_unchanged(auth: Auth) -> None:
    sub = "é" * MAX_SUB_LENGTH
    assert auth.verify(_signed({"sub": sub})).user == sub


@settings(max_examples=200, deadline=None, database=None)
@given(
    sub=st.one_of(st.text(max_size=MAX_SUB_LENGTH + 8), st.integers(), st.none()),
    exp=st.one_of(
        st.none(),
        st.integers(min_value=-(10**500), max_value=10**500),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=4),
        st.booleans(),
    ),
)
def test_any_signed_claims_give_the_exact_subject_or_unauthorized(sub: object, exp: object) -> None:
    """Whatever a signed token carries, verify either returns a principal whose user IS the subject
    (never a cleaned, merged variant) with a finite expiry, or raises Unauthorized; nothing else."""
    claims: dict[str, object] = {"sub": sub}
    if exp is not None:
        claims["exp"] = exp
    try:
        principal = Auth(SECRET).verify(_signed(claims))
    except Unauthorized:
        return
    assert principal.user == sub
    assert isinstance(sub, str) and 0 < len(sub) <= MAX_SUB_LENGTH
    assert all(char >= " " and char != "\x7f" for char in sub)
    assert principal.expires_at is None or math.isfinite(principal.expires_at)
