"""Bind a predicate to a schema (:func:`bind_predicate`): schema-spelled columns, and the
operand types of every operator checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from federation.errors import QueryTypeError
from federation.query.expr import (
    Arithmetic,
    Between,
    BooleanLiteral,
    ColumnRef,
    Comparison,
    Expr,
    FunctionCall,
    InList,
    IsNull,
    Like,
    Logical,
    Negate,
    Not,
    NullLiteral,
    NumberLiteral,
    ScalarFunction,
    StringLiteral,
    ValueType,
)
from federation.schema import ColumnType, DatasetSchema

__all__ = ["bind_predicate"]

_COLUMN_VALUE_TYPE = {
    ColumnType.INTEGER: ValueType.NUMERIC,
    ColumnType.DOUBLE: ValueType.NUMERIC,
    ColumnType.CATEGORICAL: ValueType.STRING,
    ColumnType.TEXT: ValueType.STRING,
}
_LITERAL_TYPE = {
    NumberLiteral: ValueType.NUMERIC,
    StringLiteral: ValueType.STRING,
    BooleanLiteral: ValueType.BOOLEAN,
    NullLiteral: ValueType.NULL,
}


def bind_predicate(expr: Expr, schema: DatasetSchema) -> Expr:
    """Check a predicate against a schema; return it with schema-spelled column names.

    Raises:
        UnknownColumnError: A column does not exist.
        QueryTypeError: An operator is applied to values of the wrong type, or the
            predicate is not a boolean condition.
    """
    bound, vtype = _Binder(schema).bind(expr)
    if vtype not in (ValueType.BOOLEAN, ValueType.NULL):
        raise QueryTypeError(
            f"WHERE must be a boolean condition, found a {vtype.value} expression; "
            "compare it, e.g. WHERE x > 0"
        )
    return bound


def _unify(what: str, a: ValueType, b: ValueType) -> ValueType:
    if a is ValueType.NULL:
        return b
    if b is ValueType.NULL or a is b:
        return a
    raise QueryTypeError(
        f"{what} needs operands of the same type, found {a.value} and {b.value}; "
        "compare numbers with numbers and text with text (quote string literals)"
    )


class _Binder:
    def __init__(self, schema: DatasetSchema) -> None:
        self.schema = schema

    def expect(self, expr: Expr, want: ValueType, what: str) -> Expr:
        bound, vtype = self.bind(expr)
        if vtype not in (want, ValueType.NULL):
            raise QueryTypeError(f"{what} needs a {want.value} operand, found {vtype.value}")
        return bound

    def bind(self, expr: Expr) -> tuple[Expr, ValueType]:
        literal = _LITERAL_TYPE.get(type(expr))
        if literal is not None:
            return expr, literal
        return self._BINDERS[type(expr)](self, expr)

    def _column(self, expr: ColumnRef) -> tuple[Expr, ValueType]:
        col = self.schema.column(expr.name)
        return ColumnRef(col.name), _COLUMN_VALUE_TYPE[col.type]

    def _negate(self, expr: Negate) -> tuple[Expr, ValueType]:
        return Negate(
            self.expect(expr.operand, ValueType.NUMERIC, "unary minus")
        ), ValueType.NUMERIC

    def _arithmetic(self, expr: Arithmetic) -> tuple[Expr, ValueType]:
        what = f"arithmetic operator {expr.op.value}"
        left = self.expect(expr.left, ValueType.NUMERIC, what)
        right = self.expect(expr.right, ValueType.NUMERIC, what)
        return Arithmetic(expr.op, left, right), ValueType.NUMERIC

    def _comparison(self, expr: Comparison) -> tuple[Expr, ValueType]:
        (left, lt), (right, rt) = self.bind(expr.left), self.bind(expr.right)
        _unify(f"comparison {expr.op.value}", lt, rt)
        return Comparison(expr.op, left, right), ValueType.BOOLEAN

    def _logical(self, expr: Logical) -> tuple[Expr, ValueType]:
        left = self.expect(expr.left, ValueType.BOOLEAN, expr.op.value)
        right = self.expect(expr.right, ValueType.BOOLEAN, expr.op.value)
        return Logical(expr.op, left, right), ValueType.BOOLEAN

    def _not(self, expr: Not) -> tuple[Expr, ValueType]:
        return Not(self.expect(expr.operand, ValueType.BOOLEAN, "NOT")), ValueType.BOOLEAN

    def _is_null(self, expr: IsNull) -> tuple[Expr, ValueType]:
        return IsNull(self.bind(expr.operand)[0], expr.negated), ValueType.BOOLEAN

    def _in_list(self, expr: InList) -> tuple[Expr, ValueType]:
        operand, vtype = self.bind(expr.operand)
        values = []
        for v in expr.values:
            bound, vt = self.bind(v)
            vtype = _unify("IN", vtype, vt)
            values.append(bound)
        return InList(operand, tuple(values), expr.negated), ValueType.BOOLEAN

    def _between(self, expr: Between) -> tuple[Expr, ValueType]:
        (operand, ot), (low, lt), (high, ht) = (
            self.bind(expr.operand),
            self.bind(expr.low),
            self.bind(expr.high),
        )
        _unify("BETWEEN", _unify("BETWEEN", ot, lt), ht)
        return Between(operand, low, high, expr.negated), ValueType.BOOLEAN

    def _like(self, expr: Like) -> tuple[Expr, ValueType]:
        operand = self.expect(expr.operand, ValueType.STRING, "LIKE")
        return Like(operand, expr.pattern, expr.negated, expr.case_insensitive), ValueType.BOOLEAN

    def _function(self, expr: FunctionCall) -> tuple[Expr, ValueType]:
        what = f"{expr.function.value.upper()}()"
        if expr.function is ScalarFunction.ABS:
            arg = self.expect(expr.args[0], ValueType.NUMERIC, what)
            return FunctionCall(expr.function, (arg,)), ValueType.NUMERIC
        arg = self.expect(expr.args[0], ValueType.STRING, what)
        out = ValueType.NUMERIC if expr.function is ScalarFunction.LENGTH else ValueType.STRING
        return FunctionCall(expr.function, (arg,)), out

    _BINDERS: ClassVar[dict[type, Callable[..., tuple[Expr, ValueType]]]] = {
        ColumnRef: _column,
        Negate: _negate,
        Arithmetic: _arithmetic,
        Comparison: _comparison,
        Logical: _logical,
        Not: _not,
        IsNull: _is_null,
        InList: _in_list,
        Between: _between,
        Like: _like,
        FunctionCall: _function,
    }
