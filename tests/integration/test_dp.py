"""Differential privacy end to end over a simulated federation (real gRPC)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import federation as fed
from federation.errors import (
    ConfigError,
    DisclosureControlError,
    PolicyViolationError,
    UnsupportedQueryError,
)
from federation.pki import Role
from federation.policy import Policy
from federation.schema import Classification, Column, ColumnType, DatasetSchema
from federation.simulation import LocalPKI

ROWS = 300
SCHEMA = DatasetSchema(
    "p",
    (
        Column("age", ColumnType.INTEGER, bounds=(18, 90)),
        Column("bmi", ColumnType.DOUBLE, bounds=(10.0, 60.0)),
        Column(
            "income",
            ColumnType.INTEGER,
            bounds=(0, 200),
            classification=Classification.CONFIDENTIAL,
        ),
        Column("score", ColumnType.INTEGER),
        Column("sex", ColumnType.CATEGORICAL, domain=("F", "M")),
    ),
)


def _parts() -> list[pd.DataFrame]:
    rng = np.random.default_rng(7)
    return [
        pd.DataFrame(
            {
                "age": rng.integers(18, 91, ROWS),
                "bmi": rng.uniform(15, 40, ROWS),
                "income": rng.integers(0, 201, ROWS),
                "score": rng.integers(0, 10, ROWS),
                "sex": rng.choice(["F", "M"], ROWS),
            }
        )
        for _ in range(3)
    ]


PARTS = _parts()
POOLED = pd.concat(PARTS)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dp")


@pytest.fixture(scope="module")
def client(workdir: Path) -> Iterator[fed.Client]:
    with fed.simulate(
        {"p": PARTS, "small": PARTS},
        schemas={"p": SCHEMA, "small": DatasetSchema("small", SCHEMA.columns)},
        policies={"p": Policy(dp_epsilon=1000.0), "small": Policy(dp_epsilon=1.0)},
        workdir=workdir,
    ) as c:
        yield c


def test_noise_matches_the_reported_scale(client: fed.Client) -> None:
    sql = "SELECT COUNT(*) AS n, SUM(age) AS s, AVG(bmi) AS m FROM p"
    z2: list[float] = []
    for _ in range(10):
        r = client.query(sql, epsilon=0.5)
        assert r.privacy is not None
        assert r.privacy.mechanism == "distributed discrete Gaussian"
        assert r.privacy.epsilon == 0.5
        assert r.privacy.composition == "zCDP"
        (n, s, m) = r.rows[0]
        assert isinstance(n, int)
        assert isinstance(s, int)
        assert isinstance(m, float)
        z2.append(((n - len(POOLED)) / r.privacy.sigma("n")) ** 2)
        z2.append(((s - int(POOLED["age"].sum())) / r.privacy.sigma("s")) ** 2)
        # noisy SUM / noisy COUNT: to first order the error is (e_sum - mean * e_count) / n
        mean, count = POOLED["bmi"].mean(), POOLED["bmi"].count()
        spread = (r.privacy.sigma("SUM(bmi)") + abs(mean) * r.privacy.sigma("COUNT(bmi)")) / count
        assert abs(m - mean) < 6 * spread
    # sum of 20 squared standard normals: P(< 4) and P(> 60) are both below 1e-5
    assert 4 < sum(z2) < 60


def test_variances_under_dp_are_within_their_noise_and_never_negative(
    client: fed.Client,
) -> None:
    sql = "SELECT VAR_SAMP(age) AS v, STDDEV_POP(bmi) AS s, AVG(age) AS m FROM p"
    r = client.query(sql, epsilon=2.0)
    assert r.privacy is not None
    (v, sd, _) = r.rows[0]
    assert isinstance(v, float)
    assert isinstance(sd, float)
    assert sd >= 0
    # VAR_SAMP = (S2 - S1**2 / n) / (n - 1): to first order its error is
    # (e_S2 - 2 mean e_S1 + (mean**2 - var) e_n) / n, each e of the reported scale.
    age = POOLED["age"]
    n, mean, var = len(age), age.mean(), age.var(ddof=1)
    spread = (
        r.privacy.sigma("SUM(age*age)")
        + 2 * abs(mean) * r.privacy.sigma("SUM(age)")
        + abs(mean**2 - var) * r.privacy.sigma("COUNT(age)")
    ) / n
    assert abs(v - var) < 6 * spread
    bmi = POOLED["bmi"]
    sd_spread = (
        r.privacy.sigma("SUM(bmi*bmi)")
        + 2 * abs(bmi.mean()) * r.privacy.sigma("SUM(bmi)")
        + abs(bmi.mean() ** 2 - bmi.var(ddof=0)) * r.privacy.sigma("COUNT(bmi)")
    ) / len(bmi)
    # d(sqrt(var)) = d(var) / (2 sd)
    assert abs(sd - bmi.std(ddof=0)) < 6 * sd_spread / (2 * bmi.std(ddof=0)) + 1e-9
    labels = {label for label, _ in r.privacy.sigmas}
    assert {"SUM(age*age)", "SUM(bmi*bmi)"} <= labels


def test_group_by_and_homomorphic_with_dp(client: fed.Client) -> None:
    r = client.query("SELECT sex, COUNT(*) AS n FROM p GROUP BY sex", epsilon=1.0)
    rows = {row[0]: row[1] for row in r.rows}
    truth = POOLED["sex"].value_counts()
    assert r.privacy is not None
    for sex in ("F", "M"):
        assert abs(rows[sex] - truth[sex]) < 6 * r.privacy.sigma("n")
    h = client.query("SELECT COUNT(*) AS n FROM p", protocol="paillier", epsilon=1.0)
    assert h.privacy is not None
    assert h.privacy.min_nodes == 3
    assert abs(h.rows[0][0] - len(POOLED)) < 6 * h.privacy.sigma("n")


def test_confidential_columns_need_dp(client: fed.Client) -> None:
    with pytest.raises(PolicyViolationError, match="confidential_requires_dp"):
        client.query("SELECT AVG(income) FROM p")
    r = client.query("SELECT AVG(income) AS m FROM p", epsilon=1.0)
    assert r.privacy is not None
    assert r.rows[0][0] is not None


def test_queries_dp_cannot_answer_are_refused(client: fed.Client) -> None:
    with pytest.raises(UnsupportedQueryError, match="declares no bounds"):
        client.query("SELECT SUM(score) FROM p", epsilon=1.0)
    with pytest.raises(UnsupportedQueryError, match="CORR"):
        client.query("SELECT CORR(age, bmi) FROM p", epsilon=1.0)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ConfigError, match="epsilon"):
            client.query("SELECT COUNT(*) FROM p", epsilon=bad)
    with pytest.raises(ConfigError, match="quantiles"):
        client.query("SELECT MEDIAN(age) FROM p", epsilon=1.0)


def test_budget_is_spent_mirrored_and_enforced(client: fed.Client, workdir: Path) -> None:
    # another analyst: its own certificate from the simulation's CA names whose budget pays
    credentials = LocalPKI(workdir / "pki", insecure=False).path(Role.ANALYST, "budget-test")
    fresh = fed.connect(client.address, credentials=credentials, analyst="someone-else")
    assert fresh.analyst == "budget-test"  # the certificate, not the declaration
    try:
        start = fresh.budget("small")
        assert start.remaining == pytest.approx(1.0)
        assert start.composition == "zCDP"
        fresh.query("SELECT COUNT(*) FROM small", epsilon=0.8)
        after = fresh.budget("small")
        assert after.spent == pytest.approx(0.8)
        assert 0 < after.remaining < 0.6  # zCDP: what is left is not simply 1 - 0.8
        with pytest.raises(DisclosureControlError, match=r"dp_budget.*left"):
            fresh.query("SELECT COUNT(*) FROM small", epsilon=0.8)
        assert fresh.budget("small").spent == pytest.approx(0.8)  # refused: nothing spent
        assert client.budget("small").remaining == pytest.approx(1.0)  # per analyst
    finally:
        fresh.close()


def test_cli_epsilon_and_budget(
    client: fed.Client, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from federation.cli.main import main

    credentials = LocalPKI(workdir / "pki", insecure=False).path(Role.ANALYST, "cli-test")
    args = ["-c", client.address, "--credentials", str(credentials)]
    assert main(["query", "SELECT COUNT(*) AS n FROM small", "-q", "--epsilon", "0.5", *args]) == 0
    captured = capsys.readouterr()
    assert "DP: distributed discrete Gaussian" in captured.err
    assert main(["budget", "small", *args]) == 0
    out = capsys.readouterr().out
    assert "analyst cli-test" in out
    assert "zCDP" in out
