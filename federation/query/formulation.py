"""How a node computes its exact per-group integers: the formulations of the local query.

For each aggregated numeric column a node needs, per group, ``COUNT(col)``, ``S1 = ΣX``
and (for variances) ``S2 = ΣX²`` of the fixed-point values ``X``
(:mod:`federation.encoding`). Every *tier* below yields exactly these integers, so the
vector is the same whichever runs; tiers differ in speed and in the data they accept.
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
  the reference tier (see :func:`_narrow_parts`). With a GROUP BY of few slots, ``S2``
  comes from ten certified DOUBLE sums of products of 16-bit limbs of ``|X|``;
  otherwise from the reference TWO limb plan.
* Cross products ``ΣXY``: each column the products read is an item of its own
  (:func:`product_columns`); on NARROW an unbounded double is split into two BIGINT
  limbs when ``|x| < 2**11`` (four sums a product instead of nine,
  :func:`_product_parts`), else it keeps its reference limbs.
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
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from sqlglot import exp

from federation.encoding import FixedPointFormat, LimbPlan
from federation.errors import DataError
from federation.query.bind import BoundQuery
from federation.query.grouping_sets import (
    SetsMode,
    choose_mode,
    outer_sql,
    unique_sets,
    value_alias,
)
from federation.query.groups import WidthBucket, group_check, group_sql
from federation.query.layout import ColumnAggregation, FieldKind, ProductAggregation
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

CERTIFIED_LIMIT = 2**53
"""A certified DOUBLE sum is exact when its result is below this."""

_P31 = "CAST(2147483648 AS DOUBLE)"
_P52 = "CAST(4503599627370496 AS DOUBLE)"
_P62 = "CAST(4611686018427387904 AS DOUBLE)"
_MASK31 = "2147483647"
_MASK16 = "65535"
_MASK32 = "4294967295"
_NARROW_LIMIT = 2**11
"""``X = round(x·2**52)`` fits BIGINT for ``|x| < 2**11`` (and ``x = -2**11``), for no other x."""
_FEW_SLOTS = 16
"""Up to this many group slots the NARROW tier sums DOUBLE limb products (measured: with
2-16 groups ~40 ms per 10**6 rows against ~48 ms for the BIGINT-product plan; from ~20
groups, and without GROUP BY, the BIGINT-product plan is faster)."""
_SMALL_LIMIT = 2**27
"""A certified ``Σ x²`` proves ``|x| < 2**26.5`` for every summand."""
_ALIAS = re.compile(r'"(#[^"]*)"')


class Tier(enum.Enum):
    """How one column's sums are computed; every tier gives the same integers."""

    SMALL = "small"
    NARROW = "narrow"
    REFERENCE = "reference"


def column_tiers(agg: ColumnAggregation) -> tuple[Tier, ...]:
    """The tiers a node may use for one column, fastest first (always ending in REFERENCE)."""
    fmt = agg.format
    if fmt is None or not agg.need_sum:
        return (Tier.REFERENCE,)
    if fmt.column_type is ColumnType.INTEGER:
        # Sums of integers are already cheap; only the squares gain from SMALL.
        return (Tier.SMALL, Tier.REFERENCE) if agg.need_squares else (Tier.REFERENCE,)
    if fmt.limbs is LimbPlan.ONE:  # |X| <= 2**31: the reference is as cheap
        return (Tier.REFERENCE,)
    return (Tier.NARROW, Tier.REFERENCE)


def product_columns(bound: BoundQuery) -> list[tuple[Column, FixedPointFormat]]:
    """The distinct columns the cross products read, in first-use order; each is an item
    of the local query whose tier says how its ``X`` is split into limbs."""
    seen: dict[str, tuple[Column, FixedPointFormat]] = {}
    for p in bound.products:
        for col, fmt in ((p.left, p.left_format), (p.right, p.right_format)):
            seen.setdefault(col.name, (col, fmt))
    return list(seen.values())


def split_tiers(fmt: FixedPointFormat) -> tuple[Tier, ...]:
    """The tiers of a column read by cross products, fastest first.

    NARROW applies to a double column on the THREE limb plan (no bounds tighter than
    ``|x| < 2**10``): it is split into two BIGINT limbs instead of three
    (:func:`_narrow_limbs`), so a product of two such columns takes four sums, not nine.
    """
    return (Tier.NARROW, Tier.REFERENCE) if _three_limb_double(fmt) else (Tier.REFERENCE,)


def item_tiers(bound: BoundQuery) -> list[tuple[Tier, ...]]:
    """The tiers of every item of the local query: ``bound.aggregations`` (see
    :func:`column_tiers`), then the product columns (:func:`product_columns`,
    :func:`split_tiers`)."""
    return [column_tiers(a) for a in bound.aggregations] + [
        split_tiers(fmt) for _, fmt in product_columns(bound)
    ]


def narrow_probes(bound: BoundQuery, tiers: tuple[Tier, ...]) -> list[tuple[int, str]]:
    """``(item, aggregate)`` for every item on the NARROW tier: a count of its values
    that do not fit that tier (``|x| >= 2**11``, NaN, ±inf; conservatively also
    ``x = -2**11``). After the local query fails, these find the items to escalate."""
    values = [_masked(a) for a in bound.aggregations]
    values += [quote(col.name) for col, _ in product_columns(bound)]
    limit = _double_literal(float(_NARROW_LIMIT))
    return [
        (i, f"count_if(NOT (abs(CAST({value} AS DOUBLE)) < {limit}))")
        for i, (value, tier) in enumerate(zip(values, tiers, strict=True))
        if tier is Tier.NARROW
    ]


def reference_tiers(bound: BoundQuery) -> tuple[Tier, ...]:
    """Every item of the local query on the reference tier."""
    return (Tier.REFERENCE,) * (len(bound.aggregations) + len(product_columns(bound)))


def _three_limb_double(fmt: FixedPointFormat) -> bool:
    return fmt.column_type is ColumnType.DOUBLE and fmt.limbs is LimbPlan.THREE


def quote(name: str) -> str:
    """A quoted SQL identifier (names here are schema identifiers or '#'-prefixed aliases).

    DuckDB matches identifiers case-insensitively even when quoted, so generated aliases
    differ by more than case (and ``#`` never appears in a schema column name).
    """
    return '"' + name.replace('"', '""') + '"'


def string_literal(value: str) -> str:
    """A DuckDB string literal."""
    return exp.Literal.string(value).sql(dialect="duckdb")


def _double_literal(value: float) -> str:
    """An exact DOUBLE literal (DuckDB's string-to-double cast rounds correctly)."""
    return f"CAST('{value!r}' AS DOUBLE)"


def range_condition(raw: str, fmt: FixedPointFormat) -> str:
    """SQL that is true when ``raw`` lies in the accepted range of ``fmt``."""
    if fmt.column_type is ColumnType.INTEGER:
        return f"{raw} BETWEEN {int(fmt.lower)} AND {int(fmt.upper)}"
    lo, hi = _double_literal(float(fmt.lower)), _double_literal(float(fmt.upper))
    return f"{raw} BETWEEN {lo} AND {hi}"


@dataclass(frozen=True)
class _Sum:
    """An aggregate of the local query contributing ``value << shift`` to a quantity."""

    sql: str
    shift: int = 0


@dataclass
class Plan:
    """One formulation of the local query, and how its result columns make the quantities.

    Attributes:
        tiers: The tier of every aggregation (in ``bound.aggregations`` order).
        stages: Projections, each computed from the previous ones' aliases.
        aggregates: The aggregate expressions, after the group keys.
        quantities: ``(kind, column) -> [(aggregate index, shift)]``: the quantity is
            the sum of ``aggregate << shift``.
        checks: ``(aggregate index, error)``: a count of rows violating a column's
            range or domain, or a group key's bounds; must be 0, else ``error`` is raised.
        certified: ``(aggregate index, aggregation index)``: DOUBLE sums that are exact
            only below :data:`CERTIFIED_LIMIT`, and the column to escalate otherwise.
    """

    tiers: tuple[Tier, ...]
    stages: list[list[tuple[str, str]]] = field(default_factory=lambda: [[] for _ in range(5)])
    aggregates: list[str] = field(default_factory=list)
    quantities: dict[tuple[FieldKind, str | None], list[tuple[int, int]]] = field(
        default_factory=dict
    )
    checks: list[tuple[int, DataError]] = field(default_factory=list)
    certified: list[tuple[int, int]] = field(default_factory=list)
    limbs: dict[tuple[str, Tier], list[tuple[str, int]]] = field(default_factory=dict)
    """Limbs ``(alias, shift)`` of a column's ``X`` already split, by column and tier."""
    narrow_values: dict[str, str] = field(default_factory=dict)
    """Aliases of a column's ``X`` as BIGINT already computed by a NARROW column."""
    mode: SetsMode = SetsMode.SINGLE
    """How the rows are grouped (:mod:`federation.query.grouping_sets`)."""
    combined: dict[int, list[tuple[str, DataError]]] = field(default_factory=dict)
    """Checks counted together (aggregate index -> each condition over the relation's
    columns and its error), to find the one that failed."""

    def add(
        self, key: tuple[FieldKind, str | None], parts: list[_Sum], certify: int | None = None
    ) -> None:
        for part in parts:
            index = len(self.aggregates)
            self.quantities.setdefault(key, []).append((index, part.shift))
            if certify is not None:
                self.certified.append((index, certify))
            self.aggregates.append(part.sql)

    def check(self, condition: str, error: DataError) -> None:
        self.checks.append((len(self.aggregates), error))
        self.aggregates.append(f"count_if(NOT ({condition}))")


def _reference_parts(
    plan: Plan, i: int, fmt: FixedPointFormat, squares: bool, *, raw: str, name: str
) -> None:
    """Add the limb stages and the S1/S2 aggregates of one numeric column.

    Limb plans (all products fit BIGINT; DuckDB sums BIGINT into HUGEINT):

    * ONE (``|X| <= 2**31``): ``S2 = Σ X*X``.
    * TWO (``|X| <= 2**62``, BIGINT): ``a = X >> 31`` in ``[-2**31, 2**31]``,
      ``c = X & (2**31-1)``; ``X² = a²·2**62 + 2ac·2**31 + c²``.
    * THREE (``|X| <= 2**93``, doubles only): ``d = round(x·2**52)`` is an integer-valued
      double equal to ``X``. ``h = round(d / 2**62)`` (``|h| <= 2**31``) and
      ``r = d - h·2**62`` are exact: ``|r| <= 2**61`` and ``r`` is a multiple of
      ``ulp(d)`` (when ``|d| >= 2**61``, ``ulp(d) >= 2**9``), so ``r`` has at most 53
      significant bits. Likewise ``m = round(r / 2**31)`` (``|m| <= 2**30``) and
      ``l = r - m·2**31`` (``|l| <= 2**30``) are exact integers below 2**53.
      ``X² = h²·2**124 + 2hm·2**93 + (m² + 2hl)·2**62 + 2ml·2**31 + l²``, every product
      (and ``m² + 2hl <= 2**60 + 2**62``) below 2**63. When only ``S1`` is needed, the
      cheaper split ``X = t·2**52 + round((x - t)·2**52)`` with ``t = trunc(x)`` is used:
      ``x - t`` is exact, and for ``|x| >= 1`` the product is already an integer, so it
      rounds exactly as ``round(x·2**52)`` does (``|t| < 2**41``, the rest ``< 2**52``).
    """
    s1, s2 = (FieldKind.SUM, name), (FieldKind.SUM_SQUARES, name)
    if fmt.column_type is ColumnType.INTEGER:
        value = f"CAST({raw} AS BIGINT)"
    else:
        value = f"round(CAST({raw} AS DOUBLE) * {_P52})"
    limbs = fmt.limbs
    if limbs is LimbPlan.THREE and not squares:
        # S1 only: X = t·2**52 + round((x - t)·2**52) with t = trunc(x) (see docstring).
        t, x = quote(f"#t{i}"), quote(f"#x{i}")
        plan.stages[0].append((f"#t{i}", f"trunc(CAST({raw} AS DOUBLE))"))
        plan.stages[1] += [
            (f"#tb{i}", f"CAST({t} AS BIGINT)"),
            (f"#fb{i}", f"CAST(round((CAST({x} AS DOUBLE) - {t}) * {_P52}) AS BIGINT)"),
        ]
        tb, fb = quote(f"#tb{i}"), quote(f"#fb{i}")
        plan.add((FieldKind.COUNT, name), [_Sum(f"count({tb})")])
        plan.add(s1, [_Sum(f"sum({tb})", 52), _Sum(f"sum({fb})")])
        return
    if limbs is LimbPlan.THREE:
        d, h, r, m = (quote(f"#{k}{i}") for k in "dhrm")
        plan.stages[0].append((f"#d{i}", value))
        plan.stages[1].append((f"#h{i}", f"round({d} / {_P62})"))
        plan.stages[2].append((f"#r{i}", f"{d} - {h} * {_P62}"))
        plan.stages[3].append((f"#m{i}", f"round({r} / {_P31})"))
        plan.stages[4] += [
            (f"#hb{i}", f"CAST({h} AS BIGINT)"),
            (f"#mb{i}", f"CAST({m} AS BIGINT)"),
            (f"#lb{i}", f"CAST({r} - {m} * {_P31} AS BIGINT)"),
        ]
        hh, mm, ll = quote(f"#hb{i}"), quote(f"#mb{i}"), quote(f"#lb{i}")
        plan.add((FieldKind.COUNT, name), [_Sum(f"count({hh})")])
        plan.add(s1, [_Sum(f"sum({hh})", 62), _Sum(f"sum({mm})", 31), _Sum(f"sum({ll})")])
        plan.add(
            s2,
            [
                _Sum(f"sum({hh} * {hh})", 124),
                _Sum(f"sum({hh} * {mm})", 94),
                _Sum(f"sum({mm} * {mm} + 2 * {hh} * {ll})", 62),
                _Sum(f"sum({mm} * {ll})", 32),
                _Sum(f"sum({ll} * {ll})"),
            ],
        )
        return
    v = quote(f"#v{i}")
    if fmt.column_type is ColumnType.DOUBLE:
        value = f"CAST({value} AS BIGINT)"
    plan.stages[0].append((f"#v{i}", value))
    plan.add((FieldKind.COUNT, name), [_Sum(f"count({v})")])
    plan.add(s1, [_Sum(f"sum({v})")])
    if not squares:
        return
    if limbs is LimbPlan.ONE:
        plan.add(s2, [_Sum(f"sum({v} * {v})")])
        return
    a, c = quote(f"#a{i}"), quote(f"#c{i}")
    plan.stages[1] += [(f"#a{i}", f"{v} >> 31"), (f"#c{i}", f"{v} & {_MASK31}")]
    plan.add(
        s2, [_Sum(f"sum({a} * {a})", 62), _Sum(f"sum({a} * {c})", 32), _Sum(f"sum({c} * {c})")]
    )


def _small_parts(plan: Plan, i: int, fmt: FixedPointFormat, *, raw: str, name: str) -> bool:
    """SMALL tier of an integer column; True when the range check is still needed."""
    v, f = quote(f"#v{i}"), quote(f"#s{i}")
    plan.stages[0] += [
        (f"#v{i}", f"CAST({raw} AS BIGINT)"),
        (f"#s{i}", f"abs(CAST({raw} AS DOUBLE))"),
    ]
    plan.add((FieldKind.COUNT, name), [_Sum(f"count({v})")])
    plan.add((FieldKind.SUM, name), [_Sum(f"sum({v})")])
    plan.add((FieldKind.SUM_SQUARES, name), [_Sum(f"sum({f} * {f})")], certify=i)
    return not (fmt.lower <= -_SMALL_LIMIT and fmt.upper >= _SMALL_LIMIT)


def _narrow_parts(
    plan: Plan,
    i: int,
    fmt: FixedPointFormat,
    squares: bool,
    few_groups: bool,
    *,
    raw: str,
    name: str,
) -> bool:
    """NARROW tier of a double column; True when the range check is still needed.

    ``X = CAST(round(x·2**52) AS BIGINT)`` fails for ``|x| >= 2**11``, NaN and ±inf.

    With a GROUP BY of at most :data:`_FEW_SLOTS` slots: ``S1 = 2**32·Σ(X >> 32) +
    Σ(X & (2**32-1))`` (both sums stay in int64 for millions of rows), and ``S2`` from
    ``A = |X|`` (``abs`` fails only on ``-2**63``) in four limbs ``f_3 = A >> 48`` (below
    2**15) and ``f_2, f_1, f_0`` (16 bits each) as DOUBLE:
    ``S2 = Σ_{j<=k} c_jk·2**(16(j+k))·Σ f_j·f_k`` (``c_jk = 2`` when ``j != k``), each of
    the ten DOUBLE sums certified. Otherwise, where the number of aggregates costs more
    than HUGEINT sums: ``S1 = ΣX`` and the TWO limb plan of the reference
    (``a = X >> 31``, ``c = X & (2**31-1)``), whose BIGINT product ``a*a`` fails once
    ``|X| > 2**62.5``.
    """
    v, a = quote(f"#v{i}"), quote(f"#a{i}")
    plan.stages[0].append((f"#v{i}", f"CAST(round(CAST({raw} AS DOUBLE) * {_P52}) AS BIGINT)"))
    plan.add((FieldKind.COUNT, name), [_Sum(f"count({v})")])
    if few_groups:
        plan.add(
            (FieldKind.SUM, name), [_Sum(f"sum({v} >> 32)", 32), _Sum(f"sum({v} & {_MASK32})")]
        )
    else:
        plan.add((FieldKind.SUM, name), [_Sum(f"sum({v})")])
    check = not (fmt.lower <= -_NARROW_LIMIT and fmt.upper >= _NARROW_LIMIT)
    if not squares:
        return check
    if not few_groups:
        c = quote(f"#c{i}")
        plan.stages[1] += [(f"#a{i}", f"{v} >> 31"), (f"#c{i}", f"{v} & {_MASK31}")]
        sums = [_Sum(f"sum({a} * {a})", 62), _Sum(f"sum({a} * {c})", 32), _Sum(f"sum({c} * {c})")]
        plan.add((FieldKind.SUM_SQUARES, name), sums)
        return check
    plan.stages[1].append((f"#a{i}", f"abs({v})"))
    limbs = [f"{a} >> 48", f"({a} >> 32) & {_MASK16}", f"({a} >> 16) & {_MASK16}"]
    limbs.append(f"{a} & {_MASK16}")
    for j, limb in zip((3, 2, 1, 0), limbs, strict=True):
        plan.stages[2].append((f"#f{j}_{i}", f"CAST({limb} AS DOUBLE)"))
    parts = []
    for j in range(4):
        for k in range(j, 4):
            fj, fk = quote(f"#f{j}_{i}"), quote(f"#f{k}_{i}")
            parts.append(_Sum(f"sum({fj} * {fk})", 16 * (j + k) + (j != k)))
    plan.add((FieldKind.SUM_SQUARES, name), parts, certify=i)
    return check


def domain_error(col: Column) -> DataError:
    """The error for a categorical value outside its column's declared domain."""
    return DataError(
        f"categorical column {col.name!r} holds values outside its declared domain "
        f"({len(col.domain)} values); add them to the schema's domain or clean the data"
    )


def _limbs(plan: Plan, tag: str, raw: str, fmt: FixedPointFormat) -> list[tuple[str, int]]:
    """Split ``X`` of ``raw`` into limbs ``(alias, shift)`` with ``|limb| <= 2**31`` and
    ``X = Σ limb·2**shift``, so that every product of two limbs fits BIGINT.

    The splits are those of :func:`_reference_parts` (ONE: ``X``; TWO: ``X >> 31`` and
    ``X & (2**31-1)``; THREE: the exact double split into ``h, m, l``).
    """
    if fmt.column_type is ColumnType.INTEGER:
        value = f"CAST({raw} AS BIGINT)"
    else:
        value = f"round(CAST({raw} AS DOUBLE) * {_P52})"
    if fmt.limbs is LimbPlan.THREE:
        d, h, r, m = (quote(f"#{k}{tag}") for k in ("pd", "ph", "pr", "pm"))
        plan.stages[0].append((f"#pd{tag}", value))
        plan.stages[1].append((f"#ph{tag}", f"round({d} / {_P62})"))
        plan.stages[2].append((f"#pr{tag}", f"{d} - {h} * {_P62}"))
        plan.stages[3].append((f"#pm{tag}", f"round({r} / {_P31})"))
        plan.stages[4] += [
            (f"#phb{tag}", f"CAST({h} AS BIGINT)"),
            (f"#pmb{tag}", f"CAST({m} AS BIGINT)"),
            (f"#plb{tag}", f"CAST({r} - {m} * {_P31} AS BIGINT)"),
        ]
        return [(f"#phb{tag}", 62), (f"#pmb{tag}", 31), (f"#plb{tag}", 0)]
    if fmt.column_type is ColumnType.DOUBLE:
        value = f"CAST({value} AS BIGINT)"
    plan.stages[0].append((f"#pv{tag}", value))
    if fmt.limbs is LimbPlan.ONE:
        return [(f"#pv{tag}", 0)]
    v = quote(f"#pv{tag}")
    plan.stages[1] += [(f"#pa{tag}", f"{v} >> 31"), (f"#pc{tag}", f"{v} & {_MASK31}")]
    return [(f"#pa{tag}", 31), (f"#pc{tag}", 0)]


def _narrow_limbs(plan: Plan, tag: str, column: Column) -> list[tuple[str, int]]:
    """Two BIGINT limbs of a double column's ``X`` for the NARROW product tier.

    ``X = CAST(round(x·2**52) AS BIGINT)`` (the cast fails for ``|x| >= 2**11``, NaN and
    ±inf, as in :func:`_narrow_parts`), ``a = X >> 31`` in ``[-2**32, 2**32)`` and
    ``c = X & (2**31-1)`` in ``[0, 2**31)``: ``X = a·2**31 + c``. The BIGINT value is
    shared with the column's own NARROW sums when the query has them.
    """
    known = plan.narrow_values.get(column.name)
    if known is None:
        known = f"#pv{tag}"
        value = f"CAST(round(CAST({quote(column.name)} AS DOUBLE) * {_P52}) AS BIGINT)"
        plan.stages[0].append((known, value))
    v = quote(known)
    plan.stages[1] += [(f"#pa{tag}", f"{v} >> 31"), (f"#pc{tag}", f"{v} & {_MASK31}")]
    return [(f"#pa{tag}", 31), (f"#pc{tag}", 0)]


def _column_limbs(
    plan: Plan, column: Column, fmt: FixedPointFormat, tier: Tier
) -> list[tuple[str, int]]:
    """The limbs of one column, split once per query however many products read it.

    On the NARROW tier, a three-limb double column is split in two BIGINT limbs
    (:func:`_narrow_limbs`); every other column has its reference limbs.
    """
    if tier is Tier.NARROW and not _three_limb_double(fmt):
        tier = Tier.REFERENCE
    key = (column.name, tier)
    if key not in plan.limbs:
        tag = f"c{len(plan.limbs)}"
        if tier is Tier.NARROW:
            plan.limbs[key] = _narrow_limbs(plan, tag, column)
        else:
            plan.limbs[key] = _limbs(plan, tag, quote(column.name), fmt)
    return plan.limbs[key]


def _product_parts(plan: Plan, product: ProductAggregation, tiers: dict[str, Tier]) -> None:
    """``ΣXY`` of a pair: the sum of every limb product, each summed in HUGEINT.

    Rows where either value is NULL have a NULL product and add nothing. Reference:
    limbs of at most 31 bits (up to nine products), whose products fit BIGINT. NARROW:
    a three-limb double side has two limbs ``a`` (33 bits, signed) and ``c`` (31 bits,
    :func:`_narrow_limbs`), so a pair of such columns takes four sums instead of nine;
    ``a·c'`` always fits BIGINT, and ``a·a'`` does unless ``|X·Y| >= 2**125``: the
    BIGINT product then fails and the query escalates to the reference tier. Each side
    has its own column's tier (``tiers``), so a wide column costs six sums with a narrow
    one, not nine.
    """
    left = _column_limbs(plan, product.left, product.left_format, tiers[product.left.name])
    right = _column_limbs(plan, product.right, product.right_format, tiers[product.right.name])
    parts = [_Sum(f"sum({quote(a)} * {quote(b)})", sa + sb) for a, sa in left for b, sb in right]
    plan.add((FieldKind.SUM_PRODUCTS, product.key), parts)


def _masked(agg: ColumnAggregation) -> str:
    """The SQL of an aggregated column's values (NULL where its mask column is NULL)."""
    if agg.expression is not None:
        return agg.expression
    raw = quote(agg.column.name)
    if agg.mask is None:
        return raw
    return f"(CASE WHEN {quote(agg.mask.name)} IS NOT NULL THEN {raw} END)"


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
    plan.add((FieldKind.ROWS, None), [_Sum("count(*)")])
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


def build_plan(bound: BoundQuery, tiers: tuple[Tier, ...]) -> Plan:
    """The local query with ``tiers[i]`` for item ``i``: ``bound.aggregations``, then
    the product columns (:func:`item_tiers`)."""
    plan = Plan(tiers=tiers)
    count = len(bound.aggregations)
    few_groups = bool(bound.group_keys) and bound.layout.slots <= _FEW_SLOTS
    _group_keys(bound, plan)
    for i, (agg, tier) in enumerate(zip(bound.aggregations, tiers[:count], strict=True)):
        raw = quote(f"#x{i}")
        value, name = _masked(agg), agg.key
        plan.stages[0].append((f"#x{i}", value))
        fmt = agg.format
        if fmt is not None and agg.need_sum:
            if tier is Tier.SMALL:
                check = _small_parts(plan, i, fmt, raw=value, name=name)
            elif tier is Tier.NARROW:
                check = _narrow_parts(
                    plan, i, fmt, agg.need_squares, few_groups, raw=value, name=name
                )
                if agg.mask is None and agg.expression is None:
                    plan.narrow_values.setdefault(agg.column.name, f"#v{i}")
            else:
                _reference_parts(plan, i, fmt, agg.need_squares, raw=value, name=name)
                check = True
            if check:
                plan.check(range_condition(raw, fmt), fmt.out_of_range_error())
            continue
        plan.add((FieldKind.COUNT, name), [_Sum(f"count({raw})")])
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
        _product_parts(plan, product, by_column)
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
