"""``api.identity.identify``: who is asking, the one rule behind HTTP, chat sockets and GraphQL sockets."""

from __future__ import annotations

import pytest

from api.auth import ANONYMOUS, Auth
from api.errors import Unauthorized
from api.identity import Access, identify

SECRET = "identity-secret-" + "s" * 40
on, off = Auth(SECRET), Auth(None)


def test_auth_off_http_is_anonymous_whatever_name_is_given() -> None:
    for access in (Access.READ, Access.WRITE):
        principal = identify(off, access, {"user": "mallory"}, {})
        assert principal is not None and principal.user == ANONYMOUS


def test_auth_off_a_socket_is_whoever_it_says_payload_first() -> None:
    assert identify(off, Access.SOCKET, {"user": "ann"}, {}).user == "ann"  # type: ignore[union-attr]
    assert identify(off, Access.SOCKET, {"user": "ann"}, {}, {"user": "bob"}).user == "bob"  # type: ignore[union-attr]
    assert identify(off, Access.SOCKET, {}, {}, {"user": 7}).user == ANONYMOUS  # type: ignore[union-attr]


def test_auth_on_without_a_token_reads_are_open_and_everything_else_refused() -> None:
    assert identify(on, Access.READ, {}, {}) is None
    with pytest.raises(Unauthorized, match="required to write"):
        identify(on, Access.WRITE, {}, {})
    with pytest.raises(Unauthorized):
        identify(on, Access.SOCKET, {"user": "ann"}, {})


@pytest.mark.parametrize(
    ("query", "headers", "payload"),
    [
        ({"token": "T"}, {}, None),
        ({}, {"authorization": "Bearer T"}, None),
        ({}, {}, {"token": "T"}),
        ({}, {}, {"authorization": "Bearer T"}),
        ({}, {}, {"Authorization": "Bearer T"}),
        ({"token": "T"}, {}, {"token": 42}),
    ],
)
def test_a_token_is_found_every_documented_way(
    query: dict[str, str], headers: dict[str, str], payload: dict[str, object] | None
) -> None:
    token = on.issue("dora")

    def fill(values: dict[str, object] | None) -> dict[str, object] | None:
        if values is None:
            return None
        return {k: (v.replace("T", token) if isinstance(v, str) else v) for k, v in values.items()}

    principal = identify(on, Access.SOCKET, fill(query), fill(headers), fill(payload))  # type: ignore[arg-type]
    assert principal is not None and principal.user == "dora"


def test_the_init_payload_token_wins_over_the_query() -> None:
    assert identify(on, Access.SOCKET, {"token": on.issue("q")}, {}, {"token": on.issue("p")}).user == "p"  # type: ignore[union-attr]


@pytest.mark.parametrize("access", list(Access))
def test_a_bad_token_is_refused_even_for_a_read(access: Access) -> None:
    with pytest.raises(Unauthorized):
        identify(on, access, {"token": "not.a.jwt"}, {})
