"""How a node computes its exact per-group integers: the formulations of the local query.

For each aggregated numeric column a node needs, per group, ``COUNT(col)``, ``S1 = ΣX``
and (for variances) ``S2 = ΣX²`` of the fixed-point values ``X``
(:mod:`federation.encoding`). Every *tier* below yields exactly these integers (but
CENTERED's ``S2``, within a certified bound), so the vector is the same whichever runs;
tiers differ in speed and in the data they accept.
The node tries the fastest tier of every column first and escalates when a tier does
not apply to its data (:func:`federation.query.local.compute_local`).

What costs time in DuckDB (one thread, 10**6 rows): each per-row operation and each
aggregate, ~0.5-1.5 ms; in a GROUP BY, a BIGINT ``sum`` whose running total leaves int64
(its HUGEINT slow path, ~4 ms) and BIGINT ``*``/``+`` with overflow checks (~2 ms);
``sum`` over DOUBLE, shifts, masks and casts to DOUBLE are cheap. Without GROUP BY the
HUGEINT sums are cheap, and with many groups each extra aggregate costs more (its
states miss the cache): there the plan with the fewest aggregates wins.

* :attr:`Tier.SMALL` (integer columns, with squares): ``S1 = Σ CAST(x AS BIGINT)`` and
  ``S2 = Σ f·f`` in DOUBLE with ``f = |x|``, one certified sum (below), which also
  proves ``|x| < 2**26.5``.
* :attr:`Tier.NARROW` (double columns with ``|x| < 2**11``): ``X`` as BIGINT; the
  DOUBLE->BIGINT cast fails on larger values, NaN and ±inf, which sends the query to
  the reference tier (see :func:`~federation.query.column_sums.narrow_parts`). With a
  GROUP BY of few slots, ``S2`` comes from ten certified DOUBLE sums of products of
  16-bit limbs of ``|X|``; otherwise from the reference TWO limb plan.
* Cross products ``ΣXY``: each column the products read is an item of its own
  (:func:`product_columns`); on NARROW an unbounded double is split into two BIGINT
  limbs when ``|x| < 2**11`` (four sums a product instead of nine,
  :func:`~federation.query.product_sums.product_parts`), else it keeps its reference
  limbs.
* :attr:`Tier.CENTERED` (double columns with ``|x| < 2**11`` whose squares feed the
  variances): ``S1`` as on NARROW, and ``S2`` from one compensated DOUBLE sum of
  ``(X - C)²`` around an offset near the node's column mean, within a certified bound
  of the exact ``S2`` (:mod:`federation.query.centered`): the one tier that is not
  exact, by at most ``2**-43`` of each group's centred sum of squares.
* :attr:`Tier.REFERENCE`: 31-bit limbs whose products fit BIGINT, summed in HUGEINT
  (:class:`~federation.encoding.LimbPlan`); exact for every accepted value, and the
  tier that reports out-of-range values, NaN and failed WHERE clauses.

Certified DOUBLE sums: every summand is a product ``f·g`` of non-negative integers held
exactly as DOUBLE. If the DOUBLE result is below 2**53, the sum is exact, whatever order
or grouping DuckDB adds in: rounding is monotone and 2**53 is representable, so once an
exact product or partial sum of non-negative terms reaches 2**53 its rounded value, and
every later partial sum, stays >= 2**53; below that every product and partial sum is an
integer below 2**53, held exactly, so no operation rounds. (This assumes DuckDB's
``sum(DOUBLE)`` adds with IEEE round-to-nearest, as documented: a plain, not a
compensated, sum.) It needs no bound on the number of rows: 16-bit limbs certify for at
least 2**21 rows per group, typical data for several million; a column whose sums do
not certify is escalated to the next tier.

This module assembles a formulation (:func:`build_plan`) and writes its SQL
(:func:`render`); the tiers and which items may use them are in
:mod:`federation.query.tiers`, the :class:`~federation.query.plan.Plan` in
:mod:`federation.query.plan`, each tier's column sums in
:mod:`federation.query.column_sums`, the cross products in
:mod:`federation.query.product_sums` and the SQL text helpers in
:mod:`federation.query.sql_text`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from federation.errors import DataError
from federation.query.bind import BoundQuery
from federation.query.centered import centered_parts
from federation.query.column_sums import FEW_SLOTS, narrow_parts, reference_parts, small_parts
from federation.query.grouping_sets import choose_mode, outer_sql, unique_sets, value_alias
from federation.query.groups import WidthBucket, group_check, group_sql
from federation.query.layout import FieldKind
from federation.query.plan import CERTIFIED_LIMIT, Plan, Sum
from federation.query.product_sums import product_parts
from federation.query.sql_text import masked, quote, range_condition, string_literal
from federation.query.tiers import (
    Tier,
    column_tiers,
    item_tiers,
    narrow_probes,
    product_columns,
    reference_tiers,
    split_tiers,
)
from federation.query.where import render_predicate
from federation.schema import Column, ColumnType

__all__ = [
    "CERTIFIED_LIMIT",
    "Plan",
    "Tier",
    "build_plan",
    "column_tiers",
    "domain_error",
    "item_tiers",
    "narrow_probes",
    "product_columns",
    "quote",
    "range_condition",
    "reference_tiers",
    "render",
    "split_tiers",
    "string_literal",
]

_ALIAS = re.compile(r'"(#[^"]*)"')


def domain_error(col: Column) -> DataError:
    """The error for a categorical value outside its column's declared domain."""
    return DataError(
        f"categorical column {col.name!r} holds values outside its declared domain "
        f"({len(col.domain)} values); add them to the schema's domain or clean the data"
    )


def _group_keys(bound: BoundQuery, plan: Plan) -> None:
    """The group keys' values (and a bucket key's column as DOUBLE, one per column),
    the row count, and the keys' checks (each distinct rule once)."""
    for k, key in enumerate(bound.group_keys):
        plan.stages[0].append((f"#g{k}", group_sql(key)))
        e = key.expression
        if isinstance(e, WidthBucket):
            alias = value_alias(bound, k)
            if all(alias != a for a, _ in plan.stages[0]):
                plan.stages[0].append((alias, f"CAST({quote(e.column)} AS DOUBLE)"))
    plan.add((FieldKind.ROWS, None), [Sum("count(*)")])
    rules: dict[str, tuple[str, DataError]] = {}
    for k, key in enumerate(bound.group_keys):
        rule = group_check(bound.schema, key)
        if rule is not None and rule[0] not in rules:
            rules[rule[0]] = (f"#k{k}", rule[1])
            plan.stages[0].append((f"#k{k}", f"({rule[0]})"))
    if len(rules) > 1 and len(unique_sets(bound)) > 1:
        # Every aggregate runs once per grouping set: one combined count, split by a
        # probe only when it fails (:attr:`Plan.combined`).
        condition = " AND ".join(quote(alias) for alias, _ in rules.values())
        plan.combined[len(plan.aggregates)] = [(c, e) for c, (_, e) in rules.items()]
        plan.check(condition, next(iter(rules.values()))[1])
    else:
        for alias, error in rules.values():
            plan.check(quote(alias), error)


def build_plan(
    bound: BoundQuery, tiers: tuple[Tier, ...], offsets: Mapping[str, int] | None = None
) -> Plan:
    """The local query with ``tiers[i]`` for item ``i``: ``bound.aggregations``, then
    the product columns (:func:`item_tiers`); ``offsets``: the integer offset ``C`` of
    every column on the CENTERED tier (:func:`~federation.query.centered.center_offset`)."""
    plan = Plan(tiers=tiers)
    count = len(bound.aggregations)
    few_groups = bool(bound.group_keys) and bound.layout.slots <= FEW_SLOTS
    _group_keys(bound, plan)
    for i, (agg, tier) in enumerate(zip(bound.aggregations, tiers[:count], strict=True)):
        raw = quote(f"#x{i}")
        value, name = masked(agg), agg.key
        plan.stages[0].append((f"#x{i}", value))
        fmt = agg.format
        if fmt is not None and agg.need_sum:
            if tier is Tier.SMALL:
                check = small_parts(plan, i, fmt, raw=value, name=name)
            elif tier in (Tier.CENTERED, Tier.CENTERED_WIDE):
                if offsets is None or agg.column.name not in offsets:
                    raise ValueError(f"column {agg.column.name!r} has no offset for {tier}")
                wide = tier is Tier.CENTERED_WIDE
                offset = offsets[agg.column.name]
                check = centered_parts(
                    plan, i, fmt, offset, few_groups, wide=wide, raw=value, name=name
                )
            elif tier is Tier.NARROW:
                check = narrow_parts(
                    plan, i, fmt, agg.need_squares, few_groups, raw=value, name=name
                )
                if agg.mask is None and agg.expression is None:
                    plan.narrow_values.setdefault(agg.column.name, f"#v{i}")
            else:
                reference_parts(plan, i, fmt, agg.need_squares, raw=value, name=name)
                check = True
            if check:
                plan.check(range_condition(raw, fmt), fmt.out_of_range_error())
            continue
        plan.add((FieldKind.COUNT, name), [Sum(f"count({raw})")])
        if agg.column.type is ColumnType.CATEGORICAL:
            domain = ", ".join(string_literal(v) for v in agg.column.domain)
            plan.check(f"{raw} IN ({domain})", domain_error(agg.column))
    _products(bound, plan, tiers[count:])
    plan.mode = choose_mode(bound)
    return plan


def _products(bound: BoundQuery, plan: Plan, tiers: tuple[Tier, ...]) -> None:
    """The cross products, and the range check of every column they read."""
    checked = {a.column.name for a in bound.aggregations if a.need_sum and a.mask is None}
    by_column = {
        col.name: tier for (col, _), tier in zip(product_columns(bound), tiers, strict=True)
    }
    for product in bound.products:
        product_parts(plan, product, by_column)
        for col, fmt in (
            (product.left, product.left_format),
            (product.right, product.right_format),
        ):
            if col.name not in checked:  # the limb split is exact only within the range
                alias = f"#q{len(checked)}"
                checked.add(col.name)
                plan.stages[0].append((alias, quote(col.name)))
                plan.check(range_condition(quote(alias), fmt), fmt.out_of_range_error())


def render(bound: BoundQuery, plan: Plan, relation: str) -> str:
    """The SQL text of ``plan`` over ``relation``.

    Every piece is generated here from the bound query: quoted identifiers, literals
    from the schema, the predicate rendered by sqlglot. ``relation`` is trusted. Each
    projection computes only the aliases that later stages or aggregates use, and
    carries forward only those. Several grouping sets: :mod:`federation.query.grouping_sets`.
    """
    stages = [stage for stage in plan.stages if stage] or [[]]
    order = {alias: n for n, (alias, _) in enumerate(a for stage in stages for a in stage)}

    def staged(texts: list[str]) -> str:
        need = set(_ALIAS.findall(" ".join(texts)))
        projections: list[list[str]] = []
        for stage in reversed(stages):
            kept = [(alias, expr) for alias, expr in stage if alias in need]
            made = {alias for alias, _ in kept}
            carried = sorted(need - made, key=order.__getitem__)
            projections.append(
                [quote(a) for a in carried] + [f"{expr} AS {quote(alias)}" for alias, expr in kept]
            )
            need = (need - made) | set(_ALIAS.findall(" ".join(expr for _, expr in kept)))
        projections.reverse()
        sql = f"SELECT {', '.join(projections[0]) or '1'} FROM {relation}"  # noqa: S608
        if bound.where is not None:
            sql += f" WHERE {render_predicate(bound.where)}"
        for items in projections[1:]:
            sql = f"SELECT {', '.join(items) or '1'} FROM ({sql})"  # noqa: S608
        return sql

    checks = {index for index, _ in plan.checks}
    return outer_sql(bound, plan.mode, plan.aggregates, checks, staged)
