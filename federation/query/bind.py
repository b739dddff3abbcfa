"""Bind a parsed query to a dataset schema: validate it and fix the vector layout.

The coordinator and every node bind the same SQL against the same schema and must
obtain the same :attr:`BoundQuery.fingerprint`; a node refuses a task whose
fingerprint differs from its own binding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from sqlglot import exp

from federation.encoding import DOUBLE_FRACTION_BITS, ENCODING_VERSION, fixed_point_format
from federation.errors import (
    NonAggregateQueryError,
    QueryTypeError,
    SchemaMismatchError,
    UnsupportedQueryError,
)
from federation.query.expr import ComparisonOp, Expr, LogicalOp, ValueType
from federation.query.groups import (
    FloorBucket,
    GroupColumn,
    GroupExpr,
    GroupKey,
    WidthBucket,
    bind_group,
    group_name,
    group_to_sqlglot,
)
from federation.query.layout import (
    ColumnAggregation,
    FieldKind,
    ProductAggregation,
    VectorLayout,
    build_layout,
)
from federation.query.outputs import (
    Aggregate,
    AggregateFunction,
    Binary,
    BinaryOp,
    Compare,
    Connective,
    Grouping,
    InSet,
    Negation,
    Negative,
    Null,
    NullTest,
    Number,
    OutputRef,
    Range,
    RowBinary,
    RowColumn,
    RowExp,
    RowExpr,
    RowNegative,
    RowNumber,
    Text,
    ValueExpr,
    aggregates_of,
    value_name,
)
from federation.query.parse import OrderItem, ParsedQuery, SelectExpr
from federation.query.where import bind_predicate, to_sqlglot
from federation.schema import Column, ColumnType, DatasetSchema
from federation.table import ColumnKind

__all__ = ["BoundOrder", "BoundQuery", "OutputColumn", "bind_query", "product_fields"]

_NEEDS_SUM = frozenset(AggregateFunction) - {AggregateFunction.COUNT}
_NEEDS_SQUARES = frozenset(
    {
        AggregateFunction.VAR_SAMP,
        AggregateFunction.VAR_POP,
        AggregateFunction.STDDEV_SAMP,
        AggregateFunction.STDDEV_POP,
    }
)
# Bivariate f(y, x): which of Σy² and Σx² (over the pairs) each needs.
_NEEDS_Y_SQUARES = frozenset({AggregateFunction.CORR, AggregateFunction.REGR_R2})
_NEEDS_X_SQUARES = _NEEDS_Y_SQUARES | {
    AggregateFunction.REGR_SLOPE,
    AggregateFunction.REGR_INTERCEPT,
}
_GROUP_TYPES = (GroupColumn, FloorBucket, WidthBucket)


@dataclass(frozen=True)
class OutputColumn:
    """One column of the result table."""

    name: str
    kind: ColumnKind
    source: SelectExpr


@dataclass(frozen=True)
class BoundOrder:
    """An ORDER BY key over the output: column index and direction."""

    index: int
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class BoundQuery:
    """A query validated against a schema, with its vector layout and fingerprint."""

    dataset: str
    schema: DatasetSchema
    outputs: tuple[OutputColumn, ...]
    group_keys: tuple[GroupKey, ...]
    where: Expr | None
    aggregations: tuple[ColumnAggregation, ...]
    layout: VectorLayout
    order_by: tuple[BoundOrder, ...]
    limit: int | None
    offset: int | None
    canonical_sql: str
    fingerprint: str
    having: ValueExpr | None = None
    products: tuple[ProductAggregation, ...] = ()

    @property
    def vector_length(self) -> int:
        """Length of the uint64 vector every node produces."""
        return self.layout.length


def bind_query(parsed: ParsedQuery, schema: DatasetSchema) -> BoundQuery:
    """Validate ``parsed`` against ``schema`` and compute the vector layout.

    Raises:
        SchemaMismatchError: The query reads a different dataset than the schema's.
        UnknownColumnError: A column does not exist.
        QueryTypeError: An aggregate or operator does not fit a column's type.
        NonAggregateQueryError: A select item or HAVING operand is neither aggregated
            nor a GROUP BY key.
        UnsupportedQueryError: GROUP BY a non-categorical column or a bucket without
            declared bounds, ORDER BY something that is not an output column, duplicate
            output names, too many groups.
    """
    if parsed.dataset.lower() != schema.name.lower():
        raise SchemaMismatchError(
            f"the query reads dataset {parsed.dataset!r} but the schema describes "
            f"{schema.name!r}; bind the query against the schema of its dataset"
        )
    binder = _Binder(schema, parsed)
    group_keys = binder.group_keys
    outputs = tuple(binder.output(item.expression, item.alias) for item in parsed.items)
    if not outputs:
        raise UnsupportedQueryError("the select list is empty; select at least one aggregate")
    seen: set[str] = set()
    for out in outputs:
        if out.name.lower() in seen:
            raise UnsupportedQueryError(
                f"two output columns are named {out.name!r}; give one of them an alias (AS)"
            )
        seen.add(out.name.lower())
    binder.outputs = outputs
    having = binder.condition(parsed.having) if parsed.having is not None else None
    where = bind_predicate(parsed.where, schema) if parsed.where is not None else None
    used = [a for o in outputs for a in aggregates_of(o.source)]
    if having is not None:
        used += aggregates_of(having)
    aggregations, products = _aggregations(schema, used)
    layout = build_layout(group_keys, aggregations, products, binder.sets)
    order_by = tuple(binder.order(item) for item in parsed.order_by)
    canonical_sql = _canonical_sql(
        dataset=schema.name,
        outputs=outputs,
        where=where,
        group_keys=group_keys,
        sets=layout.sets if layout.grouping_sets else None,
        having=having,
        order_by=order_by,
        limit=parsed.limit,
        offset=parsed.offset,
    )
    # The computation is hashed from our own frozen dataclasses (their reprs are
    # deterministic), not from sqlglot's output, so nodes and coordinator agree even
    # when they run different sqlglot versions.
    computation = {
        "outputs": [[o.name, o.kind.value, repr(o.source)] for o in outputs],
        "where": repr(where),
        "group_by": [repr(k.expression) for k in group_keys],
        "grouping_sets": [list(s) for s in layout.sets],
        "having": repr(having),
        "order_by": [repr(o) for o in order_by],
        "limit": parsed.limit,
        "offset": parsed.offset,
    }
    formats: list[object] = [a.format.to_dict() for a in aggregations if a.format is not None]
    formats += [[p.left_format.to_dict(), p.right_format.to_dict()] for p in products]
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "encoding": ENCODING_VERSION,
                "computation": computation,
                "schema": schema.fingerprint(),
                "layout": layout.to_dict(),
                "formats": formats,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    return BoundQuery(
        dataset=schema.name,
        schema=schema,
        outputs=outputs,
        group_keys=group_keys,
        where=where,
        aggregations=aggregations,
        layout=layout,
        order_by=order_by,
        limit=parsed.limit,
        offset=parsed.offset,
        canonical_sql=canonical_sql,
        fingerprint=fingerprint,
        having=having,
        products=products,
    )


_NEVER = 1 << 30  # "scale" of the literal 0: a product with it is an integer


def _integral(expr: ValueExpr, scales: dict[Aggregate, int | None]) -> bool:
    """True when arithmetic ``expr`` yields an exact integer for every possible input.

    That is the case of DuckDB's integer types (counts, integer SUMs and integer
    literals combined with ``+ - *``) and also of a SUM over double columns multiplied
    by an integer literal that is a multiple of ``2**F`` (``F`` its fraction bits: 52
    per double factor, :mod:`federation.encoding`): ``4503599627370496 * SUM(x)`` is the
    exact integer ``Σ round(x·2**52)``. Such outputs are released as exact integers, so
    an analyst (the model SDK) can read the exact sums of double columns.
    """
    scale = _scale(expr, scales)
    return scale is not None and scale <= 0


def _scale(expr: ValueExpr, scales: dict[Aggregate, int | None]) -> int | None:  # noqa: PLR0911 - per node type
    """``k`` such that ``expr·2**k`` is always an integer (``None``: no such ``k``)."""
    match expr:
        case Aggregate():
            return scales[expr]
        case Grouping():
            return 0
        case Number(text):
            if not text.isdigit():
                return None
            value = int(text)
            return -_NEVER if value == 0 else -((value & -value).bit_length() - 1)
        case Negative(x):
            return _scale(x, scales)
        case Binary(op, a, b):
            left, right = _scale(a, scales), _scale(b, scales)
            if op is BinaryOp.DIV or left is None or right is None:
                return None
            if op is BinaryOp.MUL:
                return max(left + right, -_NEVER)
            return max(left, right)
        case _:
            return None


class _Binder:
    """Resolves names and types of the select list, GROUP BY, HAVING and ORDER BY."""

    def __init__(self, schema: DatasetSchema, parsed: ParsedQuery) -> None:
        self.schema = schema
        self.parsed = parsed
        self.kinds: dict[Aggregate, ColumnKind] = {}
        self.scales: dict[Aggregate, int | None] = {}
        self.outputs: tuple[OutputColumn, ...] = ()
        self.group_keys, self.sets = self._grouping_sets()

    def _grouping_sets(self) -> tuple[tuple[GroupKey, ...], tuple[tuple[int, ...], ...] | None]:
        """The bound keys, each once (two spellings of one key, e.g. an alias and its
        expression, are one key), and the grouping sets over them (``None``: one set of
        every key)."""
        keys: list[GroupKey] = []
        index: list[int] = []
        for expr in self.parsed.group_by:
            key = self._group_key(expr)
            found = next((i for i, k in enumerate(keys) if k.expression == key.expression), None)
            if found is None:
                keys.append(key)
                found = len(keys) - 1
            index.append(found)
        written = self.parsed.grouping_sets
        if written is None:
            return tuple(keys), None
        sets = tuple(tuple(sorted({index[i] for i in s})) for s in written)
        if sets == (tuple(range(len(keys))),):
            return tuple(keys), None
        return tuple(keys), sets

    def _group_key(self, expr: GroupExpr) -> GroupKey:
        if isinstance(expr, GroupColumn) and not self.schema.has_column(expr.column):
            # GROUP BY <alias> (a dataset column of that name would take precedence)
            for item in self.parsed.items:
                if item.alias is not None and item.alias.lower() == expr.column.lower():
                    target = item.expression
                    if isinstance(target, Aggregate | Grouping | Negative | Binary):
                        raise UnsupportedQueryError(
                            f"GROUP BY {expr.column} refers to an aggregate; group by "
                            "categorical columns or bucket expressions"
                        )
                    return bind_group(self.schema, target)
        return bind_group(self.schema, expr)

    def grouping(self, expr: Grouping) -> Grouping:
        """``GROUPING(keys)`` with every argument resolved to a GROUP BY key."""
        keys = []
        for arg in expr.keys:
            bound = self._group_key(arg).expression
            if not any(k.expression == bound for k in self.group_keys):
                raise NonAggregateQueryError(
                    f"GROUPING({_group_label(bound)}) needs a GROUP BY key; add it to GROUP BY"
                )
            keys.append(bound)
        return Grouping(tuple(keys))

    def _matching_key(self, expr: GroupExpr, what: str) -> GroupKey:
        bound = bind_group(self.schema, expr).expression
        for key in self.group_keys:
            if key.expression == bound:
                return key
        if isinstance(bound, GroupColumn):
            raise NonAggregateQueryError(
                f"column {bound.column!r} is neither aggregated nor in GROUP BY, so the "
                "query would return individual rows; aggregate it or add it to GROUP BY if "
                "it is categorical"
            )
        raise NonAggregateQueryError(
            f"{what} {_group_label(bound)} is not a GROUP BY key; add it to GROUP BY"
        )

    def aggregate(self, agg: Aggregate) -> Aggregate:
        bound, kind = _bind_aggregate(self.schema, agg)
        self.kinds[bound] = kind
        self.scales[bound] = _aggregate_scale(self.schema, bound, kind)
        return bound

    def output(self, expr: SelectExpr, alias: str | None) -> OutputColumn:
        if isinstance(expr, Aggregate):
            bound = self.aggregate(expr)
            return OutputColumn(alias or _aggregate_name(bound), self.kinds[bound], bound)
        if isinstance(expr, Negative | Binary):
            value = self._arithmetic(expr)
            assert isinstance(value, Negative | Binary)
            kind = ColumnKind.INTEGER if _integral(value, self.scales) else ColumnKind.DOUBLE
            return OutputColumn(alias or value_name(value, _leaf_name), kind, value)
        if isinstance(expr, Grouping):
            grouping = self.grouping(expr)
            return OutputColumn(alias or _leaf_name(grouping), ColumnKind.INTEGER, grouping)
        key = self._matching_key(expr, "select item")
        return OutputColumn(alias or key.name, ColumnKind.GROUP, key.expression)

    def _arithmetic(self, expr: ValueExpr) -> ValueExpr:
        match expr:
            case Aggregate():
                return self.aggregate(expr)
            case Grouping():
                return self.grouping(expr)
            case Number():
                return expr
            case Negative(x):
                return Negative(self._arithmetic(x))
            case Binary(op, a, b):
                return Binary(op, self._arithmetic(a), self._arithmetic(b))
            case _:
                raise UnsupportedQueryError("arithmetic combines aggregates and numbers only")

    # -- HAVING

    def condition(self, expr: ValueExpr) -> ValueExpr:
        bound, vtype = self._value(expr)
        if vtype not in (ValueType.BOOLEAN, ValueType.NULL):
            raise QueryTypeError(f"HAVING must be a condition, found a {vtype.value} value")
        return bound

    def _expect(self, expr: ValueExpr, want: ValueType, what: str) -> ValueExpr:
        bound, vtype = self._value(expr)
        if vtype not in (want, ValueType.NULL):
            raise QueryTypeError(f"{what} needs {want.value} operands, found {vtype.value}")
        return bound

    def _value(self, expr: ValueExpr) -> tuple[ValueExpr, ValueType]:  # noqa: PLR0911, PLR0912 - one case per node type
        match expr:
            case Aggregate():
                return self.aggregate(expr), ValueType.NUMERIC
            case Grouping():
                return self.grouping(expr), ValueType.NUMERIC
            case Number():
                return expr, ValueType.NUMERIC
            case Text():
                return expr, ValueType.STRING
            case Null():
                return expr, ValueType.NULL
            case OutputRef(name):
                return self._reference(name)
            case Negative(x):
                return Negative(self._expect(x, ValueType.NUMERIC, "unary minus")), (
                    ValueType.NUMERIC
                )
            case Binary(op, a, b):
                what = f"arithmetic operator {op.value}"
                left = self._expect(a, ValueType.NUMERIC, what)
                right = self._expect(b, ValueType.NUMERIC, what)
                return Binary(op, left, right), ValueType.NUMERIC
            case Compare(op, a, b):
                (left, lt), (right, rt) = self._value(a), self._value(b)
                _unify(f"comparison {op.value}", lt, rt)
                return Compare(op, left, right), ValueType.BOOLEAN
            case Connective(op, a, b):
                left = self._expect(a, ValueType.BOOLEAN, op.value)
                right = self._expect(b, ValueType.BOOLEAN, op.value)
                return Connective(op, left, right), ValueType.BOOLEAN
            case Negation(x):
                return Negation(self._expect(x, ValueType.BOOLEAN, "NOT")), ValueType.BOOLEAN
            case NullTest(x, negated):
                return NullTest(self._value(x)[0], negated), ValueType.BOOLEAN
            case Range(x, lo, hi, negated):
                (v, vt), (low, lt), (high, ht) = self._value(x), self._value(lo), self._value(hi)
                _unify("BETWEEN", _unify("BETWEEN", vt, lt), ht)
                return Range(v, low, high, negated), ValueType.BOOLEAN
            case InSet(x, values, negated):
                v, vt = self._value(x)
                items = []
                for item in values:
                    b, bt = self._value(item)
                    vt = _unify("IN", vt, bt)
                    items.append(b)
                return InSet(v, tuple(items), negated), ValueType.BOOLEAN
            case _:
                key = self._matching_key(expr, "HAVING operand")  # a group expression
                return key.expression, _key_type(key)

    def _reference(self, name: str) -> tuple[ValueExpr, ValueType]:
        if self.schema.has_column(name):
            col = self.schema.column(name)
            for key in self.group_keys:
                if key.expression == GroupColumn(col.name):
                    return key.expression, ValueType.STRING
        for out in self.outputs:
            if out.name.lower() == name.lower():
                if isinstance(out.source, Aggregate | Grouping | Negative | Binary):
                    return out.source, ValueType.NUMERIC
                key = self._matching_key(out.source, "HAVING operand")
                return key.expression, _key_type(key)
        if self.schema.has_column(name):
            raise NonAggregateQueryError(
                f"HAVING reads column {self.schema.column(name).name!r}, which is neither "
                "aggregated nor a GROUP BY key; aggregate it or filter rows with WHERE"
            )
        raise UnsupportedQueryError(
            f"HAVING names {name!r}, which is neither a column nor an output alias; the "
            f"outputs are {[o.name for o in self.outputs]}"
        )

    # -- ORDER BY

    def order(self, item: OrderItem) -> BoundOrder:
        outputs = self.outputs
        names = [o.name for o in outputs]
        target = item.target
        index: int | None = None
        if isinstance(target, int):
            if not 0 <= target < len(outputs):
                raise UnsupportedQueryError(
                    f"ORDER BY {target + 1} is out of range: the query has {len(outputs)} outputs"
                )
            index = target
        elif isinstance(target, str):
            lowered = [n.lower() for n in names]
            if target.lower() in lowered:
                index = lowered.index(target.lower())
            elif self.schema.has_column(target):
                wanted = GroupColumn(self.schema.column(target).name)
                index = next((i for i, o in enumerate(outputs) if o.source == wanted), None)
        else:
            try:
                bound = self._order_expression(target)
            except NonAggregateQueryError:
                bound = None
            index = next((i for i, o in enumerate(outputs) if o.source == bound), None)
        if index is None:
            raise UnsupportedQueryError(
                "ORDER BY must name an output column (by name, alias or position); the outputs "
                f"are {names}"
            )
        return BoundOrder(index, item.descending, item.nulls_first)

    def _order_expression(self, target: SelectExpr) -> ValueExpr:
        if isinstance(target, Aggregate | Grouping | Negative | Binary):
            return self._arithmetic(target)
        return bind_group(self.schema, target).expression


def _unify(what: str, a: ValueType, b: ValueType) -> ValueType:
    if a is ValueType.NULL:
        return b
    if b is ValueType.NULL or a is b:
        return a
    raise QueryTypeError(f"{what} compares a {a.value} value with a {b.value} value")


def _key_type(key: GroupKey) -> ValueType:
    return ValueType.NUMERIC if isinstance(key.expression, _GROUP_TYPES[1:]) else ValueType.STRING


def _group_label(expr: GroupExpr) -> str:
    return group_to_sqlglot(expr).sql(dialect="duckdb")


def _aggregate_scale(schema: DatasetSchema, agg: Aggregate, kind: ColumnKind) -> int | None:
    """Fraction bits of an aggregate's exact value (``None``: not a dyadic rational)."""
    if kind is ColumnKind.INTEGER:
        return 0
    if agg.operand is not None:
        return DOUBLE_FRACTION_BITS if agg.function is AggregateFunction.SUM else None
    if agg.function is not AggregateFunction.SUM or agg.column is None:
        return None
    columns = [agg.column] if agg.column2 is None else [agg.column, agg.column2]
    return sum(fixed_point_format(schema.column(c)).fraction_bits for c in columns)


def _aggregate_name(agg: Aggregate) -> str:
    if agg.operand is not None:
        return f"{agg.function.value}({row_to_sqlglot(agg.operand).sql(dialect='duckdb')})"
    args = agg.column or "*"
    if agg.column2 is not None:
        args += f" * {agg.column2}" if not agg.function.bivariate else f", {agg.column2}"
    return f"{agg.function.value}({args})"


def _leaf_name(expr: ValueExpr) -> str:
    if isinstance(expr, Aggregate):
        return _aggregate_name(expr)
    if isinstance(expr, Grouping):
        return f"grouping({', '.join(group_name(k) for k in expr.keys)})"
    return repr(expr)  # not reached: arithmetic holds aggregates and numbers only


def _bind_row(schema: DatasetSchema, expr: RowExpr) -> RowExpr:
    """Check a per-row expression's columns (numeric) and spell them as the schema does."""
    match expr:
        case RowColumn(name):
            col = schema.column(name)
            if not col.is_numeric:
                raise QueryTypeError(
                    f"a per-row expression inside SUM needs numeric columns, but {col.name!r} "
                    f"is {col.type.value}"
                )
            return RowColumn(col.name)
        case RowNumber():
            return expr
        case RowBinary(op, a, b):
            return RowBinary(op, _bind_row(schema, a), _bind_row(schema, b))
        case RowNegative(x):
            return RowNegative(_bind_row(schema, x))
        case RowExp(x):
            return RowExp(_bind_row(schema, x))


def row_to_sqlglot(expr: RowExpr) -> exp.Expression:
    """The canonical sqlglot form of a per-row expression."""
    match expr:
        case RowColumn(name):
            return exp.Column(this=_identifier(name))
        case RowNumber(text):
            return exp.Literal.number(text)
        case RowBinary(op, a, b):
            node = _BINARY_NODE[op]
            return exp.Paren(this=node(this=row_to_sqlglot(a), expression=row_to_sqlglot(b)))
        case RowNegative(x):
            return exp.Neg(this=exp.Paren(this=row_to_sqlglot(x)))
        case RowExp(x):
            return exp.Exp(this=row_to_sqlglot(x))


def row_sql(expr: RowExpr) -> str:
    """DuckDB SQL computing a per-row expression in DOUBLE arithmetic.

    Every column is cast to DOUBLE and every literal is the correctly rounded double of
    its decimal text, so the value is the same IEEE computation on every node.
    """
    match expr:
        case RowColumn(name):
            return f'CAST("{name}" AS DOUBLE)'
        case RowNumber(text):
            return f"CAST('{text}' AS DOUBLE)"
        case RowBinary(op, a, b):
            return f"({row_sql(a)} {op.value} {row_sql(b)})"
        case RowNegative(x):
            return f"(-{row_sql(x)})"
        case RowExp(x):
            return f"exp({row_sql(x)})"


def _row_columns(expr: RowExpr) -> list[str]:
    match expr:
        case RowColumn(name):
            return [name]
        case RowNumber():
            return []
        case RowBinary(_, a, b):
            return _row_columns(a) + _row_columns(b)
        case RowNegative(x) | RowExp(x):
            return _row_columns(x)


def row_columns(expr: RowExpr) -> list[str]:
    """The columns a per-row expression reads, without repeats."""
    return list(dict.fromkeys(_row_columns(expr)))


def _derived_key(operand: RowExpr) -> str:
    """The field key of ``SUM(expr)``'s derived value (a hash of the bound expression)."""
    return "expr_" + hashlib.sha256(repr(operand).encode()).hexdigest()[:16]


def _bind_aggregate(schema: DatasetSchema, agg: Aggregate) -> tuple[Aggregate, ColumnKind]:  # noqa: PLR0911 - per aggregate kind
    if agg.operand is not None:
        operand = _bind_row(schema, agg.operand)
        return Aggregate(agg.function, _derived_key(operand), operand=operand), ColumnKind.DOUBLE
    if agg.column is None:
        return agg, ColumnKind.INTEGER
    col = schema.column(agg.column)
    if agg.function is AggregateFunction.SUM and agg.column2 is not None:
        other = schema.column(agg.column2)
        for c in (col, other):
            if not c.is_numeric:
                raise QueryTypeError(
                    f"SUM({col.name} * {other.name}) needs numeric columns, but {c.name!r} "
                    f"is {c.type.value}"
                )
        both_integer = col.type.value == "integer" and other.type.value == "integer"
        kind = ColumnKind.INTEGER if both_integer else ColumnKind.DOUBLE
        return Aggregate(agg.function, col.name, other.name), kind
    if agg.function.bivariate:
        assert agg.column2 is not None
        other = schema.column(agg.column2)
        for c in (col, other):
            if not c.is_numeric:
                raise QueryTypeError(
                    f"{agg.function.value.upper()}({col.name}, {other.name}) needs numeric "
                    f"columns, but {c.name!r} is {c.type.value}"
                )
        return Aggregate(agg.function, col.name, other.name), ColumnKind.DOUBLE
    bound = Aggregate(agg.function, col.name)
    if agg.function is AggregateFunction.COUNT:
        return bound, ColumnKind.INTEGER
    if not col.is_numeric:
        raise QueryTypeError(
            f"{agg.function.value.upper()}({col.name}) needs a numeric column, but "
            f"{col.name!r} is {col.type.value}; count it with COUNT({col.name})"
            + (" or group by it" if col.type.value == "categorical" else "")
        )
    if agg.function is AggregateFunction.SUM and col.type.value == "integer":
        return bound, ColumnKind.INTEGER
    return bound, ColumnKind.DOUBLE


def pair_keys(
    schema: DatasetSchema, products: tuple[ProductAggregation, ...], agg: Aggregate
) -> tuple[str, str, str]:
    """For a bound bivariate ``f(y, x)``: the field keys of y's and x's pair statistics
    and of the cross product (``"y|x"``, ``"x|y"``, ``"a*b"``)."""
    y, x = agg.column, agg.column2
    assert y is not None
    assert x is not None
    for p in products:
        if (p.left.name, p.right.name) in ((y, x), (x, y)):
            return f"{y}|{x}", f"{x}|{y}", p.key
    raise KeyError((y, x))


def product_fields(bound: BoundQuery, agg: Aggregate) -> tuple[str, tuple[FieldKind, str], int]:
    """For a bound ``SUM(a * b)``: the COUNT key of its rows (both non-NULL), the field
    holding the exact ``ΣAB`` and its fraction bits (the value is ``field / 2**bits``).

    ``SUM(a * a)`` reads ``ΣA²`` (:attr:`FieldKind.SUM_SQUARES` of ``a``).
    """
    a, b = agg.column, agg.column2
    assert a is not None
    assert b is not None
    bits = sum(fixed_point_format(bound.schema.column(c)).fraction_bits for c in (a, b))
    if a == b:
        return a, (FieldKind.SUM_SQUARES, a), bits
    for p in bound.products:
        if (p.left.name, p.right.name) in ((a, b), (b, a)):
            return f"{a}|{b}", (FieldKind.SUM_PRODUCTS, p.key), bits
    raise KeyError((a, b))


def _aggregations(
    schema: DatasetSchema, used: list[Aggregate]
) -> tuple[tuple[ColumnAggregation, ...], tuple[ProductAggregation, ...]]:
    needs: dict[tuple[str, str | None], tuple[bool, bool]] = {}
    pairs: dict[frozenset[str], tuple[str, str]] = {}

    def need(column: str, mask: str | None, total: bool, squares: bool) -> None:
        s, q = needs.get((column, mask), (False, False))
        needs[(column, mask)] = (s or total, q or squares)

    derived: dict[str, ColumnAggregation] = {}
    for agg in used:
        if agg.column is None:
            continue
        if agg.operand is not None:  # SUM(expr): a derived DOUBLE value per row
            column = Column(agg.column, ColumnType.DOUBLE)
            text = row_to_sqlglot(agg.operand).sql(dialect="duckdb")
            value_format = replace(fixed_point_format(column), column=f"expression {text}")
            derived[agg.column] = ColumnAggregation(
                column,
                value_format,
                True,
                False,
                expression=row_sql(agg.operand),
                reads=tuple(row_columns(agg.operand)),
            )
            continue
        if agg.column2 is not None and not agg.function.bivariate:  # SUM(a * b)
            first, second = agg.column, agg.column2
            if first == second:
                need(first, None, True, True)
            else:
                need(first, second, False, False)  # the count of rows where both are non-NULL
                pairs.setdefault(frozenset((first, second)), (first, second))
            continue
        if agg.function.bivariate:
            assert agg.column2 is not None
            y, x = agg.column, agg.column2
            need(y, x, True, agg.function in _NEEDS_Y_SQUARES)
            need(x, y, True, agg.function in _NEEDS_X_SQUARES)
            pairs.setdefault(frozenset((y, x)), (y, x))
            continue
        need(agg.column, None, agg.function in _NEEDS_SUM, agg.function in _NEEDS_SQUARES)
    result = []
    for (name, mask), (need_sum, need_squares) in needs.items():
        col = schema.column(name)
        fmt = fixed_point_format(col) if col.is_numeric else None
        mask_col = schema.column(mask) if mask is not None else None
        result.append(ColumnAggregation(col, fmt, need_sum, need_squares, mask_col))
    result += derived.values()
    products = []
    for left, right in pairs.values():
        a, b = schema.column(left), schema.column(right)
        products.append(ProductAggregation(a, b, fixed_point_format(a), fixed_point_format(b)))
    return tuple(result), tuple(products)


def _identifier(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


_BINARY_NODE: dict[BinaryOp, type[exp.Expression]] = {
    BinaryOp.ADD: exp.Add,
    BinaryOp.SUB: exp.Sub,
    BinaryOp.MUL: exp.Mul,
    BinaryOp.DIV: exp.Div,
}
_COMPARE_NODE: dict[ComparisonOp, type[exp.Expression]] = {
    ComparisonOp.EQ: exp.EQ,
    ComparisonOp.NEQ: exp.NEQ,
    ComparisonOp.LT: exp.LT,
    ComparisonOp.LTE: exp.LTE,
    ComparisonOp.GT: exp.GT,
    ComparisonOp.GTE: exp.GTE,
}


def _value_sql(expr: ValueExpr) -> exp.Expression:  # noqa: PLR0911, PLR0912 - one case per node type
    """The canonical sqlglot form of a select item or HAVING expression."""
    match expr:
        case Aggregate(function, _, _, operand) if operand is not None:
            return exp.Anonymous(this=function.value, expressions=[row_to_sqlglot(operand)])
        case Aggregate(function, column, column2):
            args: list[exp.Expression] = [
                exp.Star() if column is None else exp.Column(this=_identifier(column))
            ]
            if column2 is not None and not function.bivariate:
                args = [exp.Mul(this=args[0], expression=exp.Column(this=_identifier(column2)))]
            elif column2 is not None:
                args.append(exp.Column(this=_identifier(column2)))
            return exp.Anonymous(this=function.value, expressions=args)
        case Number(text):
            return exp.Literal.number(text)
        case Text(value):
            return exp.Literal.string(value)
        case Null():
            return exp.Null()
        case Negative(x):
            return exp.Neg(this=exp.Paren(this=_value_sql(x)))
        case Binary(arith, a, b):
            node = _BINARY_NODE[arith]
            return exp.Paren(this=node(this=_value_sql(a), expression=_value_sql(b)))
        case Compare(cmp, a, b):
            return _COMPARE_NODE[cmp](this=_value_sql(a), expression=_value_sql(b))
        case Connective(logical, a, b):
            conn = exp.And if logical is LogicalOp.AND else exp.Or
            return exp.Paren(this=conn(this=_value_sql(a), expression=_value_sql(b)))
        case Negation(x):
            return exp.Not(this=exp.Paren(this=_value_sql(x)))
        case NullTest(x, negated):
            test: exp.Expression = exp.Is(this=_value_sql(x), expression=exp.Null())
            return exp.Not(this=test) if negated else test
        case Range(x, lo, hi, negated):
            between: exp.Expression = exp.Between(
                this=_value_sql(x), low=_value_sql(lo), high=_value_sql(hi)
            )
            return exp.Not(this=exp.Paren(this=between)) if negated else between
        case InSet(x, values, negated):
            member: exp.Expression = exp.In(
                this=_value_sql(x), expressions=[_value_sql(v) for v in values]
            )
            return exp.Not(this=exp.Paren(this=member)) if negated else member
        case OutputRef(name):
            return exp.Column(this=_identifier(name))
        case Grouping(keys):
            return exp.Grouping(expressions=[group_to_sqlglot(k) for k in keys])
        case _:
            return group_to_sqlglot(expr)


def _canonical_sql(
    *,
    dataset: str,
    outputs: tuple[OutputColumn, ...],
    where: Expr | None,
    group_keys: tuple[GroupKey, ...],
    sets: tuple[tuple[int, ...], ...] | None,
    having: ValueExpr | None,
    order_by: tuple[BoundOrder, ...],
    limit: int | None,
    offset: int | None,
) -> str:
    items: list[exp.Expression] = [
        exp.Alias(this=_value_sql(out.source), alias=_identifier(out.name)) for out in outputs
    ]
    select = exp.select(*items).from_(exp.Table(this=_identifier(dataset)))
    if where is not None:
        select = select.where(to_sqlglot(where))
    keys = [group_to_sqlglot(k.expression) for k in group_keys]
    if sets is not None:
        specs = [exp.Tuple(expressions=[keys[k].copy() for k in s]) for s in sets]
        select = select.group_by(exp.GroupingSets(expressions=specs))
    elif keys:
        select = select.group_by(*keys)
    if having is not None:
        select = select.having(_value_sql(having))
    if order_by:
        select = select.order_by(
            *(
                exp.Ordered(
                    this=exp.Literal.number(o.index + 1),
                    desc=o.descending,
                    nulls_first=o.nulls_first,
                )
                for o in order_by
            )
        )
    if limit is not None:
        select = select.limit(exp.Literal.number(limit))
    if offset is not None:
        select = select.offset(exp.Literal.number(offset))
    return select.sql(dialect="duckdb")
