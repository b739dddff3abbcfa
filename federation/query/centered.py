"""The CENTERED tiers: ``S2 = ΣX²`` from one compensated DOUBLE sum, certified per group.

The exact tiers build ``S2`` from ten sums of limb products (:mod:`.column_sums`),
which is most of the local query's cost. For a double column whose squares feed the
variances, CENTERED computes instead, per group, in DuckDB

    ``T = fsum(e·e)`` with ``e = fl(X - C)``

where ``X = round(x·2**52)`` is held exactly as a DOUBLE, ``C = round(c·2**52)`` is the
column's mean ``c`` on this node in the same units (:func:`center_offset`, exactly a
DOUBLE), and ``fsum`` is DuckDB's Kahan-compensated sum. Then, exactly in integers,

    ``S2' = round(T) + 2·C·S1 - n·C²``

with ``n`` and ``S1 = ΣX`` the group's exact count and sum. The identity
``ΣX² = Σ(X - C)² + 2·C·ΣX - n·C²`` makes ``S2'`` equal ``S2`` but for the error of
``T``:

* ``e`` and ``e·e`` each round once (relative ``u = 2**-53``), so every summand is within
  ``3.001u`` of ``(X - C)²``; Kahan summation of non-negative terms adds at most
  ``(2u + O(n·u²))·Σ`` (Higham, *Accuracy and Stability*, §4.3) per DuckDB thread, and
  adding up the ``p`` threads' partial sums, plainly at worst, ``(p - 1)·u·Σ`` more;
  rounding ``T`` adds 1/2.
* So ``|S2' - S2| <= E`` with ``E = ceil((8 + p)·u·T) + 1``: at least ``3u·T`` above the
  worst case, for the ``p`` threads the node's DuckDB runs with (one by default).

Certificate: the group's centred sum of squares ``M2 = S2 - S1²/n`` is at least
``M2' - E`` (``M2'`` from ``S2'``); the node accepts ``S2'`` only when
``E <= 2**-43 · (M2' - E)``, that is ``E <= 2**-43 · M2``. The pooled ``M2`` of all
nodes is at least the sum of theirs (the spread between node means only adds to it),
so every variance and standard deviation released is within a relative ``2**-43``
(``1.1e-13``) of the exact one: 12 significant digits and more. A group whose ``T`` is
far above its ``M2`` (its mean far from ``C``, a single row, equal values) fails the
certificate, and the node reruns that column on an exact tier: the answer depends on
the data only through which tier certified, never on chance.

``S1`` and the counts stay exact. CENTERED reads them as NARROW does (``X`` cast to
BIGINT, which fails for ``|x| >= 2**11`` and sends the column to CENTERED_WIDE);
CENTERED_WIDE as the reference tier does, for every accepted ``|x| < 2**41`` (values near
1e7 varying by 0.1 run there). A node whose column mean is beyond ``2**11`` starts
with CENTERED_WIDE. A group that does not certify on CENTERED reruns on NARROW, on
CENTERED_WIDE on the reference tier.

Neither tier is used with cross products or a ``SUM(x * x)`` (:func:`~.tiers.item_tiers`),
under differential privacy (the node passes no centers), or on an expression of
columns. The error of ``S2'`` depends on nothing but the node's own rows and mean.
"""

from __future__ import annotations

import math

from federation.encoding import DOUBLE_LIMIT, FixedPointFormat
from federation.query.column_sums import P52, bigint_sums, trunc_sums
from federation.query.layout import FieldKind
from federation.query.plan import Centered, Plan
from federation.query.sql_text import quote
from federation.query.tiers import NARROW_LIMIT

__all__ = [
    "ERROR_MARGIN",
    "TOLERANCE_BITS",
    "center_offset",
    "centered_parts",
    "centered_square",
]

ERROR_MARGIN = 8
"""``E = ceil((ERROR_MARGIN + threads)·2**-53·T) + 1`` bounds ``|S2' - S2|``."""
TOLERANCE_BITS = 43
"""``S2'`` is accepted when ``E <= 2**-TOLERANCE_BITS`` of the group's centred ``M2``."""


def center_offset(center: float | None) -> int | None:
    """``C = round(center·2**52)`` (in ``X`` units) for a column whose mean on this node
    is ``center``, exactly a DOUBLE; None when there is none to use (no values, or
    outside the double range)."""
    if center is None or not math.isfinite(center) or abs(center) > DOUBLE_LIMIT:
        return None
    return round(math.ldexp(center, 52))


def centered_parts(
    plan: Plan,
    i: int,
    fmt: FixedPointFormat,
    offset: int,
    few_groups: bool,
    *,
    wide: bool,
    raw: str,
    name: str,
) -> bool:
    """Add the CENTERED (``wide``: CENTERED_WIDE) stages and aggregates of column ``i``;
    True when its range check is still needed.

    ``X = round(x·2**52)`` is an exact DOUBLE for every accepted ``|x| < 2**41``.
    CENTERED: ``S1`` as on NARROW (``X`` cast to BIGINT, which fails for
    ``|x| >= 2**11``; two int64-safe sums with a GROUP BY of few slots, else one).
    CENTERED_WIDE: ``S1`` as the reference's split ``X = t·2**52 + f`` with
    ``t = trunc(x)`` and ``f = round((x - t)·2**52)``, ``f`` in two 26-bit halves with
    few slots (:func:`~.column_sums.trunc_sums`).
    """
    d, e = quote(f"#d{i}"), quote(f"#e{i}")
    plan.stages[0].append((f"#d{i}", f"round(CAST({raw} AS DOUBLE) * {P52})"))
    plan.stages[1].append((f"#e{i}", f"{d} - CAST({offset} AS DOUBLE)"))
    if wide:
        trunc_sums(plan, i, raw=raw, name=name, halves=few_groups)
    else:
        plan.stages[1].append((f"#v{i}", f"CAST({d} AS BIGINT)"))
        bigint_sums(plan, quote(f"#v{i}"), name=name, halves=few_groups)
    plan.centered[(FieldKind.SUM_SQUARES, name)] = Centered(i, len(plan.aggregates), offset)
    plan.aggregates.append(f"fsum({e} * {e})")
    return wide or not (fmt.lower <= -NARROW_LIMIT and fmt.upper >= NARROW_LIMIT)


def centered_square(n: int, s1: int, total: object, offset: int, threads: int = 1) -> int | None:
    """``S2'`` of one group from its count ``n``, exact ``S1`` and ``T`` (``total``,
    summed by a DuckDB of ``threads`` threads), or None when the certificate fails (see
    the module docstring)."""
    if n == 0:
        return 0 if total is None or total == 0.0 else None
    if not isinstance(total, float) or not 0.0 <= total < math.inf:
        return None
    error = math.ceil(math.ldexp(total, -53) * (ERROR_MARGIN + max(1, threads))) + 1
    square = round(total) + 2 * offset * s1 - n * offset * offset
    if ((1 << TOLERANCE_BITS) + 1) * error * n > n * square - s1 * s1:
        return None
    return square
