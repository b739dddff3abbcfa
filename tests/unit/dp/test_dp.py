"""Differential privacy: accounting, calibration, the sampler's distribution, the noise
on a node's vector, and the consistency post-processing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from federation.dp import (
    DPParams,
    add_node_noise,
    calibrate,
    dp_fields,
    epsilon_from_rho,
    plan_noise,
    project_consistent,
    rho_from_epsilon,
    sample_discrete_gaussian,
)
from federation.dp.mechanism import zcdp_cost
from federation.encoding import decode_integer, encode_integer
from federation.errors import ConfigError, UnsupportedQueryError
from federation.query import bind_query, parse_query
from federation.query.layout import FieldKind
from federation.schema import Column, ColumnType, DatasetSchema

SCHEMA = DatasetSchema(
    "t",
    (
        Column("x", ColumnType.INTEGER, bounds=(0, 100)),
        Column("y", ColumnType.DOUBLE, bounds=(-5.0, 10.0)),
        Column("z", ColumnType.INTEGER),
        Column("g", ColumnType.CATEGORICAL, domain=("a", "b")),
    ),
)


def bound(sql: str):  # type: ignore[no-untyped-def]
    return bind_query(parse_query(sql), SCHEMA)


def test_rho_conversion_matches_bun_steinke() -> None:
    rho, delta = 0.5, 1e-5
    expected = rho + 2 * math.sqrt(rho * math.log(1 / delta))  # Bun & Steinke Prop. 1.3
    assert epsilon_from_rho(rho, delta) == pytest.approx(expected)
    assert rho_from_epsilon(expected, delta) == pytest.approx(rho)
    assert epsilon_from_rho(0.0, delta) == 0.0


@pytest.mark.parametrize(
    ("epsilon", "delta"),
    [(0, 1e-6), (-1, 1e-6), (float("nan"), 1e-6), (1, 0), (1, 1), (True, 1e-6)],
)
def test_invalid_privacy_parameters_are_refused(epsilon: float, delta: float) -> None:
    with pytest.raises(ConfigError):
        DPParams(epsilon, delta)


def test_calibration_matches_the_gaussian_formula() -> None:
    # Large noise: tau is negligible, so c = sqrt(k / (2 rho)) (each of k unit-sensitivity
    # coordinates costs 1 / (2 c^2), the Gaussian mechanism's Delta^2 / (2 sigma^2)).
    for rho, k in [(0.01, 3), (0.1, 1), (0.005, 5)]:
        c = calibrate(rho, k, 2, 5)
        assert c == pytest.approx(math.sqrt(k / (2 * rho)), rel=1e-9)
        assert zcdp_cost(c, k, 2, 5) <= rho * (1 + 1e-9)


def test_calibration_pays_for_the_sum_not_being_discrete_gaussian() -> None:
    # Small per-node scales: the Kairouz et al. tau term forces more noise.
    rho, k, t, n = 2.0, 1, 9, 20
    c = calibrate(rho, k, t, n)
    assert c > math.sqrt(k / (2 * rho))
    assert zcdp_cost(c, k, t, n) <= rho * (1 + 1e-9)
    assert c / math.sqrt(t) >= 0.5


def test_sampler_has_the_discrete_gaussian_distribution() -> None:
    scale, n = 3.0, 20_000
    samples = sample_discrete_gaussian(scale, n)
    assert len(samples) == n
    assert all(isinstance(v, int) for v in samples)
    arr = np.array(samples, dtype=np.float64)
    assert abs(arr.mean()) < 5 * scale / math.sqrt(n)
    # The sample variance's relative std is sqrt(2/n) (~1%); allow 5 of them.
    assert arr.var() == pytest.approx(scale**2, rel=5 * math.sqrt(2 / n))
    # Chi-square goodness of fit against the pmf exp(-x^2 / (2 scale^2)) / Z.
    support = np.arange(-40, 41)
    weights = np.exp(-(support**2) / (2 * scale**2))
    pmf = weights / weights.sum()
    edges = list(range(-7, 8))
    observed = [int(np.sum(arr < -7.5))] + [int(np.sum(arr == v)) for v in edges]
    observed.append(int(np.sum(arr > 7.5)))
    expected = [pmf[support < -7.5].sum()] + [pmf[support == v][0] for v in edges]
    expected.append(pmf[support > 7.5].sum())
    chi2 = sum((o - n * e) ** 2 / (n * e) for o, e in zip(observed, expected, strict=True))
    assert chi2 < 60  # 16 degrees of freedom: P(chi2 > 60) < 1e-6


def test_dp_fields_and_sensitivities() -> None:
    fields = dp_fields(bound("SELECT g, COUNT(*), SUM(x), AVG(y) FROM t GROUP BY g"))
    by_label = {f.label: f for f in fields}
    assert by_label["COUNT(*)"].sensitivity == 1
    assert by_label["SUM(x)"].sensitivity == 100
    assert by_label["SUM(x)"].shift == 0
    s = by_label["SUM(y)"]
    assert s.sensitivity * 2**s.shift >= 10 * 2**52
    assert s.sensitivity < 2**33


def test_variances_noise_the_sum_of_squares_with_sensitivity_m_squared() -> None:
    fields = dp_fields(bound("SELECT VAR_SAMP(x), STDDEV_POP(y) FROM t"))
    by_label = {f.label: f for f in fields}
    # x: integer in [0, 100]: one row moves sum x by <= 100 and sum x**2 by <= 100**2
    assert by_label["SUM(x)"].sensitivity == 100
    squares = by_label["SUM(x*x)"]
    assert (squares.kind, squares.sensitivity, squares.shift) == (FieldKind.SUM_SQUARES, 10_000, 0)
    # y: a double in [0, 10], encoded with 52 fraction bits: (10 * 2**52)**2 on a lattice
    y2 = by_label["SUM(y*y)"]
    assert y2.fraction_bits == 2 * by_label["SUM(y)"].fraction_bits
    assert y2.sensitivity * 2**y2.shift >= (10 * 2**52) ** 2
    assert (y2.sensitivity - 1) * 2**y2.shift < (10 * 2**52) ** 2
    assert y2.sensitivity < 2**33


def test_the_projection_keeps_every_variance_non_negative() -> None:
    b = bound("SELECT g, VAR_SAMP(x) FROM t GROUP BY g")
    vec = _vector(
        b,
        {
            (FieldKind.ROWS, None): [5, 5, 5],
            (FieldKind.COUNT, "x"): [4, 4, 0],
            (FieldKind.SUM, "x"): [20, 20, 9],
            (FieldKind.SUM_SQUARES, "x"): [90, 120, 50],  # 4 * 90 < 20**2: impossible
        },
    )
    out = project_consistent(b, vec, dp_fields(b))
    assert _read(b, out, FieldKind.SUM_SQUARES, "x")[:3] == [100, 120, 0]
    assert _read(b, out, FieldKind.SUM, "x")[2] == 0  # no values: no sum


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT CORR(x, y) FROM t", "CORR"),
        ("SELECT VAR_SAMP(z) FROM t", "declares no bounds"),
        ("SELECT SUM(z) FROM t", "declares no bounds"),
        ("SELECT SUM(x * y) FROM t", "single column"),
    ],
)
def test_queries_dp_cannot_answer_are_refused(sql: str, message: str) -> None:
    with pytest.raises(UnsupportedQueryError, match=message):
        dp_fields(bound(sql))


def _vector(b, values: dict[tuple[FieldKind, str | None], list[int]]) -> np.ndarray:  # type: ignore[no-untyped-def]
    layout = b.layout
    vec = np.zeros(layout.length, dtype=np.uint64)
    for (kind, column), per_slot in values.items():
        f = layout.field(kind, column)
        for slot, v in enumerate(per_slot):
            start = slot * layout.slot_width + f.offset
            vec[start : start + f.digits] = encode_integer(v, f.digits)
    return vec


def _read(b, vec: np.ndarray, kind: FieldKind, column: str | None) -> list[int]:  # type: ignore[no-untyped-def]
    layout = b.layout
    f = layout.field(kind, column)
    return [
        decode_integer(
            vec[s * layout.slot_width + f.offset : s * layout.slot_width + f.offset + f.digits]
        )
        for s in range(layout.slots)
    ]


def test_node_noise_has_the_planned_scale() -> None:
    b = bound("SELECT COUNT(*), SUM(x) FROM t")
    plan = plan_noise(b, DPParams(1.0).rho, 1, 1)
    errors: list[int] = []
    for _ in range(200):
        vec = _vector(
            b,
            {
                (FieldKind.ROWS, None): [50],
                (FieldKind.COUNT, "x"): [50],
                (FieldKind.SUM, "x"): [2500],
            },
        )
        noisy = add_node_noise(b, vec, plan)
        errors.append(_read(b, noisy, FieldKind.SUM, "x")[0] - 2500)
    sigma = plan.total_sigma(dp_fields(b)[2], 1)
    assert np.std(errors) == pytest.approx(sigma, rel=0.3)


def test_consistency_projection() -> None:
    b = bound("SELECT g, COUNT(*), SUM(x) FROM t GROUP BY g")
    vec = _vector(
        b,
        {
            (FieldKind.ROWS, None): [-3, 5, 2],
            (FieldKind.COUNT, "x"): [4, 9, -1],
            (FieldKind.SUM, "x"): [7, 30, 11],
        },
    )
    out = project_consistent(b, vec, dp_fields(b))
    assert _read(b, out, FieldKind.ROWS, None) == [0, 5, 2]
    assert _read(b, out, FieldKind.COUNT, "x") == [0, 5, 0]
    assert _read(b, out, FieldKind.SUM, "x") == [0, 30, 0]
