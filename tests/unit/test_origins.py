"""``HERALD_ALLOWED_ORIGINS`` and the same-origin rule (SPEC §7), on ASGI scopes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.origins import invalid_origins, origin_policy
from api.proxy import VIA_TRUSTED_PROXY
from api.settings import Settings


def scope(origin: str | None, host: str = "herald.example:8000", **extra: object) -> dict[str, object]:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    forwarded = extra.pop("forwarded_host", None)
    if forwarded is not None:
        headers.append((b"x-forwarded-host", str(forwarded).encode()))
    return {"type": "websocket", "headers": headers, **extra}


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "herald.example:8000", True),  # not a browser
        ("http://herald.example:8000", "herald.example:8000", True),
        ("HTTP://Herald.Example:8000", "herald.example:8000", True),
        ("https://herald.example", "herald.example", True),  # default port on both sides
        ("https://herald.example:443", "herald.example", True),
        ("http://herald.example", "herald.example:80", True),
        ("http://herald.example:8001", "herald.example:8000", False),
        ("https://herald.example", "herald.example:80", False),
        ("http://evil.example", "herald.example:8000", False),
        ("null", "herald.example:8000", False),
        ("http://herald.example:8000/path", "herald.example:8000", False),
        ("javascript:alert(1)", "herald.example:8000", False),
        ("http://[::1]:8000", "[::1]:8000", True),
    ],
)
def test_same_origin_by_default(origin: str | None, host: str, allowed: bool) -> None:
    assert origin_policy("").allows(scope(origin, host)) is allowed


def test_x_forwarded_host_counts_only_from_a_trusted_proxy() -> None:
    policy = origin_policy("")
    proxied = scope("https://chat.example.com", "10.0.0.5:8000", forwarded_host="chat.example.com")
    assert policy.allows({**proxied, VIA_TRUSTED_PROXY: True})
    assert not policy.allows({**proxied, VIA_TRUSTED_PROXY: False})
    assert not policy.allows(proxied)


def test_listed_origins_and_star() -> None:
    policy = origin_policy("https://app.example.com, http://localhost:3000/")
    assert policy.allows(scope("https://app.example.com"))
    assert policy.allows(scope("https://app.example.com:443"))
    assert policy.allows(scope("http://localhost:3000"))
    assert not policy.allows(scope("http://localhost:3001"))
    assert policy.cors_origins == ["http://localhost:3000", "https://app.example.com"]
    assert origin_policy("*").allows(scope("http://anything.example"))
    assert origin_policy("*").cors_origins == ["*"]
    assert origin_policy("").cors_origins == []


def test_a_setting_that_is_not_origins_is_refused() -> None:
    assert invalid_origins("https://ok.example, ftp://x, not an origin, *") == ["ftp://x", "not an origin"]
    with pytest.raises(ValueError, match="allowed_origins"):
        Settings(allowed_origins="chat.example.com")


hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){0,2}", fullmatch=True)
ports = st.integers(min_value=1, max_value=65535)


@given(origin_host=hosts, origin_port=ports, host=hosts, port=ports, scheme=st.sampled_from(["http", "https"]))
def test_same_origin_means_same_host_and_port(
    origin_host: str, origin_port: int, host: str, port: int, scheme: str
) -> None:
    allowed = origin_policy("").allows(scope(f"{scheme}://{origin_host}:{origin_port}", f"{host}:{port}"))
    assert allowed == ((origin_host, origin_port) == (host, port))
