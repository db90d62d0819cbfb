"""Size limits checked with the other validation rules, so an oversized operation never executes.

``HERALD_GRAPHQL_MAX_DEPTH`` counts nesting as graphql-depth-limit (and graphene's ``depth_limit_validator``)
does: root fields are depth 0, so ``{ books { title } }`` has depth 1. ``HERALD_GRAPHQL_MAX_FIELDS`` counts
every field the operation selects, aliases included and fragments expanded where they are spread. Introspection
fields (``__schema``, ``__type``, ``__typename``) and everything under them are exempt from the depth limit, so
GraphiQL's and client tooling's deep ``ofType`` chains keep working, but not from the field limit: 2,000 aliases
of ``__schema { types { fields { name } } }`` are 8,000 fields, refused before they block the event loop.

Graphene's ``depth_limit_validator`` is not used: it raises ``KeyError`` on a spread of an unknown fragment,
recurses forever on a fragment cycle and walks a fragment once per spread (exponential in nested spreads).
Here each fragment is measured once (memoised), unknown fragments and cycles count as empty (the standard
rules ``KnownFragmentNames`` and ``NoFragmentCycles`` report them), so the walk is linear in the document.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from graphql.language import SKIP

Size = tuple[int, int]  # (depth, fields)


class _Measure:
    """Depth and field count of selection sets within one document."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self._fragments = fragments
        self._memo: dict[str, Size] = {}
        self._visiting: set[str] = set()

    def selection_set(self, node: SelectionSetNode) -> Size:
        depth = fields = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                inner_depth, inner_fields = (
                    self.selection_set(selection.selection_set) if selection.selection_set else (-1, 0)
                )
                fields += 1 + inner_fields
                if not selection.name.value.startswith("__"):  # introspection: counted, not measured for depth
                    depth = max(depth, inner_depth + 1)
            elif isinstance(selection, InlineFragmentNode):
                inner_depth, inner_fields = self.selection_set(selection.selection_set)
                depth, fields = max(depth, inner_depth), fields + inner_fields
            elif isinstance(selection, FragmentSpreadNode):
                inner_depth, inner_fields = self.fragment(selection.name.value)
                depth, fields = max(depth, inner_depth), fields + inner_fields
        return depth, fields

    def fragment(self, name: str) -> Size:
        if name in self._memo:
            return self._memo[name]
        definition = self._fragments.get(name)
        if definition is None or name in self._visiting:
            return 0, 0
        self._visiting.add(name)
        try:
            size = self._memo[name] = self.selection_set(definition.selection_set)
        finally:
            self._visiting.discard(name)
        return size


def operation_size(operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]) -> Size:
    """(depth, fields) of ``operation``; depth is 0 for an operation selecting only leaf root fields."""
    depth, fields = _Measure(fragments).selection_set(operation.selection_set)
    return max(depth, 0), fields


def limit_errors(document: DocumentNode, max_depth: int, max_fields: int) -> list[GraphQLError]:
    """The size errors of every operation in ``document``: a walk of the syntax tree alone, so a replica can
    refuse an oversized document before the standard rules (each a full visit with type information,
    ~0.2 s apiece for a 2,000-alias document) run at all."""
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    errors: list[GraphQLError] = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            errors.extend(_operation_errors(definition, fragments, max_depth, max_fields))
    return errors


def _operation_errors(
    node: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode], max_depth: int, max_fields: int
) -> list[GraphQLError]:
    depth, fields = operation_size(node, fragments)
    label = f"Operation '{node.name.value}'" if node.name else "The operation"
    errors = []
    if depth > max_depth:
        errors.append(GraphQLError(f"{label} is nested {depth} levels deep; the limit is {max_depth}.", node))
    if fields > max_fields:
        errors.append(GraphQLError(f"{label} selects {fields} fields; the limit is {max_fields}.", node))
    return errors


def limits_rule(max_depth: int, max_fields: int) -> type[ASTValidationRule]:
    """The same limits as a validation rule (for ``graphql.validate`` alongside the standard rules)."""

    class OperationLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self._fragments = {
                definition.name.value: definition
                for definition in context.document.definitions
                if isinstance(definition, FragmentDefinitionNode)
            }

        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> Any:
            for error in _operation_errors(node, self._fragments, max_depth, max_fields):
                self.report_error(error)
            return SKIP

    return OperationLimits
