"""The command line and the examples, run as a user would run them."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import federation as fed
from federation.cli.demo import DEMO_QUERIES, HOMOMORPHIC
from federation.pki import Role
from federation.simulation import LocalPKI

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONWARNINGS="error")
    return subprocess.run(
        [sys.executable, "-m", "federation.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[fed.Client, pd.DataFrame]]:
    parts = [pd.read_csv(p) for p in sorted((ROOT / "examples" / "data").glob("*.csv"))]
    workdir = tmp_path_factory.mktemp("cli")
    with (
        fed.simulate({"patients": parts}, workdir=workdir) as client,
        pytest.MonkeyPatch.context() as env,
    ):
        # the CLI below is this analyst: mutual TLS with the simulation's credentials
        credentials = LocalPKI(workdir / "pki", insecure=False).path(Role.ANALYST, "cli")
        env.setenv("FEDERATION_CREDENTIALS", str(credentials))
        yield client, pd.concat(parts, ignore_index=True)


def test_cli_query_formats(sim: tuple[fed.Client, pd.DataFrame]) -> None:
    client, pooled = sim
    sql = "SELECT sex, COUNT(*) AS n, AVG(age) AS mean_age FROM patients GROUP BY sex"
    out = _run("query", sql, "-c", client.address, "--format", "csv", "-q")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    expected = pooled.groupby("sex").age.agg(["count", "mean"])
    assert [r["sex"] for r in rows] == list(expected.index)
    for r in rows:
        assert int(r["n"]) == expected.loc[r["sex"], "count"]
        assert float(r["mean_age"]) == pytest.approx(expected.loc[r["sex"], "mean"], rel=1e-12)

    js = _run("query", sql, "-c", client.address, "--format", "json", "-q")
    assert js.returncode == 0, js.stderr
    doc = json.loads(js.stdout)
    assert doc["columns"] == ["sex", "n", "mean_age"]
    assert doc["nodes"] == 3

    table = _run("query", sql, "-c", client.address)
    assert table.returncode == 0
    assert "mean_age" in table.stdout
    assert "advertise keys: 3/3" in table.stderr


def test_cli_directory_and_job(sim: tuple[fed.Client, pd.DataFrame]) -> None:
    client, _ = sim
    ds = _run("datasets", "-c", client.address)
    assert ds.returncode == 0
    assert "patients" in ds.stdout
    assert "3 of 3" in ds.stdout
    nodes = _run("nodes", "-c", client.address)
    assert nodes.returncode == 0
    assert nodes.stdout.count("online") == 3
    job_id = client.query("SELECT COUNT(*) FROM patients").job_id
    job = _run("job", job_id, "-c", client.address, "--format", "csv")
    assert job.returncode == 0
    assert "succeeded" in job.stderr


def test_cli_errors_exit_1_with_the_code(sim: tuple[fed.Client, pd.DataFrame]) -> None:
    client, _ = sim
    bad = _run("query", "SELECT * FROM patients", "-c", client.address)
    assert bad.returncode == 1
    assert "error [non_aggregate_query]" in bad.stderr
    down = _run("datasets", "-c", "127.0.0.1:9")
    assert down.returncode == 1
    assert "error [unavailable]" in down.stderr


def test_cli_simulate_with_dropout() -> None:
    out = _run("simulate", "--nodes", "4", "--rows", "2000", "--dropout", "0.25")
    assert out.returncode == 0, out.stderr
    assert "covered 3 of 4 node(s)" in out.stdout


def test_demo_runs_and_checks_itself() -> None:
    out = _run("demo")
    assert out.returncode == 0, out.stderr
    checked = len(DEMO_QUERIES) + len(HOMOMORPHIC)
    assert out.stdout.count("matches DuckDB on the pooled CSVs") == checked
    assert "DIFFERS" not in out.stdout
    assert "MISMATCH" not in out.stdout
    for protocol, _ in HOMOMORPHIC:
        assert f"[protocol={protocol}]" in out.stdout
    assert "refused [non_aggregate_query]" in out.stdout


def test_quickstart_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "covered 4 of 5 nodes" in out.stdout
