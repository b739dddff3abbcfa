"""The row-predicate AST (the WHERE clause): frozen dataclasses, one per allowed construct.

Only what is listed here can appear in a predicate: :mod:`federation.query.where`
converts sqlglot's tree into these nodes and refuses everything else,
:mod:`federation.query.bind_where` checks them against a schema and
:mod:`federation.query.render_where` renders them back to DuckDB SQL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Arithmetic",
    "ArithmeticOp",
    "Between",
    "BooleanLiteral",
    "ColumnRef",
    "Comparison",
    "ComparisonOp",
    "Expr",
    "FunctionCall",
    "InList",
    "IsNull",
    "Like",
    "Logical",
    "LogicalOp",
    "Negate",
    "Not",
    "NullLiteral",
    "NumberLiteral",
    "ScalarFunction",
    "StringLiteral",
    "ValueType",
    "columns_of",
]


class ArithmeticOp(enum.Enum):
    """Binary arithmetic on numeric values."""

    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    MOD = "%"


class ComparisonOp(enum.Enum):
    """Binary comparisons."""

    EQ = "="
    NEQ = "<>"
    LT = "<"
    LTE = "<="
    GT = ">"
    GTE = ">="


class LogicalOp(enum.Enum):
    """Boolean connectives."""

    AND = "AND"
    OR = "OR"


class ScalarFunction(enum.Enum):
    """The scalar functions a predicate may call."""

    ABS = "abs"
    LOWER = "lower"
    UPPER = "upper"
    LENGTH = "length"


class ValueType(enum.Enum):
    """The type class of a predicate sub-expression."""

    NUMERIC = "numeric"
    STRING = "string"
    BOOLEAN = "boolean"
    NULL = "null"


@dataclass(frozen=True)
class ColumnRef:
    """A column of the dataset."""

    name: str


@dataclass(frozen=True)
class NumberLiteral:
    """A finite numeric literal, kept as its validated decimal text."""

    text: str


@dataclass(frozen=True)
class StringLiteral:
    """A string literal."""

    value: str


@dataclass(frozen=True)
class BooleanLiteral:
    """TRUE or FALSE."""

    value: bool


@dataclass(frozen=True)
class NullLiteral:
    """NULL."""


@dataclass(frozen=True)
class Negate:
    """Unary minus."""

    operand: Expr


@dataclass(frozen=True)
class Arithmetic:
    """``left op right`` on numbers."""

    op: ArithmeticOp
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Comparison:
    """``left op right``."""

    op: ComparisonOp
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Logical:
    """``left AND right`` / ``left OR right``."""

    op: LogicalOp
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not:
    """``NOT operand``."""

    operand: Expr


@dataclass(frozen=True)
class IsNull:
    """``operand IS [NOT] NULL``."""

    operand: Expr
    negated: bool = False


@dataclass(frozen=True)
class InList:
    """``operand [NOT] IN (values...)``."""

    operand: Expr
    values: tuple[Expr, ...]
    negated: bool = False


@dataclass(frozen=True)
class Between:
    """``operand [NOT] BETWEEN low AND high``."""

    operand: Expr
    low: Expr
    high: Expr
    negated: bool = False


@dataclass(frozen=True)
class Like:
    """``operand [NOT] LIKE|ILIKE pattern`` with a string-literal pattern."""

    operand: Expr
    pattern: str
    negated: bool = False
    case_insensitive: bool = False


@dataclass(frozen=True)
class FunctionCall:
    """A whitelisted scalar function."""

    function: ScalarFunction
    args: tuple[Expr, ...]


Expr = (
    ColumnRef
    | NumberLiteral
    | StringLiteral
    | BooleanLiteral
    | NullLiteral
    | Negate
    | Arithmetic
    | Comparison
    | Logical
    | Not
    | IsNull
    | InList
    | Between
    | Like
    | FunctionCall
)


def columns_of(expr: Expr) -> list[str]:
    """The column names a predicate reads, in first-use order, without repeats."""
    seen: dict[str, None] = {}

    def walk(e: Expr) -> None:
        match e:
            case ColumnRef(name):
                seen.setdefault(name, None)
            case Negate(x) | Not(x) | IsNull(x) | Like(x):
                walk(x)
            case Arithmetic(_, a, b) | Comparison(_, a, b) | Logical(_, a, b):
                walk(a)
                walk(b)
            case InList(x, values):
                walk(x)
                for v in values:
                    walk(v)
            case Between(x, lo, hi):
                walk(x)
                walk(lo)
                walk(hi)
            case FunctionCall(_, args):
                for a in args:
                    walk(a)
            case _:
                pass

    walk(expr)
    return list(seen)
