"""The SQL of the cross products ``ΣXY``: every column's limbs, split once, and their products.

:func:`product_parts` adds one pair's sums to a :class:`~federation.query.plan.Plan`,
with each side on its column's tier (:func:`~federation.query.tiers.split_tiers`).
"""

from __future__ import annotations

from federation.encoding import FixedPointFormat, LimbPlan
from federation.query.column_sums import MASK31, P31, P52, P62
from federation.query.layout import FieldKind, ProductAggregation
from federation.query.plan import Plan, Sum
from federation.query.sql_text import quote
from federation.query.tiers import Tier, three_limb_double
from federation.schema import Column, ColumnType

__all__ = ["product_parts"]


def _limbs(plan: Plan, tag: str, raw: str, fmt: FixedPointFormat) -> list[tuple[str, int]]:
    """Split ``X`` of ``raw`` into limbs ``(alias, shift)`` with ``|limb| <= 2**31`` and
    ``X = Σ limb·2**shift``, so that every product of two limbs fits BIGINT.

    The splits are those of :func:`~federation.query.column_sums.reference_parts` (ONE:
    ``X``; TWO: ``X >> 31`` and ``X & (2**31-1)``; THREE: the exact double split into
    ``h, m, l``).
    """
    if fmt.column_type is ColumnType.INTEGER:
        value = f"CAST({raw} AS BIGINT)"
    else:
        value = f"round(CAST({raw} AS DOUBLE) * {P52})"
    if fmt.limbs is LimbPlan.THREE:
        d, h, r, m = (quote(f"#{k}{tag}") for k in ("pd", "ph", "pr", "pm"))
        plan.stages[0].append((f"#pd{tag}", value))
        plan.stages[1].append((f"#ph{tag}", f"round({d} / {P62})"))
        plan.stages[2].append((f"#pr{tag}", f"{d} - {h} * {P62}"))
        plan.stages[3].append((f"#pm{tag}", f"round({r} / {P31})"))
        plan.stages[4] += [
            (f"#phb{tag}", f"CAST({h} AS BIGINT)"),
            (f"#pmb{tag}", f"CAST({m} AS BIGINT)"),
            (f"#plb{tag}", f"CAST({r} - {m} * {P31} AS BIGINT)"),
        ]
        return [(f"#phb{tag}", 62), (f"#pmb{tag}", 31), (f"#plb{tag}", 0)]
    if fmt.column_type is ColumnType.DOUBLE:
        value = f"CAST({value} AS BIGINT)"
    plan.stages[0].append((f"#pv{tag}", value))
    if fmt.limbs is LimbPlan.ONE:
        return [(f"#pv{tag}", 0)]
    v = quote(f"#pv{tag}")
    plan.stages[1] += [(f"#pa{tag}", f"{v} >> 31"), (f"#pc{tag}", f"{v} & {MASK31}")]
    return [(f"#pa{tag}", 31), (f"#pc{tag}", 0)]


def _narrow_limbs(plan: Plan, tag: str, column: Column) -> list[tuple[str, int]]:
    """Two BIGINT limbs of a double column's ``X`` for the NARROW product tier.

    ``X = CAST(round(x·2**52) AS BIGINT)`` (the cast fails for ``|x| >= 2**11``, NaN and
    ±inf, as in :func:`~federation.query.column_sums.narrow_parts`), ``a = X >> 31`` in
    ``[-2**32, 2**32)`` and ``c = X & (2**31-1)`` in ``[0, 2**31)``: ``X = a·2**31 + c``.
    The BIGINT value is shared with the column's own NARROW sums when the query has them.
    """
    known = plan.narrow_values.get(column.name)
    if known is None:
        known = f"#pv{tag}"
        value = f"CAST(round(CAST({quote(column.name)} AS DOUBLE) * {P52}) AS BIGINT)"
        plan.stages[0].append((known, value))
    v = quote(known)
    plan.stages[1] += [(f"#pa{tag}", f"{v} >> 31"), (f"#pc{tag}", f"{v} & {MASK31}")]
    return [(f"#pa{tag}", 31), (f"#pc{tag}", 0)]


def _column_limbs(
    plan: Plan, column: Column, fmt: FixedPointFormat, tier: Tier
) -> list[tuple[str, int]]:
    """The limbs of one column, split once per query however many products read it.

    On the NARROW tier, a three-limb double column is split in two BIGINT limbs
    (:func:`_narrow_limbs`); every other column has its reference limbs.
    """
    if tier is Tier.NARROW and not three_limb_double(fmt):
        tier = Tier.REFERENCE
    key = (column.name, tier)
    if key not in plan.limbs:
        tag = f"c{len(plan.limbs)}"
        if tier is Tier.NARROW:
            plan.limbs[key] = _narrow_limbs(plan, tag, column)
        else:
            plan.limbs[key] = _limbs(plan, tag, quote(column.name), fmt)
    return plan.limbs[key]


def product_parts(plan: Plan, product: ProductAggregation, tiers: dict[str, Tier]) -> None:
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
    parts = [Sum(f"sum({quote(a)} * {quote(b)})", sa + sb) for a, sa in left for b, sb in right]
    plan.add((FieldKind.SUM_PRODUCTS, product.key), parts)
