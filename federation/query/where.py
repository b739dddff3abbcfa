"""The WHERE clause: sqlglot tree -> checked predicate AST -> DuckDB SQL.

:func:`predicate_from_sqlglot` accepts only the node types of
:mod:`federation.query.expr` (refusing subqueries, aggregates, unknown functions, ...);
:func:`bind_predicate` checks columns and types against a schema; :func:`to_sqlglot`
and :func:`render_predicate` build the SQL back through sqlglot's generator, with every
identifier quoted, every literal escaped and every composite operand parenthesized,
so no text of the analyst's query is ever pasted into SQL.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import ClassVar

from sqlglot import exp

from federation.errors import QueryTypeError, UnsupportedQueryError
from federation.query.expr import (
    Arithmetic,
    ArithmeticOp,
    Between,
    BooleanLiteral,
    ColumnRef,
    Comparison,
    ComparisonOp,
    Expr,
    FunctionCall,
    InList,
    IsNull,
    Like,
    Logical,
    LogicalOp,
    Negate,
    Not,
    NullLiteral,
    NumberLiteral,
    ScalarFunction,
    StringLiteral,
    ValueType,
)
from federation.schema import ColumnType, DatasetSchema

__all__ = [
    "bind_predicate",
    "column_name",
    "predicate_from_sqlglot",
    "render_predicate",
    "to_sqlglot",
]

_ARITHMETIC: dict[type[exp.Expression], ArithmeticOp] = {
    exp.Add: ArithmeticOp.ADD,
    exp.Sub: ArithmeticOp.SUB,
    exp.Mul: ArithmeticOp.MUL,
    exp.Div: ArithmeticOp.DIV,
    exp.Mod: ArithmeticOp.MOD,
}
_COMPARISON: dict[type[exp.Expression], ComparisonOp] = {
    exp.EQ: ComparisonOp.EQ,
    exp.NEQ: ComparisonOp.NEQ,
    exp.LT: ComparisonOp.LT,
    exp.LTE: ComparisonOp.LTE,
    exp.GT: ComparisonOp.GT,
    exp.GTE: ComparisonOp.GTE,
}
_FUNCTIONS: dict[type[exp.Expression], ScalarFunction] = {
    exp.Abs: ScalarFunction.ABS,
    exp.Lower: ScalarFunction.LOWER,
    exp.Upper: ScalarFunction.UPPER,
    exp.Length: ScalarFunction.LENGTH,
}
_ARITH_NODE = {v: k for k, v in _ARITHMETIC.items()}
_CMP_NODE = {v: k for k, v in _COMPARISON.items()}
_FUNC_NODE = {v: k for k, v in _FUNCTIONS.items()}

# ---------------------------------------------------------------- sqlglot -> AST


def column_name(node: exp.Column, table_names: frozenset[str]) -> str:
    """The name of a column reference, checking its optional table qualifier.

    Raises:
        UnsupportedQueryError: ``t.*``, a schema-qualified name, or a qualifier that is
            not the FROM table or its alias.
    """
    if not isinstance(node.this, exp.Identifier):
        raise UnsupportedQueryError("'*' can only appear as COUNT(*)")
    if node.args.get("db") or node.args.get("catalog"):
        raise UnsupportedQueryError(
            f"column reference {node.sql()!r} is qualified with a schema; write the column name"
        )
    qualifier = node.table
    if qualifier and qualifier.lower() not in table_names:
        raise UnsupportedQueryError(
            f"column {node.name!r} is qualified with {qualifier!r}, which is not the FROM table"
        )
    return str(node.this.this)


def _number(text: str) -> NumberLiteral:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UnsupportedQueryError(f"numeric literal {text!r} is not a decimal number") from None
    if not value.is_finite() or not math.isfinite(float(value)):
        raise UnsupportedQueryError(
            f"numeric literal {text!r} is outside the range of a double; use a finite number"
        )
    return NumberLiteral(text)


def predicate_from_sqlglot(node: exp.Expression, table_names: frozenset[str]) -> Expr:
    """Convert a sqlglot predicate tree, refusing anything outside the whitelist.

    Args:
        node: The sqlglot expression (e.g. the ``this`` of a WHERE).
        table_names: Lower-cased names a column may be qualified with (table, alias).

    Raises:
        UnsupportedQueryError: A node type, function or construct is not supported.
    """
    return _Converter(table_names).convert(node)


class _Converter:
    def __init__(self, table_names: frozenset[str]) -> None:
        self.table_names = table_names

    def convert(self, node: exp.Expression) -> Expr:
        kind = type(node)
        if kind in _ARITHMETIC:
            return Arithmetic(
                _ARITHMETIC[kind], self.convert(node.this), self.convert(node.expression)
            )
        if kind in _COMPARISON:
            return Comparison(
                _COMPARISON[kind], self.convert(node.this), self.convert(node.expression)
            )
        if kind in _FUNCTIONS:
            return self._function(node)
        handler = self._HANDLERS.get(kind)
        if handler is None:
            raise _refusal(node)
        return handler(self, node)

    def _paren(self, node: exp.Expression) -> Expr:
        return self.convert(node.this)

    def _column(self, node: exp.Column) -> Expr:
        return ColumnRef(column_name(node, self.table_names))

    def _literal(self, node: exp.Expression) -> Expr:
        return StringLiteral(node.this) if node.is_string else _number(node.this)

    def _boolean(self, node: exp.Expression) -> Expr:
        return BooleanLiteral(bool(node.this))

    def _null(self, node: exp.Expression) -> Expr:
        return NullLiteral()

    def _neg(self, node: exp.Expression) -> Expr:
        return Negate(self.convert(node.this))

    def _logical(self, node: exp.Expression) -> Expr:
        op = LogicalOp.AND if isinstance(node, exp.And) else LogicalOp.OR
        return Logical(op, self.convert(node.this), self.convert(node.expression))

    def _not(self, node: exp.Expression) -> Expr:
        inner = node.this
        while isinstance(inner, exp.Paren):
            inner = inner.this
        negatable: dict[type[exp.Expression], Callable[[_Converter, exp.Expression, bool], Expr]]
        negatable = {
            exp.Is: _Converter._is,
            exp.In: _Converter._in,
            exp.Between: _Converter._between,
            exp.Like: _Converter._like,
            exp.ILike: _Converter._like,
        }
        handler = negatable.get(type(inner))
        if handler is not None and not inner.args.get("negate"):
            return handler(self, inner, True)
        return Not(self.convert(inner))

    def _is(self, node: exp.Expression, negated: bool = False) -> Expr:
        if not isinstance(node.expression, exp.Null):
            raise UnsupportedQueryError(
                "only IS NULL and IS NOT NULL are supported; compare with = for other values"
            )
        return IsNull(self.convert(node.this), negated)

    def _in(self, node: exp.Expression, negated: bool = False) -> Expr:
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise UnsupportedQueryError("IN takes a list of literal values, not a subquery")
        values = tuple(self.convert(v) for v in node.expressions)
        if not values:
            raise UnsupportedQueryError("IN needs at least one value")
        return InList(self.convert(node.this), values, negated)

    def _between(self, node: exp.Expression, negated: bool = False) -> Expr:
        if node.args.get("symmetric"):
            raise UnsupportedQueryError("BETWEEN SYMMETRIC is not supported")
        low, high = node.args["low"], node.args["high"]
        return Between(self.convert(node.this), self.convert(low), self.convert(high), negated)

    def _like(self, node: exp.Expression, negated: bool = False) -> Expr:
        if node.args.get("escape"):
            raise UnsupportedQueryError("LIKE ... ESCAPE is not supported")
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise UnsupportedQueryError("the pattern of LIKE must be a string literal")
        negated = negated or bool(node.args.get("negate"))
        return Like(self.convert(node.this), pattern.this, negated, isinstance(node, exp.ILike))

    def _function(self, node: exp.Expression) -> Expr:
        func = _FUNCTIONS[type(node)]
        if any(v for k, v in node.args.items() if k != "this"):
            raise UnsupportedQueryError(f"{func.value.upper()} takes exactly one argument")
        return FunctionCall(func, (self.convert(node.this),))

    _HANDLERS: ClassVar[dict[type[exp.Expression], Callable[..., Expr]]] = {
        exp.Paren: _paren,
        exp.Column: _column,
        exp.Literal: _literal,
        exp.Boolean: _boolean,
        exp.Null: _null,
        exp.Neg: _neg,
        exp.And: _logical,
        exp.Or: _logical,
        exp.Not: _not,
        exp.Is: _is,
        exp.In: _in,
        exp.Between: _between,
        exp.Like: _like,
        exp.ILike: _like,
    }


def _refusal(node: exp.Expression) -> UnsupportedQueryError:
    if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
        return UnsupportedQueryError("subqueries are not supported")
    if isinstance(node, exp.AggFunc | exp.Window):
        return UnsupportedQueryError(
            "aggregates and window functions are not allowed in WHERE (it filters rows); "
            "put aggregates in the SELECT list"
        )
    if isinstance(node, exp.Func):
        name = str(node.this) if isinstance(node, exp.Anonymous) else node.sql_name()
        allowed = ", ".join(f.value.upper() for f in ScalarFunction)
        return UnsupportedQueryError(
            f"function {name.upper()} is not supported in WHERE; the supported functions "
            f"are {allowed}"
        )
    if isinstance(node, exp.Placeholder | exp.Parameter):
        return UnsupportedQueryError("query parameters are not supported; inline the values")
    return UnsupportedQueryError(
        f"{node.key.upper()} expressions are not supported in WHERE; use comparisons, "
        "AND/OR/NOT, IN, BETWEEN, IS [NOT] NULL, LIKE and arithmetic"
    )


# ---------------------------------------------------------------- binding (types)

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


# ---------------------------------------------------------------- AST -> SQL


def _wrap(node: exp.Expression) -> exp.Expression:
    atomic = exp.Column | exp.Literal | exp.Boolean | exp.Null | exp.Paren | exp.Anonymous
    if isinstance(node, atomic) or type(node) in _FUNCTIONS:
        return node
    return exp.Paren(this=node)


def _sub(expr: Expr) -> exp.Expression:
    return _wrap(to_sqlglot(expr))


def _negated(node: exp.Expression, negated: bool) -> exp.Expression:
    return exp.Not(this=exp.Paren(this=node)) if negated else node


def to_sqlglot(expr: Expr) -> exp.Expression:
    """The sqlglot tree of a predicate; every composite operand is parenthesized."""
    if isinstance(expr, ColumnRef):
        return exp.Column(this=exp.to_identifier(expr.name, quoted=True))
    if isinstance(expr, NumberLiteral):
        return exp.Literal.number(expr.text)
    if isinstance(expr, StringLiteral):
        return exp.Literal.string(expr.value)
    if isinstance(expr, BooleanLiteral):
        return exp.Boolean(this=expr.value)
    if isinstance(expr, NullLiteral):
        return exp.Null()
    return _RENDERERS[type(expr)](expr)


def _render_between(e: Between) -> exp.Expression:
    node = exp.Between(this=_sub(e.operand), low=_sub(e.low), high=_sub(e.high))
    return _negated(node, e.negated)


def _render_like(e: Like) -> exp.Expression:
    cls = exp.ILike if e.case_insensitive else exp.Like
    return _negated(cls(this=_sub(e.operand), expression=exp.Literal.string(e.pattern)), e.negated)


_RENDERERS: dict[type, Callable[..., exp.Expression]] = {
    Negate: lambda e: exp.Neg(this=_sub(e.operand)),
    Arithmetic: lambda e: _ARITH_NODE[e.op](this=_sub(e.left), expression=_sub(e.right)),
    Comparison: lambda e: _CMP_NODE[e.op](this=_sub(e.left), expression=_sub(e.right)),
    Logical: lambda e: (exp.And if e.op is LogicalOp.AND else exp.Or)(
        this=_sub(e.left), expression=_sub(e.right)
    ),
    Not: lambda e: exp.Not(this=_sub(e.operand)),
    IsNull: lambda e: _negated(exp.Is(this=_sub(e.operand), expression=exp.Null()), e.negated),
    InList: lambda e: _negated(
        exp.In(this=_sub(e.operand), expressions=[_sub(v) for v in e.values]), e.negated
    ),
    Between: _render_between,
    Like: _render_like,
    FunctionCall: lambda e: _FUNC_NODE[e.function](this=to_sqlglot(e.args[0])),
}


def render_predicate(expr: Expr) -> str:
    """DuckDB SQL for a (bound) predicate."""
    return to_sqlglot(expr).sql(dialect="duckdb")
