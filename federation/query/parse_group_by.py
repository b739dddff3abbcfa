"""Parse a GROUP BY clause: its keys and, for GROUPING SETS, ROLLUP or CUBE, its sets.

Keys may be written as expressions, select-list positions or select aliases (aliases
are resolved when binding); a key written twice is one key. Several GROUPING SETS,
ROLLUPs and CUBEs multiply; plain keys beside them are in every set.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from federation.errors import UnsupportedQueryError
from federation.query.groups import (
    CaseBucket,
    FloorBucket,
    GroupColumn,
    GroupExpr,
    WidthBucket,
    group_expr_from_sqlglot,
)
from federation.query.layout import MAX_GROUPING_SETS
from federation.query.parse_items import SelectExpr, literal_int

__all__ = ["parse_group_by"]

_SET_NODES = (exp.GroupingSets, exp.Rollup, exp.Cube)
_MAX_CUBE = 12
"""The most elements of a CUBE (2**12 grouping sets)."""


def parse_group_by(
    group: exp.Expression | None,
    targets: tuple[SelectExpr, ...],
    table_names: frozenset[str],
) -> tuple[tuple[GroupExpr, ...], tuple[tuple[int, ...], ...] | None]:
    """The GROUP BY keys (each once, in first-use order) and, for GROUPING SETS,
    ROLLUP or CUBE, the grouping sets as ascending key indices (``None``: an
    ordinary GROUP BY of every key).

    ``targets`` are the select items' expressions (``GROUP BY 2`` names the second).
    """
    if group is None:
        return (), None
    extra = [k for k, v in group.args.items() if v and k in ("totals", "all")]
    if extra:
        raise UnsupportedQueryError(
            f"GROUP BY {'ALL' if 'all' in extra else '... WITH TOTALS'} is not supported; "
            "name the keys, or use GROUPING SETS"
        )
    elements: list[exp.Expression] = list(group.expressions)
    for name in ("grouping_sets", "rollup", "cube"):
        elements += list(group.args.get(name) or [])
    keys: list[GroupExpr] = []
    plain = not any(isinstance(e, _SET_NODES) for e in elements)

    def index_of(node: exp.Expression) -> int:
        key = _group_key(node, targets, table_names)
        for i, known in enumerate(keys):
            if known == key or (
                isinstance(known, GroupColumn)
                and isinstance(key, GroupColumn)
                and known.column.lower() == key.column.lower()
            ):
                if plain:
                    raise UnsupportedQueryError(f"GROUP BY names {node.sql()!r} twice")
                return i
        keys.append(key)
        return len(keys) - 1

    sets: list[tuple[int, ...]] = [()]
    for element in elements:
        options = _element_sets(element, index_of)
        sets = [tuple(sorted({*a, *b})) for a in sets for b in options]
        if len(sets) > MAX_GROUPING_SETS:
            raise UnsupportedQueryError(
                f"the GROUP BY clause expands to more than {MAX_GROUPING_SETS} grouping "
                "sets; list fewer"
            )
    if sets == [tuple(range(len(keys)))]:
        return tuple(keys), None  # one set of every key: an ordinary GROUP BY
    return tuple(keys), tuple(sets)


def _element_sets(
    node: exp.Expression, index_of: Callable[[exp.Expression], int]
) -> list[tuple[int, ...]]:
    """The grouping sets one GROUP BY element stands for (a plain key: one set)."""
    if isinstance(node, exp.GroupingSets):
        out: list[tuple[int, ...]] = []
        for spec in node.expressions:
            if isinstance(spec, exp.GroupingSets | exp.Rollup | exp.Cube):
                out += _element_sets(spec, index_of)
            else:
                out.append(_set_keys(spec, index_of))
        return out
    if isinstance(node, exp.Rollup | exp.Cube):
        parts = [_set_keys(e, index_of) for e in node.expressions]
        if isinstance(node, exp.Rollup):
            return [tuple(k for p in parts[:n] for k in p) for n in range(len(parts), -1, -1)]
        if len(parts) > _MAX_CUBE:
            raise UnsupportedQueryError(
                f"CUBE of {len(parts)} elements gives {2 ** len(parts)} grouping sets; at "
                f"most {_MAX_CUBE} elements are supported"
            )
        return [
            tuple(k for j, p in enumerate(parts) if mask >> (len(parts) - 1 - j) & 1 for k in p)
            for mask in range(2 ** len(parts) - 1, -1, -1)
        ]
    return [(index_of(node),)]


def _set_keys(node: exp.Expression, index_of: Callable[[exp.Expression], int]) -> tuple[int, ...]:
    """The keys of one grouping set: ``(a, b)``, ``(a)``, ``a`` or ``()``."""
    parts = node.expressions if isinstance(node, exp.Tuple) else [node]
    if isinstance(node, exp.Paren) and isinstance(node.this, exp.Tuple):
        return _set_keys(node.this, index_of)
    if any(isinstance(p, _SET_NODES) for p in parts):
        raise UnsupportedQueryError(
            "GROUPING SETS, ROLLUP and CUBE cannot be nested inside a grouping set's "
            "key list; list them as elements of GROUPING SETS (...) instead"
        )
    return tuple(index_of(p) for p in parts)


def _group_key(
    node: exp.Expression, targets: tuple[SelectExpr, ...], table_names: frozenset[str]
) -> GroupExpr:
    """One GROUP BY key: an expression, a select-list position or an alias."""
    key: GroupExpr | None
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal) and not node.is_string:
        pos = literal_int(node, "a GROUP BY position")
        if not 1 <= pos <= len(targets):
            raise UnsupportedQueryError(
                f"GROUP BY {pos} is out of range: the select list has {len(targets)} items"
            )
        target = targets[pos - 1]
        if not isinstance(target, GroupColumn | FloorBucket | WidthBucket | CaseBucket):
            raise UnsupportedQueryError(f"GROUP BY {pos} refers to an aggregate")
        return target
    key = group_expr_from_sqlglot(node, table_names)
    if key is None:
        raise UnsupportedQueryError(
            f"GROUP BY {node.sql()!r} is not supported; group by categorical columns or "
            "bucket expressions (FLOOR(col / w), WIDTH_BUCKET(col, lo, hi, n), "
            "CASE WHEN ... THEN 'label' ... END), or list grouping sets of them"
        )
    return key
