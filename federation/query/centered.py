"""The CENTERED tier: ``S2 = ΣX²`` from one compensated DOUBLE sum, certified per group.

The exact tiers build ``S2`` from ten sums of limb products (:mod:`.column_sums`),
which is most of the local query's cost. For a double column whose squares feed the
variances, CENTERED computes instead, per group, in DuckDB

    ``T = fsum(e·e)`` with ``e = fl(X - C)``

where ``X = round(x·2**52)`` is held exactly as a DOUBLE, ``C`` is an integer offset
near the column's mean on this node (:func:`center_offset`, exactly a DOUBLE), and
``fsum`` is DuckDB's Kahan-compensated sum. Then, exactly in integers,

    ``S2' = round(T) + 2·C·S1 - n·C²``

with ``n`` and ``S1 = ΣX`` the group's exact count and sum. The identity
``ΣX² = Σ(X - C)² + 2·C·ΣX - n·C²`` makes ``S2'`` equal ``S2`` but for the error of
``T``:

* ``e`` and ``e·e`` each round once (relative ``u = 2**-53``), so every summand is within
  ``3.001u`` of ``(X - C)²``; Kahan summation of non-negative terms adds at most
  ``(2u + O(n·u²))·Σ`` (Higham, *Accuracy and Stability*, §4.3), per thread, and each
  combination of thread states a few ``u`` more; rounding ``T`` adds 1/2.
* So ``|S2' - S2| <= E`` with ``E = ceil(T / 2**49) + 1`` (``16u·T + 1``, a margin of
  3x over one thread's bound; it covers a dozen DuckDB threads).

Certificate: the group's centred sum of squares ``M2 = S2 - S1²/n`` is at least
``M2' - E`` (``M2'`` from ``S2'``); the node accepts ``S2'`` only when
``E <= 2**-43 · (M2' - E)``, that is ``E <= 2**-43 · M2``. The pooled ``M2`` of all
nodes is at least the sum of theirs (the spread between node means only adds to it),
so every variance and standard deviation released is within a relative ``2**-43``
(``1.1e-13``) of the exact one: 12 significant digits and more. A ``SUM(x*x)`` (also
``S2``) is within the same fraction of its value. A group whose ``T`` is far above its
``M2`` (its mean far from ``C``, a single row, equal values) fails the certificate, and
the node reruns that column on the exact NARROW tier: the answer depends on the
data only through which tier certified, never on chance.

The tier is not used with cross products (:func:`~.tiers.item_tiers`), under
differential privacy (the node passes no centers), or on an expression of columns;
``S1`` and the counts are exact as on NARROW, and values with ``|x| >= 2**11`` make the
BIGINT cast fail and escalate, as on NARROW.
"""

from __future__ import annotations

import math

from federation.encoding import FixedPointFormat
from federation.query.layout import FieldKind
from federation.query.plan import Centered, Plan, Sum
from federation.query.sql_text import quote
from federation.query.tiers import NARROW_LIMIT

__all__ = [
    "ERROR_BITS",
    "TOLERANCE_BITS",
    "center_offset",
    "centered_parts",
    "centered_square",
]

ERROR_BITS = 49
"""``E = ceil(T / 2**ERROR_BITS) + 1`` bounds ``|S2' - S2|``."""
TOLERANCE_BITS = 43
"""``S2'`` is accepted when ``E <= 2**-TOLERANCE_BITS`` of the group's centred ``M2``."""
_CENTER_BITS = 20
"""The offset ``C`` is the center rounded to a multiple of ``2**-20`` (in ``X`` units,
of ``2**32``): few significant bits, so ``C`` is exactly a DOUBLE."""
_MASK32 = "4294967295"
_P52 = "CAST(4503599627370496 AS DOUBLE)"


def center_offset(center: float | None) -> int | None:
    """``C`` (in ``X`` units) for a column whose mean on this node is ``center``; None
    when there is none to use (no values, or outside the NARROW range)."""
    if center is None or not math.isfinite(center) or abs(center) >= NARROW_LIMIT:
        return None
    return round(math.ldexp(center, _CENTER_BITS)) << (52 - _CENTER_BITS)


def centered_parts(
    plan: Plan,
    i: int,
    fmt: FixedPointFormat,
    offset: int,
    few_groups: bool,
    *,
    raw: str,
    name: str,
) -> bool:
    """Add the CENTERED stages and aggregates of column ``i``; True when its range check
    is still needed (as on NARROW).

    ``S1`` as on NARROW (two int64-safe sums with a GROUP BY of few slots, else one).
    """
    d, v, e = quote(f"#d{i}"), quote(f"#v{i}"), quote(f"#e{i}")
    plan.stages[0].append((f"#d{i}", f"round(CAST({raw} AS DOUBLE) * {_P52})"))
    plan.stages[1] += [
        (f"#v{i}", f"CAST({d} AS BIGINT)"),
        (f"#e{i}", f"{d} - CAST({offset} AS DOUBLE)"),
    ]
    plan.add((FieldKind.COUNT, name), [Sum(f"count({v})")])
    if few_groups:
        plan.add((FieldKind.SUM, name), [Sum(f"sum({v} >> 32)", 32), Sum(f"sum({v} & {_MASK32})")])
    else:
        plan.add((FieldKind.SUM, name), [Sum(f"sum({v})")])
    plan.centered[(FieldKind.SUM_SQUARES, name)] = Centered(i, len(plan.aggregates), offset)
    plan.aggregates.append(f"fsum({e} * {e})")
    return not (fmt.lower <= -NARROW_LIMIT and fmt.upper >= NARROW_LIMIT)


def centered_square(n: int, s1: int, total: object, offset: int) -> int | None:
    """``S2'`` of one group from its count ``n``, exact ``S1`` and ``T`` (``total``), or
    None when the certificate fails (see the module docstring)."""
    if n == 0:
        return 0 if total is None or total == 0.0 else None
    if not isinstance(total, float) or not 0.0 <= total < math.inf:
        return None
    error = math.ceil(math.ldexp(total, -ERROR_BITS)) + 1
    square = round(total) + 2 * offset * s1 - n * offset * offset
    if ((1 << TOLERANCE_BITS) + 1) * error * n > n * square - s1 * s1:
        return None
    return square
