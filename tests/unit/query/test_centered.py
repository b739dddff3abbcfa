"""The CENTERED tier: ``S2`` from one compensated sum, within its certified bound of the
exact ``S2``, or escalated to the exact tiers when the certificate fails."""

from __future__ import annotations

import math
from fractions import Fraction

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.encoding import DOUBLE_LIMIT, round_half_away
from federation.errors import DataError, ValueOutOfRangeError
from federation.query import bind_query, compute_local, finalize, parse_query
from federation.query.centered import (
    ERROR_MARGIN,
    TOLERANCE_BITS,
    center_offset,
    centered_square,
)
from federation.query.formulation import Tier, item_tiers, reference_tiers
from federation.schema import Column, ColumnType, DatasetSchema

from .conftest import Partition, arrow_table

SCHEMA = DatasetSchema(
    "d",
    (
        Column("g", ColumnType.CATEGORICAL, domain=("a", "b", "c")),
        Column("x", ColumnType.DOUBLE),
        Column("y", ColumnType.DOUBLE),
    ),
)
STATS = "COUNT(*), SUM(x), AVG(x), VAR_POP(x), VAR_SAMP(x), STDDEV_POP(x)"
SQL = f"SELECT g, {STATS} FROM d GROUP BY g"
GLOBAL = f"SELECT {STATS} FROM d"  # no GROUP BY: the sums of S1 differ
BOUND = 2.0**-TOLERANCE_BITS


def _connect(data: Partition) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"threads": 1})
    con.register("node", arrow_table(SCHEMA, data))
    return con


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _exact_moments(data: Partition, grouped: bool) -> dict[str, tuple[int, Fraction, Fraction]]:
    """Per group: n, ΣX and ΣX² of the fixed-point values, exactly (X = round(x·2**52))."""
    out: dict[str, tuple[int, Fraction, Fraction]] = {}
    keys = data["g"] if grouped else ["*"] * len(data["x"])
    for g, x in zip(keys, data["x"], strict=True):
        if x is None:
            continue
        big = round_half_away(Fraction(x) * 2**52)
        n, s1, s2 = out.get(g, (0, Fraction(0), Fraction(0)))
        out[g] = (n + 1, s1 + big, s2 + big * big)
    return out


def _check_against_exact(
    data: Partition, rows: tuple[tuple[object, ...], ...], grouped: bool = True
) -> None:
    """COUNT, SUM and AVG equal the exact ones rounded; the variances are within the
    certified relative bound of the exact ones (plus their own rounding to double)."""
    exact = _exact_moments(data, grouped)
    assert rows
    for row in rows if grouped else [("*", *r) for r in rows]:
        g = row[0]
        assert isinstance(g, str)
        if g not in exact:
            continue
        n, s1, s2 = exact[g]
        assert row[1] == (sum(1 for k in data["g"] if k == g) if grouped else len(data["x"]))
        assert row[2] == float(s1 / 2**52)
        assert row[3] == float(s1 / n / 2**52)
        m2 = (s2 - s1 * s1 / n) / 2**104
        for got, want in ((row[4], m2 / n), (row[5], m2 / (n - 1) if n > 1 else None)):
            if want is None:
                assert got is None
                continue
            assert isinstance(got, float)
            assert abs(Fraction(got) - want) <= (BOUND + 2.0**-52) * want
        assert isinstance(row[6], float)
        assert abs(row[6] - math.sqrt(float(m2 / n))) <= 2**-40 * row[6]


def test_ordinary_data_runs_on_centered_within_its_bound(tried: list[tuple[Tier, ...]]) -> None:
    gen = np.random.default_rng(5)
    n = 20_000
    data = {
        "g": list(gen.choice(["a", "b", "c"], n)),
        "x": [float(v) for v in gen.normal(50.0, 10.0, n)],
    }
    bound = bind_query(parse_query(SQL), SCHEMA)
    con = _connect(data)
    vector = compute_local(bound, con, "node", centers={"x": _mean(data["x"])})
    assert tried == [(Tier.CENTERED,)]
    _check_against_exact(data, finalize(bound, vector).rows)
    reference = compute_local(bound, con, "node", tiers=reference_tiers(bound))
    # only the ΣX² digits may differ from the exact vector, and they do on this data
    assert not np.array_equal(vector, reference)
    exact = finalize(bound, reference).rows
    assert [r[:4] for r in finalize(bound, vector).rows] == [r[:4] for r in exact]


def test_without_centers_every_quantity_is_exact(tried: list[tuple[Tier, ...]]) -> None:
    data = {"g": ["a", "b", "a"], "x": [1.5, 2.25, -7.0]}
    bound = bind_query(parse_query(SQL), SCHEMA)
    con = _connect(data)
    vector = compute_local(bound, con, "node")
    assert tried[0] == (Tier.NARROW,)
    assert np.array_equal(vector, compute_local(bound, con, "node", tiers=reference_tiers(bound)))
    with pytest.raises(ValueError, match="center"):
        compute_local(bound, con, "node", tiers=(Tier.CENTERED,))


@pytest.mark.parametrize(
    ("x", "center"),
    [
        ([3.0, 5.5, 1.0], 3.0),  # one row in group a: its M2 is 0
        ([2.5, 2.5, 2.5], 0.0),  # equal values: M2 is 0
        ([1e-9, 2e-9, 5.0], 1000.0),  # a center far from a tiny spread
        ([1000.0 + 1e-9, 1000.0 + 2e-9, 1000.0], 0.0),  # a large offset, a tiny spread
    ],
)
def test_groups_that_do_not_certify_rerun_exactly(
    tried: list[tuple[Tier, ...]], x: list[float], center: float
) -> None:
    data = {"g": ["b", "b", "a"], "x": x}
    bound = bind_query(parse_query(SQL), SCHEMA)
    con = _connect(data)
    vector = compute_local(bound, con, "node", centers={"x": center})
    assert tried == [(Tier.CENTERED,), (Tier.NARROW,)]
    assert np.array_equal(vector, compute_local(bound, con, "node", tiers=reference_tiers(bound)))


@pytest.mark.parametrize("sql", [SQL, GLOBAL])
def test_values_beyond_narrow_run_on_centered_wide(tried: list[tuple[Tier, ...]], sql: str) -> None:
    """A mean within NARROW's range, a value beyond it (2**11 = 2048)."""
    data = {"g": ["a", "a", "b", "b"], "x": [2040.5, 2050.25, 2045.0, 2046.0 + 2**-40]}
    bound = bind_query(parse_query(sql), SCHEMA)
    vector = compute_local(bound, _connect(data), "node", centers={"x": _mean(data["x"])})
    assert tried == [(Tier.CENTERED,), (Tier.CENTERED_WIDE,)]
    _check_against_exact(data, finalize(bound, vector).rows, grouped=sql == SQL)


def test_a_center_beyond_narrow_starts_on_centered_wide(tried: list[tuple[Tier, ...]]) -> None:
    """The issue's hard data: values near 1e7 varying by 0.1."""
    gen = np.random.default_rng(9)
    data = {"g": list(gen.choice(["a", "b"], 5000)), "x": list(1e7 + 0.1 * gen.random(5000))}
    bound = bind_query(parse_query(SQL), SCHEMA)
    vector = compute_local(bound, _connect(data), "node", centers={"x": _mean(data["x"])})
    assert tried == [(Tier.CENTERED_WIDE,)]
    _check_against_exact(data, finalize(bound, vector).rows)


def test_a_center_beyond_narrow_skips_narrow_without_squares(
    tried: list[tuple[Tier, ...]],
) -> None:
    data = {"g": ["a", "b", "a"], "x": [1e7, 1e7 + 0.5, 3e6]}
    bound = bind_query(parse_query("SELECT g, AVG(x) FROM d GROUP BY g"), SCHEMA)
    con = _connect(data)
    vector = compute_local(bound, con, "node", centers={"x": _mean(data["x"])})
    assert tried == [(Tier.REFERENCE,)]
    assert np.array_equal(vector, compute_local(bound, con, "node"))  # NARROW first, then


def test_wide_groups_that_do_not_certify_rerun_on_the_reference(
    tried: list[tuple[Tier, ...]],
) -> None:
    data = {"g": ["a", "a", "b"], "x": [1e7, 1e7 + 0.5, 3e6]}  # b: one row
    bound = bind_query(parse_query(SQL), SCHEMA)
    con = _connect(data)
    vector = compute_local(bound, con, "node", centers={"x": 1e7})
    assert tried == [(Tier.CENTERED_WIDE,), (Tier.REFERENCE,)]
    assert np.array_equal(vector, compute_local(bound, con, "node", tiers=reference_tiers(bound)))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT CORR(x, y), VAR_POP(x) FROM d",  # an exact ΣXY beside an inexact ΣX²
        "SELECT AVG(x) FROM d",  # no squares: nothing to gain
        "SELECT SUM(x * x), VAR_POP(x) FROM d",  # sums are exact
        "SELECT g, VAR_POP(x) FROM d GROUP BY g HAVING SUM(x * x) > 1",
    ],
)
def test_centered_is_not_offered_where_it_does_not_apply(sql: str) -> None:
    bound = bind_query(parse_query(sql), SCHEMA)
    assert all(Tier.CENTERED not in options for options in item_tiers(bound))


def test_the_certificate() -> None:
    assert centered_square(0, 0, None, 2**40) == 0
    assert centered_square(0, 0, 1.0, 2**40) is None
    for bad in (-1.0, math.nan, math.inf, 7):
        assert centered_square(2, 0, bad, 0) is None
    # two rows X = ±2**30 around C = 0: T = 2**61 exactly, M2 = 2**61
    assert centered_square(2, 0, 2.0**61, 0) == 2**61
    # the same T claimed for rows with mean 2**30: M2 = 0, nothing certifies
    assert centered_square(2, 2**31, 2.0**61, 0) is None
    # mean 2**30 and M2 = T - 2**61: certified while T / M2 <= 2**10 / (8 + threads)
    assert (ERROR_MARGIN, TOLERANCE_BITS) == (8, 43)
    assert centered_square(2, 2**31, 2.0**61 + 2.0**56, 0) == 2**61 + 2**56  # T / M2 = 33
    assert centered_square(2, 2**31, 2.0**61 + 2.0**54, 0) is None  # T / M2 = 129
    assert centered_square(2, 2**31, 2.0**61 + 2.0**56, 0, threads=32) is None  # 33 > 25.6


@pytest.mark.parametrize("center", [None, math.nan, math.inf, -math.inf, 2.0**41, -(2.0**42)])
def test_no_offset_without_a_usable_center(center: float | None) -> None:
    assert center_offset(center) is None


@given(st.floats(min_value=-DOUBLE_LIMIT, max_value=DOUBLE_LIMIT, allow_nan=False))
def test_offsets_are_exact_doubles_at_the_center(center: float) -> None:
    offset = center_offset(center)
    assert offset is not None
    assert float(offset) == offset  # exactly representable: the SQL literal is exact
    assert abs(Fraction(offset, 2**52) - Fraction(center)) <= Fraction(1, 2**53)


_GROUP = st.tuples(
    st.sampled_from([0.0, 1.0, -3.0, 1000.0, -2000.0, 1e-6, 1e7, -3e9]),  # offset
    st.sampled_from([1e-9, 1e-4, 0.1, 1.0, 100.0]),  # spread
    st.integers(min_value=1, max_value=40),  # rows
)


@settings(max_examples=80, deadline=None)
@given(
    groups=st.lists(_GROUP, min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
    shift=st.floats(min_value=-50.0, max_value=50.0),
    grouped=st.booleans(),
)
def test_centered_is_within_its_bound_or_exact(
    groups: list[tuple[float, float, int]], seed: int, shift: float, grouped: bool
) -> None:
    """Adversarial groups (offsets with tiny spreads, single rows, centers off the
    mean): the released moments are within the bound whichever tier ran."""
    gen = np.random.default_rng(seed)
    data: dict[str, list[object]] = {"g": [], "x": []}
    for label, (offset, spread, rows) in zip("abc", groups, strict=False):
        values = offset + spread * gen.standard_normal(rows)
        data["g"] += [label] * rows
        data["x"] += [float(v) for v in values]
    mean = _mean(data["x"])  # type: ignore[arg-type]
    center = None if mean is None else mean + shift
    bound = bind_query(parse_query(SQL if grouped else GLOBAL), SCHEMA)
    table = finalize(bound, compute_local(bound, _connect(data), "node", centers={"x": center}))
    _check_against_exact(data, table.rows, grouped)


@pytest.mark.parametrize("center", [1.0, 1e7])
@pytest.mark.parametrize(
    ("bad", "error"),
    [(math.nan, DataError), (math.inf, DataError), (-(2.0**41), ValueOutOfRangeError)],
)
def test_bad_values_get_the_reference_errors(
    center: float, bad: float, error: type[DataError]
) -> None:
    data = {"g": ["a", "b", "a"], "x": [1.0, bad, 2.0]}
    bound = bind_query(parse_query(SQL), SCHEMA)
    with pytest.raises(error) as info:
        compute_local(bound, _connect(data), "node", centers={"x": center})
    assert type(info.value) is error
    assert "'x'" in str(info.value)
