"""The schema is the contract of SPEC §5, and the size limits refuse oversized operations before execution."""

from __future__ import annotations

import pytest
from graphql import build_schema, lexicographic_sort_schema, parse, print_schema, specified_rules, validate
from graphql.utilities import get_introspection_query
from hypothesis import given, settings
from hypothesis import strategies as st

from api.graphql.schema import build_schema as build_herald_schema
from api.graphql.validation import limits_rule, operation_size

# Copied from SPEC §5: names are the contract.
SPEC_SDL = """
type Book { isbn: String!  title: String!  author: String!  addedAt: Float!  offset: String! }
type ChatMessage { id: ID!  room: String!  user: String!  text: String!  ts: Float! }
type Query {
  book(isbn: String!): Book
  books(limit: Int = 20): [Book!]!
  messages(room: String!, limit: Int = 50): [ChatMessage!]!
}
type Mutation {
  addBook(isbn: String!, title: String!, author: String!): Book!
  sendMessage(room: String!, text: String!, key: String): ChatMessage!
}
type Subscription {
  newBook(since: String): Book!
  chatMessage(room: String!, since: String): ChatMessage!
}
"""

SCHEMA = build_herald_schema().graphql_schema


def test_schema_is_exactly_the_spec() -> None:
    expected = print_schema(lexicographic_sort_schema(build_schema(SPEC_SDL)))
    assert print_schema(lexicographic_sort_schema(SCHEMA)) == expected


def errors(query: str, max_depth: int = 3, max_fields: int = 10) -> list[str]:
    rules = (*specified_rules, limits_rule(max_depth, max_fields))
    return [error.message for error in validate(SCHEMA, parse(query), rules)]


def size(query: str) -> tuple[int, int]:
    document = parse(query)
    fragments = {d.name.value: d for d in document.definitions if d.kind == "fragment_definition"}  # type: ignore[attr-defined]
    return operation_size(document.definitions[0], fragments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("{ books { title } }", (1, 2)),
        ("{ a: books { title } b: books { title author } }", (1, 5)),  # aliases count
        ("{ books { ...F } } fragment F on Book { title isbn }", (1, 3)),
        ("{ x: books { ...F } y: books { ...F } } fragment F on Book { title isbn }", (1, 6)),  # expanded per spread
        ("{ books { ... on Book { title } } }", (1, 2)),
        ("{ __typename books { __typename title } }", (1, 4)),  # introspection: no depth, fields counted
        ("{ __schema { types { name fields { name type { name ofType { name } } } } } }", (0, 9)),
        ('{ a: __schema { queryType { name } } b: __type(name: "Book") { name } }', (0, 5)),
    ],
)
def test_depth_and_fields_are_measured(query: str, expected: tuple[int, int]) -> None:
    assert size(query) == expected


def test_an_operation_too_deep_is_refused() -> None:
    assert errors("{ books { title } }", max_depth=1) == []
    assert errors("{ books { title } }", max_depth=0) == ["The operation is nested 1 levels deep; the limit is 0."]


def test_an_operation_selecting_too_many_fields_is_refused_aliases_included() -> None:
    query = "query Many { " + " ".join(f"b{i}: books {{ isbn }}" for i in range(6)) + " }"
    assert errors(query, max_fields=12) == []
    assert errors(query, max_fields=11) == ["Operation 'Many' selects 12 fields; the limit is 11."]


def test_introspection_is_exempt_from_the_depth_limit_not_the_field_limit() -> None:
    """GraphiQL's own introspection query (deep ofType chains, ~230 fields) passes the default limits at any
    depth limit; the same query over a small field limit is refused like any other operation."""
    full = get_introspection_query(descriptions=True, specified_by_url=True, directive_is_repeatable=True)
    assert errors(full, max_depth=1, max_fields=500) == []
    assert errors(full, max_depth=1, max_fields=100)[0].startswith("Operation 'IntrospectionQuery' selects")


def test_an_introspection_alias_bomb_is_refused() -> None:
    # issue 12: 2,000 aliases of __schema in a 129 KB POST blocked a replica's event loop for 6.7 s
    bomb = "{ " + " ".join(f"a{i}: __schema {{ types {{ name fields {{ name }} }} }}" for i in range(2000)) + " }"
    assert errors(bomb, max_fields=500) == ["The operation selects 10000 fields; the limit is 500."]


@settings(max_examples=50, deadline=None, database=None)
@given(aliases=st.integers(min_value=1, max_value=400), limit=st.integers(min_value=1, max_value=1000))
def test_introspection_aliases_count_toward_the_field_limit(aliases: int, limit: int) -> None:
    query = "{ " + " ".join(f'a{i}: __type(name: "Book") {{ name }}' for i in range(aliases)) + " }"
    refused = errors(query, max_depth=1, max_fields=limit)
    assert bool(refused) == (2 * aliases > limit)


def test_unknown_fragments_and_cycles_are_left_to_the_standard_rules() -> None:
    assert errors("{ books { ...Missing } }") == ["Unknown fragment 'Missing'."]
    cyclic = "{ books { ...A } } fragment A on Book { title ...B } fragment B on Book { isbn ...A }"
    assert errors(cyclic) == ["Cannot spread fragment 'A' within itself via 'B'."]


def test_nested_fragment_spreads_are_measured_in_linear_time() -> None:
    # Each level doubles the expanded size: 2**40 fields, measured without expanding them (an expanding
    # walk would not finish within the test timeout).
    fragments = ["fragment F0 on Book { title }"] + [
        f"fragment F{i} on Book {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 41)
    ]
    query = "{ books { ...F40 } } " + " ".join(fragments)
    assert errors(query, max_fields=500) == [f"The operation selects {2**40 + 1} fields; the limit is 500."]
