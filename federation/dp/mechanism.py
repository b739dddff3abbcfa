"""The distributed discrete Gaussian mechanism on a node's aggregate vector.

What is released. A DP query may use ``COUNT(*)``, ``COUNT(col)``, ``SUM(col)``,
``AVG(col)`` (= noisy ``SUM`` / noisy ``COUNT``, post-processing) and ``VAR_SAMP``,
``VAR_POP``, ``STDDEV_SAMP``, ``STDDEV_POP`` (from the noisy count, sum and sum of
squares, post-processing) over columns with declared bounds, with any WHERE, GROUP BY
and HAVING. Each group slot of the vector then holds the *noised fields*
(:func:`dp_fields`): the rows (``COUNT(*)``), and per aggregated column its non-NULL
count, for SUM/AVG and the variances its sum of fixed-point values ``X``, and for the
variances also its sum of ``X²``. Before the query runs, the node clips the summed
columns to their declared bounds (:func:`clipped_relation`), so adding or removing one
row changes its group's row count and counts by at most 1, each sum by at most
``M = max|X|`` over the bounds and each sum of squares by at most ``M²``; other slots
do not change. With ``GROUPING SETS`` a row is in one slot of each
of the ``S`` grouping sets, so it moves ``S`` slots (each as above).

Who adds the noise. Every node adds independent discrete Gaussian noise to each noised
field of every slot of its own encoded vector, before masking (secagg) or encryption
(paillier, ckks), so no party, the coordinator and the analyst included, ever sees an
exact aggregate. A job ends with the contributions of at least ``t`` nodes: the
SecAgg+ Shamir threshold (fewer survivors cannot be unmasked, so nothing is released)
or, for the homomorphic protocols, every node (their zero-sum masks need all of them).
Each node draws variance ``(c·Δ)**2 / t`` on field lattice units, so the sum over any
``n >= t`` surviving nodes carries variance ``>= (c·Δ)**2``. The node derives ``t``,
``c`` and ``Δ`` itself from its task and its own schema; it never takes a noise scale
from the coordinator.

Sums of doubles. A SUM field's ``M`` can exceed what an exact 64-bit sampler takes
(``X`` has 52 fraction bits), so the node releases it on the lattice ``2**s·Z``:
``2**s · (floor(S / 2**s + 1/2) + Z)`` with ``s`` chosen so that ``M / 2**s < 2**32``,
whose integer part has sensitivity ``Δ = ceil(M / 2**s)``. The rounding moves a node's
sum by at most ``2**(s-1)`` encoded units, far below the noise. Integer columns with
small bounds have ``s = 0``.

The guarantee. A sum of discrete Gaussians is not exactly a discrete Gaussian, so we
use the bound of Kairouz, Liu & Steinke (2021, "The Distributed Discrete Gaussian
Mechanism for Federated Learning with Secure Aggregation", Thm. 1 with d = 1) per
coordinate: the sum of ``n`` i.i.d. ``N_Z(0, sigma²)`` (``sigma >= 1/2``) released for an
integer query of sensitivity ``Δ`` satisfies ``ε²/2``-zCDP with
``ε² <= Δ²/(nsigma²) + τ/2``, ``τ = 10 Σ_{j=1}^{n-1} exp(-2π²sigma² j/(j+1))``. With
``sigma² = (cΔ)²/t`` and ``t <= n <= N`` (``N``: the job's nodes) each coordinate costs at
most ``(1/c² + τ_N/2)/2`` with ``τ_N`` taken at the smallest node scale ``c/√t``, and
independent coordinates add: a row touches ``k`` fields (the noised fields times the
grouping sets), so the query is ``rho(c) = k/2 · (1/c² + τ_N/2)``-zCDP. :func:`calibrate`
picks the smallest ``c`` with ``rho(c) <= rho`` of the query. We chose the discrete
Gaussian over Skellam because OpenDP ships an exact, CSPRNG-driven discrete Gaussian
sampler (``make_gaussian`` over an integer domain; Canonne, Kamath & Steinke 2020),
while it offers no Skellam sampler; the price is the small ``τ`` term above instead of
an exact closed form.

Sampling never uses floating point: OpenDP samples exactly from the discrete Gaussian
with a cryptographically secure source (no textbook float Laplace, Mironov 2012).

Post-processing (free of privacy cost): the summed noisy vector is made consistent
before finalization (:func:`project_consistent`): negative counts become 0, a column's
count is capped by the group's rows, sums with count 0 are 0, and a sum of squares is
raised to ``(ΣX)²/n`` if below (Cauchy-Schwarz), so no variance is negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from federation.encoding import decode_integer, encode_integer
from federation.errors import DataError, UnsupportedQueryError, ValueOutOfRangeError
from federation.query.bind import BoundQuery
from federation.query.layout import FieldKind, VectorLayout
from federation.query.outputs import Aggregate, AggregateFunction, aggregates_of

__all__ = [
    "DP_FUNCTIONS",
    "MAX_NODE_SCALE",
    "NoisePlan",
    "NoisedField",
    "add_node_noise",
    "calibrate",
    "clipped_relation",
    "dp_fields",
    "plan_noise",
    "project_consistent",
    "sample_discrete_gaussian",
    "zcdp_cost",
]

DP_FUNCTIONS = frozenset(
    {
        AggregateFunction.COUNT,
        AggregateFunction.SUM,
        AggregateFunction.AVG,
        AggregateFunction.VAR_SAMP,
        AggregateFunction.VAR_POP,
        AggregateFunction.STDDEV_SAMP,
        AggregateFunction.STDDEV_POP,
    }
)
"""The aggregates a DP query may use."""

MAX_NODE_SCALE = 2.0**56
"""The largest per-node noise scale (lattice units) the 64-bit sampler is asked for."""

_LATTICE_BITS = 32


@dataclass(frozen=True)
class NoisedField:
    """One field of every group slot that DP noises.

    Attributes:
        kind: ROWS, COUNT or SUM.
        column: The field's column (``None`` for ROWS).
        sensitivity: ``Δ``: how much one row moves the field, in lattice units.
        shift: ``s``: the field is released on the lattice ``2**s`` (encoded units).
        fraction_bits: ``F`` of the column's fixed point (result = encoded / 2**F).
        label: The aggregate it releases: ``COUNT(*)``, ``COUNT(x)`` or ``SUM(x)``.
    """

    kind: FieldKind
    column: str | None
    sensitivity: int
    shift: int
    fraction_bits: int
    label: str


def _aggregates(bound: BoundQuery) -> list[Aggregate]:
    found = [a for out in bound.outputs for a in aggregates_of(out.source)]
    if bound.having is not None:
        found += aggregates_of(bound.having)
    return found


def dp_fields(bound: BoundQuery) -> tuple[NoisedField, ...]:
    """The fields a DP query noises, with their sensitivities.

    Raises:
        UnsupportedQueryError: the query uses an aggregate other than COUNT, SUM and
            AVG, a two-column or expression aggregate, or sums a column without
            declared bounds (DP needs them to bound one row's influence).
    """
    for call in _aggregates(bound):
        if call.function not in DP_FUNCTIONS:
            raise UnsupportedQueryError(
                f"{call.function.value.upper()} is not available with differential privacy "
                "yet; DP queries may use COUNT, SUM, AVG and the variances and standard "
                "deviations (over columns with bounds)"
            )
        if call.column2 is not None or call.operand is not None:
            raise UnsupportedQueryError(
                "with differential privacy, SUM, AVG and the variances take a single column "
                "(expressions and products have no declared bounds)"
            )
    if bound.products:
        raise UnsupportedQueryError("products of columns are not available with DP yet")
    fields = [NoisedField(FieldKind.ROWS, None, 1, 0, 0, "COUNT(*)")]
    for agg in bound.aggregations:
        name = agg.column.name
        if agg.mask is not None or agg.expression is not None:
            raise UnsupportedQueryError(
                f"column {name!r}: only COUNT, SUM, AVG and the variances are available with DP"
            )
        fields.append(NoisedField(FieldKind.COUNT, agg.key, 1, 0, 0, f"COUNT({name})"))
        if not agg.need_sum:
            continue
        fmt = agg.format
        if fmt is None or agg.column.bounds is None:
            raise UnsupportedQueryError(
                f"column {name!r} of dataset {bound.dataset!r} declares no bounds, which "
                "differential privacy needs to bound one row's influence on SUM/AVG; the "
                "data holder must add bounds = [lower, upper] to the column"
            )
        fields.append(_sum_field(FieldKind.SUM, agg.key, fmt.max_abs, fmt.fraction_bits, name))
        if agg.need_squares:  # the variances: one row moves sum X**2 by at most M**2
            fields.append(
                _sum_field(
                    FieldKind.SUM_SQUARES,
                    agg.key,
                    fmt.max_abs**2,
                    2 * fmt.fraction_bits,
                    f"{name}*{name}",
                )
            )
    return tuple(fields)


def _sum_field(kind: FieldKind, key: str, bound: int, fraction_bits: int, what: str) -> NoisedField:
    """A sum released on the lattice ``2**s`` with ``bound / 2**s < 2**32``."""
    shift = max(0, bound.bit_length() - _LATTICE_BITS)
    delta = max(1, -(-bound // (1 << shift)))
    return NoisedField(kind, key, delta, shift, fraction_bits, f"SUM({what})")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def clipped_relation(bound: BoundQuery, relation: str) -> str:
    """``relation`` with every summed column clipped to its declared bounds (DuckDB SQL).

    The clipping applies everywhere the column is read (WHERE and GROUP BY too), so a
    value outside the bounds counts as the nearest bound instead of failing the query.
    """
    items: list[str] = []
    for agg in bound.aggregations:
        fmt = agg.format
        if not agg.need_sum or fmt is None or agg.expression is not None:
            continue
        col = _quote(agg.column.name)
        if isinstance(fmt.lower, int) and isinstance(fmt.upper, int):
            lo, hi = str(fmt.lower), str(fmt.upper)
        else:
            lo = f"CAST({float(fmt.lower)!r} AS DOUBLE)"
            hi = f"CAST({float(fmt.upper)!r} AS DOUBLE)"
        items.append(f"LEAST(GREATEST({col}, {lo}), {hi}) AS {col}")
    if not items:
        return relation
    return f"(SELECT * REPLACE ({', '.join(items)}) FROM {relation}) AS dp_clipped"  # noqa: S608


def _tau(c: float, min_nodes: int, max_nodes: int) -> float:
    sigma2 = c * c / min_nodes
    return 10.0 * sum(
        math.exp(-2.0 * math.pi**2 * sigma2 * j / (j + 1)) for j in range(1, max_nodes)
    )


def zcdp_cost(c: float, fields: int, min_nodes: int, max_nodes: int) -> float:
    """``rho(c)``: the zCDP of the released sum (module docstring) for noise multiplier ``c``."""
    return fields / 2.0 * (1.0 / (c * c) + _tau(c, min_nodes, max_nodes) / 2.0)


def calibrate(rho: float, fields: int, min_nodes: int, max_nodes: int) -> float:
    """The smallest noise multiplier ``c`` (total std = ``c·Δ``) with ``rho(c) <= rho``.

    Raises:
        ValueError: an argument out of range.
    """
    if rho <= 0 or fields < 1 or min_nodes < 1 or max_nodes < min_nodes:
        raise ValueError("calibrate needs rho > 0, fields >= 1, 1 <= min_nodes <= max_nodes")
    # each node's scale c/sqrt(t) must be >= 1/2 for the bound to apply
    low = max(math.sqrt(fields / (2.0 * rho)), math.sqrt(min_nodes) / 2.0)
    high = low
    while zcdp_cost(high, fields, min_nodes, max_nodes) > rho:
        high *= 2.0
    if high == low:
        return low
    low = high / 2.0
    for _ in range(60):
        mid = (low + high) / 2.0
        if zcdp_cost(mid, fields, min_nodes, max_nodes) > rho:
            low = mid
        else:
            high = mid
    return high


@dataclass(frozen=True)
class NoisePlan:
    """The noise of one DP job, derived from the query, rho and the job's node counts."""

    fields: tuple[NoisedField, ...]
    multiplier: float
    """``c``: the total noise std of a field is ``c·Δ`` lattice units (for ``t`` nodes)."""
    min_nodes: int
    max_nodes: int

    def node_scale(self, field: NoisedField) -> float:
        """One node's discrete Gaussian scale for ``field`` (lattice units)."""
        return self.multiplier * field.sensitivity / math.sqrt(self.min_nodes)

    def total_sigma(self, field: NoisedField, contributors: int) -> float:
        """The std of the summed noise of ``contributors`` nodes, in result units."""
        lattice = self.multiplier * field.sensitivity * math.sqrt(contributors / self.min_nodes)
        return math.ldexp(lattice, field.shift - field.fraction_bits)


def plan_noise(bound: BoundQuery, rho: float, min_nodes: int, max_nodes: int) -> NoisePlan:
    """The noise plan every node and the coordinator derive for a DP job.

    Raises:
        UnsupportedQueryError: see :func:`dp_fields`.
    """
    fields = dp_fields(bound)
    # One row is in one slot of every grouping set: it moves each noised field once per set.
    touched = len(fields) * len(bound.layout.sets)
    return NoisePlan(fields, calibrate(rho, touched, min_nodes, max_nodes), min_nodes, max_nodes)


def sample_discrete_gaussian(scale: float, size: int) -> list[int]:
    """``size`` exact i.i.d. samples of the discrete Gaussian ``N_Z(0, scale²)`` (OpenDP,
    cryptographically secure randomness).

    Raises:
        DataError: ``scale`` is beyond :data:`MAX_NODE_SCALE`.
    """
    if not 0 < scale <= MAX_NODE_SCALE:
        raise DataError(
            f"the DP noise scale {scale:.3g} is outside what the sampler supports "
            f"(0, {MAX_NODE_SCALE:.3g}]; use a larger epsilon"
        )
    if size == 0:
        return []
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64")
    measurement = dp.m.make_gaussian(*space, scale=scale)
    return [int(v) for v in measurement([0] * size)]


def _field_words(vector: npt.NDArray[np.uint64], start: int, digits: int) -> list[int]:
    return [int(w) for w in vector[start : start + digits]]


def add_node_noise(
    bound: BoundQuery, vector: npt.NDArray[np.uint64], plan: NoisePlan
) -> npt.NDArray[np.uint64]:
    """A node's vector with its share of the noise added to every noised field.

    Raises:
        DataError: the noise does not fit the field's encoding (epsilon too small).
    """
    layout = bound.layout
    out = np.array(vector, dtype=np.uint64, copy=True)
    for nf in plan.fields:
        field = layout.field(nf.kind, nf.column)
        noise = sample_discrete_gaussian(plan.node_scale(nf), layout.slots)
        half = (1 << nf.shift) >> 1
        for slot, z in enumerate(noise):
            start = slot * layout.slot_width + field.offset
            value = decode_integer(_field_words(out, start, field.digits))
            lattice = (value + half) >> nf.shift
            try:
                words = encode_integer((lattice + z) << nf.shift, field.digits)
            except ValueOutOfRangeError:
                raise DataError(
                    "the DP noise does not fit the aggregate's encoding; use a larger epsilon"
                ) from None
            out[start : start + field.digits] = np.array(words, dtype=np.uint64)
    return out


def project_consistent(
    bound: BoundQuery, total: npt.NDArray[np.uint64], fields: tuple[NoisedField, ...]
) -> npt.NDArray[np.uint64]:
    """Make a summed noisy vector consistent (post-processing): counts >= 0, a column's
    count <= its group's rows, sums with count 0 are 0, and ``n·ΣX² >= (ΣX)²`` so that
    no released variance is negative."""
    layout = bound.layout
    out = np.array(total, dtype=np.uint64, copy=True)
    rows_field = layout.field(FieldKind.ROWS)
    counts = [f for f in fields if f.kind is FieldKind.COUNT]
    squares_or_sums = {(f.kind, f.column) for f in fields}
    zero = np.zeros(max(f.digits for f in layout.fields), dtype=np.uint64)
    for slot in range(layout.slots):
        base = slot * layout.slot_width
        r0 = base + rows_field.offset
        rows = decode_integer(_field_words(out, r0, rows_field.digits))
        if rows < 0:
            out[r0 : r0 + rows_field.digits] = zero[: rows_field.digits]
            rows = 0
        for nf in counts:
            cf = layout.field(FieldKind.COUNT, nf.column)
            c0 = base + cf.offset
            count = decode_integer(_field_words(out, c0, cf.digits))
            if count <= 0:
                out[c0 : c0 + cf.digits] = zero[: cf.digits]
                count = 0
            elif count > rows:
                out[c0 : c0 + cf.digits] = out[r0 : r0 + rows_field.digits]
                count = rows
            if count == 0:
                for kind in (FieldKind.SUM, FieldKind.SUM_SQUARES):
                    if (kind, nf.column) in squares_or_sums:
                        f = layout.field(kind, nf.column)
                        out[base + f.offset : base + f.offset + f.digits] = zero[: f.digits]
            elif (FieldKind.SUM_SQUARES, nf.column) in squares_or_sums:
                _bound_squares(out, layout, base, nf.column, count)
    return out


def _bound_squares(
    out: npt.NDArray[np.uint64], layout: VectorLayout, base: int, column: str | None, count: int
) -> None:
    """Cauchy-Schwarz: ``count · ΣX² >= (ΣX)²`` (so no variance is negative)."""
    sf = layout.field(FieldKind.SUM, column)
    qf = layout.field(FieldKind.SUM_SQUARES, column)
    total = decode_integer(_field_words(out, base + sf.offset, sf.digits))
    squares = decode_integer(_field_words(out, base + qf.offset, qf.digits))
    least = -(-(total * total) // count)
    if squares < least:
        words = encode_integer(least, qf.digits)
        out[base + qf.offset : base + qf.offset + qf.digits] = np.array(words, dtype=np.uint64)
