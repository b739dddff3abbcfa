"""Parse one GROUP BY key expression: a column, ``FLOOR``, ``WIDTH_BUCKET`` or ``CASE``
(its shape and literals only; :func:`~federation.query.groups.bind_group` checks it
against the schema).
"""

from __future__ import annotations

import math
from decimal import Decimal

from sqlglot import exp

from federation.errors import UnsupportedQueryError
from federation.query.group_exprs import (
    MAX_BUCKETS,
    CaseBucket,
    FloorBucket,
    GroupColumn,
    GroupExpr,
    WidthBucket,
)
from federation.query.where import column_name, predicate_from_sqlglot

__all__ = ["group_expr_from_sqlglot"]


def _positive_literal(node: exp.Expression, what: str) -> str:
    if isinstance(node, exp.Literal) and not node.is_string:
        text = str(node.this)
        try:
            value = Decimal(text)
        except ArithmeticError:
            value = Decimal(0)
        if value.is_finite() and value > 0 and math.isfinite(float(value)) and float(value) > 0:
            return text
    raise UnsupportedQueryError(f"{what} must be a positive numeric literal, found {node.sql()!r}")


def _number_literal(node: exp.Expression | None, what: str) -> str:
    negative = False
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Neg):
        negative, node = True, node.this
    if isinstance(node, exp.Literal) and not node.is_string:
        text = str(node.this)
        try:
            ok = Decimal(text).is_finite() and math.isfinite(float(text))
        except (ArithmeticError, ValueError):
            ok = False
        if ok:
            return f"-{text}" if negative else text
    found = node.sql() if node is not None else "nothing"
    raise UnsupportedQueryError(f"{what} must be a numeric literal, found {found!r}")


def group_expr_from_sqlglot(node: exp.Expression, table_names: frozenset[str]) -> GroupExpr | None:
    """The group expression ``node`` spells, or ``None`` when it is not of a group form.

    Raises:
        UnsupportedQueryError: A FLOOR, WIDTH_BUCKET or CASE whose shape is not supported.
    """
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Column):
        return GroupColumn(column_name(node, table_names))
    if isinstance(node, exp.Floor):
        return _floor(node, table_names)
    if isinstance(node, exp.WidthBucket):
        return _width_bucket(node, table_names)
    if isinstance(node, exp.Case):
        return _case(node, table_names)
    return None


_FLOOR_HINT = "write FLOOR(column / width) with a positive numeric literal width"


def _floor(node: exp.Floor, table_names: frozenset[str]) -> FloorBucket:
    if node.args.get("decimals") is not None or node.args.get("to") is not None:
        raise UnsupportedQueryError(f"FLOOR with a second argument is not supported; {_FLOOR_HINT}")
    arg = node.this
    while isinstance(arg, exp.Paren):
        arg = arg.this
    if isinstance(arg, exp.Column):
        return FloorBucket(column_name(arg, table_names))
    if isinstance(arg, exp.Div) and isinstance(arg.this, exp.Column):
        width = _positive_literal(arg.expression, "the width in FLOOR(column / width)")
        return FloorBucket(column_name(arg.this, table_names), width)
    raise UnsupportedQueryError(f"GROUP BY {node.sql()!r} is not supported; {_FLOOR_HINT}")


def _width_bucket(node: exp.WidthBucket, table_names: frozenset[str]) -> WidthBucket:
    arg = node.this
    if not isinstance(arg, exp.Column):
        raise UnsupportedQueryError(
            "the first argument of WIDTH_BUCKET must be a column, found "
            f"{arg.sql() if arg is not None else 'nothing'!r}"
        )
    low = _number_literal(node.args.get("min_value"), "the lower bound of WIDTH_BUCKET")
    high = _number_literal(node.args.get("max_value"), "the upper bound of WIDTH_BUCKET")
    count_node = node.args.get("num_buckets")
    if not (
        isinstance(count_node, exp.Literal)
        and not count_node.is_string
        and str(count_node.this).isdigit()
        and 1 <= int(count_node.this) <= MAX_BUCKETS - 2
    ):
        raise UnsupportedQueryError(
            f"the bucket count of WIDTH_BUCKET must be an integer literal from 1 to "
            f"{MAX_BUCKETS - 2}"
        )
    if not Decimal(low) < Decimal(high):
        raise UnsupportedQueryError(
            f"WIDTH_BUCKET needs lower bound < upper bound, found {low} and {high}"
        )
    return WidthBucket(column_name(arg, table_names), low, high, int(count_node.this))


def _label(node: exp.Expression | None) -> str:
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    found = node.sql() if node is not None else "nothing"
    raise UnsupportedQueryError(
        f"CASE buckets need string-literal labels (THEN 'label'), found {found!r}"
    )


def _case(node: exp.Case, table_names: frozenset[str]) -> CaseBucket:
    if node.this is not None:
        raise UnsupportedQueryError(
            "CASE <value> WHEN ... is not supported in GROUP BY; write CASE WHEN <predicate> "
            "THEN 'label' ... END"
        )
    branches = tuple(
        (predicate_from_sqlglot(branch.this, table_names), _label(branch.args.get("true")))
        for branch in node.args.get("ifs") or []
    )
    default = node.args.get("default")
    return CaseBucket(branches, _label(default) if default is not None else None)
