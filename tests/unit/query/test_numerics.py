"""Numerics: exact results for every limb plan, and the hard (large offset, tiny spread) case."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from federation.encoding import LimbPlan, fixed_point_format
from federation.schema import Column, ColumnType, DatasetSchema

from .conftest import run_federated

AGGS = ("SUM", "AVG", "VAR_POP", "VAR_SAMP", "STDDEV_POP", "STDDEV_SAMP")


def exact_moments(values: list[Any]) -> dict[str, Any]:
    """Exact pooled statistics of the raw values (rational arithmetic, two-pass)."""
    fr = [Fraction(v) for v in values]
    n = len(fr)
    total = sum(fr, Fraction(0))
    mean = total / n
    ss = sum(((f - mean) ** 2 for f in fr), Fraction(0))
    return {
        "SUM": total,
        "AVG": mean,
        "VAR_POP": ss / n,
        "VAR_SAMP": ss / (n - 1) if n > 1 else None,
    }


def is_correctly_rounded_sqrt(r: float, square: Fraction) -> bool:
    """True iff ``r`` is ``sqrt(square)`` rounded to nearest (checked with exact squares)."""
    if square == 0:
        return r == 0.0
    lo = (Fraction(r) + Fraction(math.nextafter(r, 0.0))) / 2
    hi = (Fraction(r) + Fraction(math.nextafter(r, math.inf))) / 2
    return lo * lo <= square <= hi * hi


def split(values: list[Any], parts: int, rng: np.random.Generator) -> list[list[Any]]:
    cuts = sorted(rng.integers(0, len(values) + 1, parts - 1).tolist())
    return [values[a:b] for a, b in zip([0, *cuts], [*cuts, len(values)], strict=True)]


def check_exact(table_row: tuple[Any, ...], exact: dict[str, Any], integer: bool) -> None:
    got = dict(zip(AGGS, table_row, strict=True))
    assert got["SUM"] == (int(exact["SUM"]) if integer else float(exact["SUM"]))
    assert got["AVG"] == float(exact["AVG"])
    assert got["VAR_POP"] == float(exact["VAR_POP"])
    assert got["VAR_SAMP"] == float(exact["VAR_SAMP"])
    assert is_correctly_rounded_sqrt(got["STDDEV_POP"], exact["VAR_POP"])
    assert is_correctly_rounded_sqrt(got["STDDEV_SAMP"], exact["VAR_SAMP"])


CASES = [
    # (column, plan, value generator producing exactly encodable values)
    (Column("v", ColumnType.INTEGER, bounds=(-1000, 1000)), LimbPlan.ONE),
    (Column("v", ColumnType.INTEGER), LimbPlan.TWO),
    (Column("v", ColumnType.DOUBLE, bounds=(-1e-7, 1e-7)), LimbPlan.ONE),
    (Column("v", ColumnType.DOUBLE, bounds=(-1000.0, 1000.0)), LimbPlan.TWO),
    (Column("v", ColumnType.DOUBLE), LimbPlan.THREE),
]


def values_for(column: Column, rng: np.random.Generator, n: int) -> list[Any]:
    fmt = fixed_point_format(column)
    if column.type is ColumnType.INTEGER:
        top = int(fmt.upper)
        vals = [int(v) for v in rng.integers(-top, top, n, endpoint=True)]
        edges = [top, -top, top, top - 1, 2**31, -(2**31), 2**31 - 1, 2**31 + 1, 0]
        return vals + [e for e in edges if abs(e) <= top]
    hi = math.floor(float(fmt.upper) * 2**52) / 2**52  # largest encodable-exactly bound
    # Multiples of 2**-52 (every double >= 1 is one): encoded exactly, so results must be
    # the exact pooled values correctly rounded.
    raw = rng.uniform(-hi, hi, n) * rng.choice([1.0, 1e-3, 1e-9], n)
    doubles = [round(float(v) * 2**52) / 2**52 for v in raw]
    return [*doubles, hi, -hi, hi, 0.0, 2.0**-52, -(2.0**-52)]


@pytest.mark.parametrize(("column", "plan"), CASES)
def test_results_are_exact_for_every_limb_plan(column: Column, plan: LimbPlan) -> None:
    assert fixed_point_format(column).limbs is plan
    schema = DatasetSchema("d", (column,))
    rng = np.random.default_rng(11)
    values = values_for(column, rng, 400)
    parts = [{"v": p} for p in split(values, 5, rng)]
    sql = "SELECT " + ", ".join(f"{a}(v)" for a in AGGS) + " FROM d"
    table, _ = run_federated(sql, schema, parts)
    check_exact(table.rows[0], exact_moments(values), column.type is ColumnType.INTEGER)


def test_values_below_resolution_stay_within_the_stated_bound() -> None:
    schema = DatasetSchema("d", (Column("v", ColumnType.DOUBLE),))
    rng = np.random.default_rng(5)
    values = [float(v) for v in rng.uniform(-1e-3, 1e-3, 300)]  # bits below 2**-52
    table, _ = run_federated(
        "SELECT SUM(v), AVG(v), VAR_POP(v), STDDEV_POP(v) FROM d", schema, [{"v": values}]
    )
    got_sum, got_avg, got_var, got_sd = (float(v) for v in table.rows[0])  # type: ignore[arg-type]
    ex = exact_moments(values)
    n, delta = len(values), 2.0**-53
    sd = math.sqrt(float(ex["VAR_POP"]))
    rel = 2.0**-52
    assert abs(Fraction(got_sum) - ex["SUM"]) <= rel * abs(ex["SUM"]) + n * delta
    assert abs(Fraction(got_avg) - ex["AVG"]) <= rel * abs(ex["AVG"]) + delta
    var_bound = 2 * sd * delta + delta**2
    assert abs(got_var - float(ex["VAR_POP"])) <= rel * got_var + var_bound
    assert abs(got_sd - sd) <= rel * sd + delta
    # and the rounding is visible: the encoded sum is not the float sum of raw values
    assert got_sum != 0.0


def test_hard_data_large_offset_tiny_spread() -> None:
    """1e7 + 0.1·u over 10**5 rows in 7 nodes: exact where naive sums of squares fail."""
    schema = DatasetSchema(
        "d",
        (Column("v", ColumnType.DOUBLE), Column("g", ColumnType.CATEGORICAL, domain=("a", "b"))),
    )
    rng = np.random.default_rng(2024)
    n = 100_000
    x = 1e7 + 0.1 * rng.random(n)
    g = rng.choice(["a", "b"], n)
    values = x.tolist()
    parts = [
        {"v": values[a:b], "g": g[a:b].tolist()}
        for a, b in zip(
            [0, 9000, 20000, 20000, 51000, 70000, 88000],
            [9000, 20000, 20000, 51000, 70000, 88000, n],
            strict=True,
        )
    ]
    table, _ = run_federated(
        "SELECT COUNT(*), AVG(v), VAR_SAMP(v), STDDEV_SAMP(v), VAR_POP(v) FROM d", schema, parts
    )
    row: tuple[Any, ...] = table.rows[0]
    count, avg, var_samp, sd_samp, var_pop = row
    # Exact reference with integers: every value is k·2**-29 here (1e7 <= x < 2**24).
    scale = 2**29
    ints = [int(v * scale) for v in values]
    assert all(Fraction(v) == Fraction(k, scale) for v, k in zip(values[:1000], ints, strict=False))
    s1, s2 = sum(ints), sum(k * k for k in ints)
    exact_var_samp = Fraction(n * s2 - s1 * s1, n * (n - 1) * scale * scale)
    assert count == n
    assert avg == float(Fraction(s1, n * scale))
    assert var_samp == float(exact_var_samp)
    assert var_pop == float(exact_var_samp * (n - 1) / n)
    assert is_correctly_rounded_sqrt(sd_samp, exact_var_samp)
    assert abs(var_samp - 0.01 / 12) < 1e-4  # sanity: variance of 0.1·U(0,1)
    # Teeth: the naive float64 one-pass formula loses every digit on the same data.
    naive = (float(np.sum(x * x)) - float(np.sum(x)) ** 2 / n) / (n - 1)
    assert abs(naive - float(exact_var_samp)) > 1e-3 * float(exact_var_samp)
    # and the per-group results add up to the pooled count
    grouped, _ = run_federated("SELECT g, COUNT(*), AVG(v) FROM d GROUP BY g", schema, parts)
    counts: list[Any] = grouped.column("count(*)")
    assert len(counts) == 2
    assert sum(counts) == n
