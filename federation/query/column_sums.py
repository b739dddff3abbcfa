"""The SQL of one numeric column's ``COUNT``, ``S1 = ΣX`` and ``S2 = ΣX²``, per tier.

:func:`reference_parts` (the limb plans of :class:`~federation.encoding.LimbPlan`),
:func:`small_parts` and :func:`narrow_parts` add a column's stages and sums to a
:class:`~federation.query.plan.Plan`; the tiers are described in
:mod:`federation.query.formulation`.
"""

from __future__ import annotations

from federation.encoding import FixedPointFormat, LimbPlan
from federation.query.layout import FieldKind
from federation.query.plan import Plan, Sum
from federation.query.sql_text import quote
from federation.query.tiers import NARROW_LIMIT
from federation.schema import ColumnType

__all__ = [
    "FEW_SLOTS",
    "MASK31",
    "P31",
    "P52",
    "P62",
    "bigint_sums",
    "narrow_parts",
    "reference_parts",
    "small_parts",
    "trunc_sums",
]

P31 = "CAST(2147483648 AS DOUBLE)"
P52 = "CAST(4503599627370496 AS DOUBLE)"
P62 = "CAST(4611686018427387904 AS DOUBLE)"
MASK31 = "2147483647"
_MASK16 = "65535"
_MASK32 = "4294967295"
_MASK26 = "67108863"
FEW_SLOTS = 16
"""Up to this many group slots the NARROW tier sums DOUBLE limb products (measured: with
2-16 groups ~40 ms per 10**6 rows against ~48 ms for the BIGINT-product plan; from ~20
groups, and without GROUP BY, the BIGINT-product plan is faster)."""
_SMALL_LIMIT = 2**27
"""A certified ``Σ x²`` proves ``|x| < 2**26.5`` for every summand."""


def reference_parts(
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
        value = f"round(CAST({raw} AS DOUBLE) * {P52})"
    limbs = fmt.limbs
    if limbs is LimbPlan.THREE and not squares:
        # S1 only: X = t·2**52 + round((x - t)·2**52) with t = trunc(x) (see docstring).
        trunc_sums(plan, i, raw=raw, name=name, halves=False)
        return
    if limbs is LimbPlan.THREE:
        d, h, r, m = (quote(f"#{k}{i}") for k in "dhrm")
        plan.stages[0].append((f"#d{i}", value))
        plan.stages[1].append((f"#h{i}", f"round({d} / {P62})"))
        plan.stages[2].append((f"#r{i}", f"{d} - {h} * {P62}"))
        plan.stages[3].append((f"#m{i}", f"round({r} / {P31})"))
        plan.stages[4] += [
            (f"#hb{i}", f"CAST({h} AS BIGINT)"),
            (f"#mb{i}", f"CAST({m} AS BIGINT)"),
            (f"#lb{i}", f"CAST({r} - {m} * {P31} AS BIGINT)"),
        ]
        hh, mm, ll = quote(f"#hb{i}"), quote(f"#mb{i}"), quote(f"#lb{i}")
        plan.add((FieldKind.COUNT, name), [Sum(f"count({hh})")])
        plan.add(s1, [Sum(f"sum({hh})", 62), Sum(f"sum({mm})", 31), Sum(f"sum({ll})")])
        plan.add(
            s2,
            [
                Sum(f"sum({hh} * {hh})", 124),
                Sum(f"sum({hh} * {mm})", 94),
                Sum(f"sum({mm} * {mm} + 2 * {hh} * {ll})", 62),
                Sum(f"sum({mm} * {ll})", 32),
                Sum(f"sum({ll} * {ll})"),
            ],
        )
        return
    v = quote(f"#v{i}")
    if fmt.column_type is ColumnType.DOUBLE:
        value = f"CAST({value} AS BIGINT)"
    plan.stages[0].append((f"#v{i}", value))
    bigint_sums(plan, v, name=name, halves=False)
    if not squares:
        return
    if limbs is LimbPlan.ONE:
        plan.add(s2, [Sum(f"sum({v} * {v})")])
        return
    a, c = quote(f"#a{i}"), quote(f"#c{i}")
    plan.stages[1] += [(f"#a{i}", f"{v} >> 31"), (f"#c{i}", f"{v} & {MASK31}")]
    plan.add(s2, [Sum(f"sum({a} * {a})", 62), Sum(f"sum({a} * {c})", 32), Sum(f"sum({c} * {c})")])


def small_parts(plan: Plan, i: int, fmt: FixedPointFormat, *, raw: str, name: str) -> bool:
    """SMALL tier of an integer column; True when the range check is still needed."""
    v, f = quote(f"#v{i}"), quote(f"#s{i}")
    plan.stages[0] += [
        (f"#v{i}", f"CAST({raw} AS BIGINT)"),
        (f"#s{i}", f"abs(CAST({raw} AS DOUBLE))"),
    ]
    plan.add((FieldKind.COUNT, name), [Sum(f"count({v})")])
    plan.add((FieldKind.SUM, name), [Sum(f"sum({v})")])
    plan.add((FieldKind.SUM_SQUARES, name), [Sum(f"sum({f} * {f})")], certify=i)
    return not (fmt.lower <= -_SMALL_LIMIT and fmt.upper >= _SMALL_LIMIT)


def narrow_parts(
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

    With a GROUP BY of at most :data:`FEW_SLOTS` slots: ``S1 = 2**32·Σ(X >> 32) +
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
    plan.stages[0].append((f"#v{i}", f"CAST(round(CAST({raw} AS DOUBLE) * {P52}) AS BIGINT)"))
    bigint_sums(plan, v, name=name, halves=few_groups)
    check = not (fmt.lower <= -NARROW_LIMIT and fmt.upper >= NARROW_LIMIT)
    if not squares:
        return check
    if not few_groups:
        c = quote(f"#c{i}")
        plan.stages[1] += [(f"#a{i}", f"{v} >> 31"), (f"#c{i}", f"{v} & {MASK31}")]
        sums = [Sum(f"sum({a} * {a})", 62), Sum(f"sum({a} * {c})", 32), Sum(f"sum({c} * {c})")]
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
            parts.append(Sum(f"sum({fj} * {fk})", 16 * (j + k) + (j != k)))
    plan.add((FieldKind.SUM_SQUARES, name), parts, certify=i)
    return check


def bigint_sums(plan: Plan, v: str, *, name: str, halves: bool) -> None:
    """``COUNT`` and ``S1`` of a column whose ``X`` is the BIGINT ``v`` (quoted alias).

    ``halves`` (a GROUP BY of few slots): ``S1 = 2**32·Σ(X >> 32) + Σ(X & (2**32-1))``,
    two sums that stay in int64 for millions of rows, against one on DuckDB's HUGEINT
    path.
    """
    plan.add((FieldKind.COUNT, name), [Sum(f"count({v})")])
    if halves:
        plan.add((FieldKind.SUM, name), [Sum(f"sum({v} >> 32)", 32), Sum(f"sum({v} & {_MASK32})")])
    else:
        plan.add((FieldKind.SUM, name), [Sum(f"sum({v})")])


def trunc_sums(plan: Plan, i: int, *, raw: str, name: str, halves: bool) -> None:
    """``COUNT`` and ``S1`` of double column ``i`` (``|x| < 2**41``) from the split
    ``X = t·2**52 + f``, ``t = trunc(x)``, ``f = round((x - t)·2**52)`` (see
    :func:`reference_parts`); ``halves``: ``f`` summed in two 26-bit halves, so no sum
    leaves int64 for millions of rows."""
    t, x = quote(f"#t{i}"), quote(f"#x{i}")
    plan.stages[0].append((f"#t{i}", f"trunc(CAST({raw} AS DOUBLE))"))
    plan.stages[1] += [
        (f"#tb{i}", f"CAST({t} AS BIGINT)"),
        (f"#fb{i}", f"CAST(round((CAST({x} AS DOUBLE) - {t}) * {P52}) AS BIGINT)"),
    ]
    tb, fb = quote(f"#tb{i}"), quote(f"#fb{i}")
    plan.add((FieldKind.COUNT, name), [Sum(f"count({tb})")])
    if halves:
        parts = [Sum(f"sum({fb} >> 26)", 26), Sum(f"sum({fb} & {_MASK26})")]
    else:
        parts = [Sum(f"sum({fb})")]
    plan.add((FieldKind.SUM, name), [Sum(f"sum({tb})", 52), *parts])
