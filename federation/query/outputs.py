"""Aggregates and the expressions over them: computed select items and HAVING.

The select list may combine aggregates with ``+ - * /``, unary minus, parentheses and
numeric literals (``SUM(x) / COUNT(*)``, ``AVG(x) * 2 + 1``); HAVING is a predicate
over aggregates, GROUP BY keys and output aliases (comparisons, AND/OR/NOT, IS [NOT]
NULL, [NOT] BETWEEN, [NOT] IN). Both are evaluated by the coordinator on the exact
released aggregates, in rational arithmetic (:func:`evaluate`): every rational
aggregate (counts, sums, means, variances, covariances, regression slope, intercept
and R²) enters exactly, the square-root ones (STDDEV_*, CORR) as their correctly
rounded double; the result is rounded once. A division by zero gives NULL (DuckDB
gives ±inf or NaN, PostgreSQL an error), and NULL propagates as in SQL.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from federation.query.expr import ComparisonOp, LogicalOp
from federation.query.groups import GroupExpr

__all__ = [
    "Aggregate",
    "AggregateFunction",
    "Binary",
    "BinaryOp",
    "Compare",
    "Connective",
    "Grouping",
    "InSet",
    "Negation",
    "Negative",
    "NullTest",
    "Number",
    "OutputRef",
    "Range",
    "RowBinary",
    "RowColumn",
    "RowExp",
    "RowExpr",
    "RowNegative",
    "RowNumber",
    "Text",
    "Value",
    "ValueExpr",
    "aggregates_of",
    "evaluate",
    "value_name",
]


class AggregateFunction(enum.Enum):
    """The aggregate functions of the subset (value = canonical SQL name)."""

    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    VAR_SAMP = "var_samp"
    VAR_POP = "var_pop"
    STDDEV_SAMP = "stddev_samp"
    STDDEV_POP = "stddev_pop"
    CORR = "corr"
    COVAR_SAMP = "covar_samp"
    COVAR_POP = "covar_pop"
    REGR_SLOPE = "regr_slope"
    REGR_INTERCEPT = "regr_intercept"
    REGR_R2 = "regr_r2"

    @property
    def bivariate(self) -> bool:
        """True for the two-argument aggregates (over pairs where both are non-NULL)."""
        return self in _BIVARIATE


_BIVARIATE = frozenset(
    {
        AggregateFunction.CORR,
        AggregateFunction.COVAR_SAMP,
        AggregateFunction.COVAR_POP,
        AggregateFunction.REGR_SLOPE,
        AggregateFunction.REGR_INTERCEPT,
        AggregateFunction.REGR_R2,
    }
)


@dataclass(frozen=True)
class RowColumn:
    """A numeric column inside a per-row expression (read as DOUBLE)."""

    name: str


@dataclass(frozen=True)
class RowNumber:
    """A numeric literal inside a per-row expression (its decimal text)."""

    text: str


@dataclass(frozen=True)
class RowBinary:
    """``left op right`` on per-row DOUBLE values."""

    op: BinaryOp
    left: RowExpr
    right: RowExpr


@dataclass(frozen=True)
class RowNegative:
    """Unary minus of a per-row value."""

    operand: RowExpr


@dataclass(frozen=True)
class RowExp:
    """``EXP(operand)`` of a per-row value."""

    operand: RowExpr


RowExpr = RowColumn | RowNumber | RowBinary | RowNegative | RowExp
"""A per-row numeric expression: the argument of ``SUM(expr)`` (evaluated by DuckDB in
DOUBLE on each row, then summed exactly in fixed point)."""


@dataclass(frozen=True)
class Aggregate:
    """An aggregate call; ``column`` is ``None`` only for ``COUNT(*)``.

    The bivariate aggregates ``f(y, x)`` have ``column = y`` and ``column2 = x``
    (for REGR_*, ``y`` is the dependent and ``x`` the independent variable).
    ``SUM(a * b)`` of two plain columns has ``column = a``, ``column2 = b`` (an exact
    cross product). ``SUM(expr)`` of another per-row expression has ``operand = expr``
    and ``column`` set, when bound, to the key of its derived value.
    """

    function: AggregateFunction
    column: str | None
    column2: str | None = None
    operand: RowExpr | None = None


class BinaryOp(enum.Enum):
    """Arithmetic on aggregate values."""

    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"


@dataclass(frozen=True)
class Number:
    """A numeric literal (its decimal text, read exactly)."""

    text: str


@dataclass(frozen=True)
class Text:
    """A string literal (compared with group labels)."""

    value: str


@dataclass(frozen=True)
class Null:
    """NULL."""


@dataclass(frozen=True)
class OutputRef:
    """A name in HAVING: a GROUP BY column or an output alias (resolved when binding)."""

    name: str


@dataclass(frozen=True)
class Negative:
    """Unary minus."""

    operand: ValueExpr


@dataclass(frozen=True)
class Binary:
    """``left op right``."""

    op: BinaryOp
    left: ValueExpr
    right: ValueExpr


@dataclass(frozen=True)
class Compare:
    """``left op right``."""

    op: ComparisonOp
    left: ValueExpr
    right: ValueExpr


@dataclass(frozen=True)
class Connective:
    """``left AND|OR right``."""

    op: LogicalOp
    left: ValueExpr
    right: ValueExpr


@dataclass(frozen=True)
class Negation:
    """``NOT operand``."""

    operand: ValueExpr


@dataclass(frozen=True)
class NullTest:
    """``operand IS [NOT] NULL``."""

    operand: ValueExpr
    negated: bool = False


@dataclass(frozen=True)
class Range:
    """``operand [NOT] BETWEEN low AND high``."""

    operand: ValueExpr
    low: ValueExpr
    high: ValueExpr
    negated: bool = False


@dataclass(frozen=True)
class InSet:
    """``operand [NOT] IN (values...)``."""

    operand: ValueExpr
    values: tuple[ValueExpr, ...]
    negated: bool = False


@dataclass(frozen=True)
class Grouping:
    """``GROUPING(key, ...)`` (also spelled ``GROUPING_ID``): in each output row, the
    bitmask of the keys *not* in the row's grouping set, the last key the lowest bit.

    It tells a row of a grouping set that leaves a key out (NULL there) from the NULL
    group of that key. ``keys`` are GROUP BY keys.
    """

    keys: tuple[GroupExpr, ...]


ValueExpr = (
    Aggregate
    | GroupExpr
    | Grouping
    | Number
    | Text
    | Null
    | OutputRef
    | Negative
    | Binary
    | Compare
    | Connective
    | Negation
    | NullTest
    | Range
    | InSet
)

Value = int | Fraction | float | str | bool | None
"""A value during evaluation: exact ``int``/``Fraction``, a rounded ``float`` (square
roots), a group label, a truth value, or NULL."""


def children(expr: ValueExpr) -> Iterator[ValueExpr]:
    """The direct sub-expressions of ``expr`` (none for leaves)."""
    match expr:
        case Negative(x) | Negation(x) | NullTest(x):
            yield x
        case Binary(_, a, b) | Compare(_, a, b) | Connective(_, a, b):
            yield a
            yield b
        case Range(x, lo, hi):
            yield from (x, lo, hi)
        case InSet(x, values):
            yield x
            yield from values
        case _:
            pass


def aggregates_of(expr: ValueExpr) -> list[Aggregate]:
    """The aggregates ``expr`` reads, in first-use order, without repeats."""
    if isinstance(expr, Aggregate):
        return [expr]
    seen: dict[Aggregate, None] = {}
    for child in children(expr):
        for agg in aggregates_of(child):
            seen.setdefault(agg, None)
    return list(seen)


def value_name(expr: ValueExpr, name_of: Callable[[ValueExpr], str]) -> str:
    """SQL-like text of an arithmetic expression (the default output name)."""

    def text(e: ValueExpr, nested: bool) -> str:
        match e:
            case Binary(op, a, b):
                body = f"{text(a, True)} {op.value} {text(b, True)}"
                return f"({body})" if nested else body
            case Negative(x):
                return f"-{text(x, True)}"
            case Number(t):
                return t
            case _:
                return name_of(e)

    return text(expr, False)


def _number(value: Value) -> int | Fraction | None:
    if value is None:
        return None
    if isinstance(value, bool | str):
        raise TypeError("arithmetic on a non-numeric value")  # prevented by binding
    if isinstance(value, float):
        return Fraction(value)
    return value


def _compare(op: ComparisonOp, a: Value, b: Value) -> bool | None:  # noqa: PLR0911 - per operator
    if a is None or b is None:
        return None
    if isinstance(a, str) != isinstance(b, str):
        raise TypeError("comparison of a string with a number")  # prevented by binding
    x: object = a
    y: object = b
    if op is ComparisonOp.EQ:
        return x == y
    if op is ComparisonOp.NEQ:
        return x != y
    if op is ComparisonOp.LT:
        return bool(x < y)  # type: ignore[operator]
    if op is ComparisonOp.LTE:
        return bool(x <= y)  # type: ignore[operator]
    if op is ComparisonOp.GT:
        return bool(x > y)  # type: ignore[operator]
    return bool(x >= y)  # type: ignore[operator]


def _and(a: Value, b: Value) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: Value, b: Value) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _not(a: Value) -> bool | None:
    return None if a is None else not a


def evaluate(expr: ValueExpr, leaf: Callable[[ValueExpr], Value]) -> Value:  # noqa: PLR0911, PLR0912 - one case per node type
    """Evaluate ``expr`` exactly; ``leaf`` gives aggregates' and group keys' values."""
    match expr:
        case Number(text):
            return Fraction(Decimal(text)) if not text.isdigit() else int(text)
        case Text(value):
            return value
        case Null():
            return None
        case Negative(x):
            v = _number(evaluate(x, leaf))
            return None if v is None else -v
        case Binary(op, a, b):
            left, right = _number(evaluate(a, leaf)), _number(evaluate(b, leaf))
            if left is None or right is None:
                return None
            if op is BinaryOp.ADD:
                return left + right
            if op is BinaryOp.SUB:
                return left - right
            if op is BinaryOp.MUL:
                return left * right
            return None if right == 0 else Fraction(left) / right
        case Compare(cmp, a, b):
            return _compare(cmp, evaluate(a, leaf), evaluate(b, leaf))
        case Connective(conn, a, b):
            first, second = evaluate(a, leaf), evaluate(b, leaf)
            return _and(first, second) if conn is LogicalOp.AND else _or(first, second)
        case Negation(x):
            return _not(evaluate(x, leaf))
        case NullTest(x, negated):
            is_null = evaluate(x, leaf) is None
            return not is_null if negated else is_null
        case Range(x, lo, hi, negated):
            subject = evaluate(x, leaf)
            inside = _and(
                _compare(ComparisonOp.GTE, subject, evaluate(lo, leaf)),
                _compare(ComparisonOp.LTE, subject, evaluate(hi, leaf)),
            )
            return _not(inside) if negated else inside
        case InSet(x, values, negated):
            member = evaluate(x, leaf)
            found: bool | None = False
            for item in values:
                found = _or(found, _compare(ComparisonOp.EQ, member, evaluate(item, leaf)))
            return _not(found) if negated else found
        case _:
            return leaf(expr)
