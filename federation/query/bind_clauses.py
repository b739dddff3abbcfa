"""Resolve the names and types of a parsed query's clauses against a schema.

:class:`ClauseBinder` binds the select list (naming each output and giving its kind),
the GROUP BY keys and grouping sets, ``GROUPING(keys)``, HAVING and ORDER BY. An
arithmetic output is INTEGER when its value is an exact integer for every input
(:func:`_integral`), else DOUBLE.
"""

from __future__ import annotations

from federation.encoding import DOUBLE_FRACTION_BITS, fixed_point_format
from federation.errors import NonAggregateQueryError, QueryTypeError, UnsupportedQueryError
from federation.query.bind_aggregates import bind_aggregate
from federation.query.bound import BoundOrder, OutputColumn
from federation.query.canonical import row_to_sqlglot
from federation.query.expr import ValueType
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
    Text,
    ValueExpr,
    value_name,
)
from federation.query.parse import OrderItem, ParsedQuery
from federation.query.parse_items import SelectExpr
from federation.schema import DatasetSchema
from federation.table import ColumnKind

__all__ = ["ClauseBinder"]

_GROUP_TYPES = (GroupColumn, FloorBucket, WidthBucket)
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


class ClauseBinder:
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
        """``agg`` bound to the schema, its kind and exactness recorded."""
        bound, kind = bind_aggregate(self.schema, agg)
        self.kinds[bound] = kind
        self.scales[bound] = _aggregate_scale(self.schema, bound, kind)
        return bound

    def output(self, expr: SelectExpr, alias: str | None) -> OutputColumn:
        """One select item as an output column: its name, kind and bound expression."""
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
        """The HAVING condition, bound (after :attr:`outputs` is set: it may name them)."""
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
        """An ORDER BY key as the index of the output it names."""
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
