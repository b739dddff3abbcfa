"""Models end to end: ``client.describe`` and a 10-predictor linear regression over
10 nodes x 10^6 rows through real gRPC, against pandas / numpy on the pooled data.

    python benchmarks/models_bench.py [--nodes 10] [--rows 1000000] [--predictors 10]
                                      [--repeat 3] [--isolation process|thread]

Baselines: ``pandas.DataFrame.describe`` (count, mean, std, min, quartiles, max: it
computes more than we release); for OLS ``statsmodels.OLS(y, X).fit()`` with the
standard errors, t statistics and R^2 our result reports (the issue's baseline; a
benchmark-only install: ``pip install statsmodels``, skipped when absent) and, as a
floor, ``numpy.linalg.lstsq`` (coefficients only) on the pooled design with an
intercept column. All are timed from the in-memory pooled frame (the data already
loaded, which favours the baselines). Each
node agent is its own process by default with a one-thread DuckDB; all share this
machine's cores. Prints medians and the ratio federated / pooled (target: under 3x),
and the largest relative difference of the coefficients from the pooled lstsq.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

import federation as fed


def _partitions(nodes: int, rows: int, predictors: int) -> list[pd.DataFrame]:
    gen = np.random.default_rng(1)
    beta = np.arange(1, predictors + 1, dtype=float)
    parts = []
    for _ in range(nodes):
        cols = {f"x{j}": gen.normal(50.0, 10.0, rows) for j in range(predictors)}
        x = np.column_stack(list(cols.values()))
        frame = pd.DataFrame(cols)
        frame["y"] = 3.0 + x @ beta + gen.normal(0.0, 1.0, rows)
        parts.append(frame)
    return parts


def _median_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--predictors", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--isolation", choices=["process", "thread"], default="process")
    args = parser.parse_args()
    names = [f"x{j}" for j in range(args.predictors)]
    print(
        f"machine: {os.cpu_count()} cores; {args.nodes} nodes x {args.rows:,} rows, "
        f"{args.predictors} predictors"
    )
    t0 = time.perf_counter()
    parts = _partitions(args.nodes, args.rows, args.predictors)
    pooled = pd.concat(parts, ignore_index=True)
    print(f"generated data in {time.perf_counter() - t0:.1f} s")

    def pooled_fit() -> np.ndarray:
        design = np.column_stack([np.ones(len(pooled)), pooled[names].to_numpy()])
        return np.linalg.lstsq(design, pooled["y"].to_numpy(), rcond=None)[0]

    with (
        tempfile.TemporaryDirectory(prefix="federation-bench-") as tmp,
        fed.simulate(
            {"m": parts}, workdir=tmp, round_timeout=300.0, isolation=args.isolation
        ) as client,
    ):
        client.query("SELECT COUNT(*) FROM m")  # warm: channels, node-side tables
        t_desc_pooled, _ = _median_time(pooled.describe, args.repeat)
        t_desc, desc = _median_time(lambda: client.describe("m"), args.repeat)
        print(
            f"{'describe: pandas':<26} median {t_desc_pooled * 1e3:9.1f} ms\n"
            f"{'describe: federated':<26} median {t_desc * 1e3:9.1f} ms   "
            f"ratio {t_desc / t_desc_pooled:5.2f}x (target < 3x)   "
            f"{desc.jobs} jobs"  # type: ignore[attr-defined]
        )
        t_fit_pooled, beta = _median_time(pooled_fit, args.repeat)
        t_fit, fit = _median_time(
            lambda: client.linear_regression("m", y="y", x=names), args.repeat
        )
        coefs = fit.coefficients.to_numpy()  # type: ignore[attr-defined]
        worst = float(np.max(np.abs(coefs - beta) / np.abs(beta)))  # type: ignore[operator]
        print(
            f"{'OLS: numpy lstsq':<26} median {t_fit_pooled * 1e3:9.1f} ms\n"
            f"{'OLS: federated':<26} median {t_fit * 1e3:9.1f} ms   "
            f"ratio {t_fit / t_fit_pooled:5.2f}x vs lstsq   "
            f"max rel. diff vs lstsq {worst:.1e}"
        )
        statsmodels_fit = _statsmodels_fit(pooled, names)
        if statsmodels_fit is None:
            print("OLS: statsmodels not installed (pip install statsmodels): skipped")
        else:
            t_sm, _ = _median_time(statsmodels_fit, args.repeat)
            print(
                f"{'OLS: statsmodels':<26} median {t_sm * 1e3:9.1f} ms   "
                f"federated / statsmodels {t_fit / t_sm:5.2f}x (target < 3x)"
            )


def _statsmodels_fit(pooled: pd.DataFrame, names: list[str]) -> Callable[[], object] | None:
    """statsmodels' OLS fit with what our result reports (None when not installed)."""
    try:
        import statsmodels.api as sm  # type: ignore[import-untyped]
    except ImportError:
        return None

    def fit() -> object:
        design = sm.add_constant(pooled[names].to_numpy())
        result = sm.OLS(pooled["y"].to_numpy(), design).fit()
        return (result.params, result.bse, result.tvalues, result.rsquared, result.nobs)

    return fit


if __name__ == "__main__":
    main()
