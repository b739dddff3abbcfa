"""End to end: a grouped query over 10 nodes x 10^6 rows through real gRPC,
against DuckDB running the same query on the pooled data, in the same run.

    python benchmarks/e2e_bench.py [--nodes 10] [--rows 1000000] [--groups 10] [--repeat 5]
                                   [--isolation process|thread]
                                   [--protocols secagg,paillier,ckks] [--insecure] [--cpu]

Both sides read the same Parquet files: each node its own, the pooled baseline
all of them. Nodes load theirs once into an in-memory table (an ENUM for each
categorical column) and query that; the pooled query reads the files each time, so
the script also times the pooled rows held the same way and prints that ratio too.
The federation runs as deployed: mutual TLS from its own CA, the actively secure
SecAgg+ (signed keys, consistency round) and the audit witness on every task
(``--insecure``: plaintext and unsigned, for comparison). Every node agent is its
own process (``--isolation process``, as in a deployment) with a one-thread DuckDB;
the pooled query uses DuckDB's default threads. All of it shares this machine's
cores. Prints medians and the ratio federated / pooled (target: under 3x) for each
protocol, side by side: ``secagg`` (SecAgg+ masks), ``paillier`` (2048-bit key) and
``ckks`` (the analyst's keys are made once, before timing, as an analyst's session
would).

``--cpu`` (Linux, process isolation) also prints the CPU time each process spent per
federated query, from ``/proc``: the mean over the node agents, and the coordinator
together with the analyst SDK (this process). On a machine with fewer cores than
processes the query is CPU-bound, and ``(nodes x node CPU + coordinator CPU) / cores``
predicts its wall time; the CPU figures move less with the machine's noise than the
wall times do. Run it with ``--rows 1000`` to see the fixed cost of a job.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

import federation as fed
from federation.cli.synthetic import synthetic_partitions

SQL = "SELECT g, COUNT(*), AVG(x), VAR_SAMP(x) FROM synthetic GROUP BY g"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--isolation", choices=["process", "thread"], default="process")
    parser.add_argument("--protocols", default="secagg,paillier,ckks")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gRPC and unsigned SecAgg+ (default: mutual TLS, the actively "
        "secure variant), to see what identities cost",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="also print each process's CPU time per query (Linux, --isolation process)",
    )
    args = parser.parse_args()
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]

    print(
        f"machine: {os.cpu_count()} cores; {args.nodes} nodes x {args.rows:,} rows, "
        f"{args.groups} groups"
    )
    t0 = time.perf_counter()
    parts = synthetic_partitions(args.nodes, args.rows, args.groups, seed=1)
    print(f"generated data in {time.perf_counter() - t0:.1f} s")

    with (
        tempfile.TemporaryDirectory(prefix="federation-bench-") as tmp,
        fed.simulate(
            {"synthetic": parts},
            workdir=tmp,
            round_timeout=120.0,
            isolation=args.isolation,
            insecure=args.insecure,
        ) as client,
    ):
        files = sorted(str(p) for p in Path(tmp).glob("node-*/synthetic.parquet"))
        pooled_con = duckdb.connect()
        pooled_con.execute(f"CREATE VIEW synthetic AS SELECT * FROM read_parquet({files!r})")
        pooled_sql = SQL + " ORDER BY g"
        # The same pooled rows held as the nodes hold theirs: an in-memory table, the
        # categorical column an ENUM of its labels (nodes/datasets.py).
        labels = ", ".join(f"'{g}'" for g in sorted(set(parts[0]["g"])))
        pooled_con.execute(f"CREATE TYPE label AS ENUM ({labels})")
        pooled_con.execute(
            "CREATE TABLE held AS SELECT CAST(g AS label) AS g, CAST(x AS DOUBLE) AS x "
            "FROM synthetic"
        )
        held_sql = pooled_sql.replace("FROM synthetic", "FROM held")

        def pooled() -> list[tuple[object, ...]]:
            return pooled_con.execute(pooled_sql).fetchall()

        def held() -> list[tuple[object, ...]]:
            return pooled_con.execute(held_sql).fetchall()

        pooled()  # warm: file cache, DuckDB metadata
        held()
        t_pooled, t_held = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            pooled_rows = pooled()
            t_pooled.append(time.perf_counter() - t)
            t_held.append(_timed(held))
        mp = statistics.median(t_pooled)
        print(f"{'pooled DuckDB':<22} median {mp * 1e3:8.1f} ms   (Parquet files)")
        mh = statistics.median(t_held)
        print(f"{'pooled, in memory':<22} median {mh * 1e3:8.1f} ms   (as nodes hold theirs)")
        for protocol in protocols:
            client.query(SQL, protocol=protocol)  # warm: channels, keys, node-side tables
            cpu: dict[int, float] = {}
            t_fed = []
            for _ in range(args.repeat):
                cpu_before = _process_cpu() if args.cpu else {}
                t = time.perf_counter()
                fed_rows = client.query(SQL, protocol=protocol).rows
                t_fed.append(time.perf_counter() - t)
                for pid, seconds in (_process_cpu() if args.cpu else {}).items():
                    if pid in cpu_before:
                        cpu[pid] = cpu.get(pid, 0.0) + seconds - cpu_before[pid]
                t_pooled.append(_timed(pooled))  # interleaved: both see the same machine
                t_held.append(_timed(held))
            mp = statistics.median(t_pooled)
            mh = statistics.median(t_held)
            mf = statistics.median(t_fed)
            worst = _worst_difference(pooled_rows, fed_rows)
            print(
                f"{'federated (' + protocol + ')':<22} median {mf * 1e3:8.1f} ms   "
                f"ratio {mf / mp:5.2f}x (target < 3x)   max rel. diff vs pooled {worst:.1e}"
            )
            print(f"{'':<22} against the pooled rows in memory: {mf / mh:5.2f}x")
            if args.cpu:
                _print_cpu(cpu, args.repeat)


def _process_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of this process and of each of its children (the
    node agents); the kernel counts in clock ticks (10 ms), so average many queries."""
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    out: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        pid, ppid = int(entry.name), int(fields[1])
        if pid == me or ppid == me:
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _print_cpu(spent: dict[int, float], queries: int) -> None:
    """Per query: the node agents' mean CPU, and this process's (coordinator + SDK)."""
    me = os.getpid()
    nodes = [seconds for pid, seconds in spent.items() if pid != me]
    if not nodes:
        print("  (--cpu needs --isolation process on Linux)")
        return
    node = statistics.mean(nodes) / queries
    coordinator = spent.get(me, 0.0) / queries
    cores = os.cpu_count() or 1
    print(
        f"  CPU per query: node {node * 1e3:.1f} ms each ({len(nodes)} nodes), "
        f"coordinator + analyst {coordinator * 1e3:.1f} ms; "
        f"(nodes x node + coordinator) / {cores} cores = "
        f"{(len(nodes) * node + coordinator) / cores * 1e3:.0f} ms"
    )


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _worst_difference(
    pooled: Sequence[tuple[object, ...]], federated: Sequence[tuple[object, ...]]
) -> float:
    worst = 0.0
    for p, f in zip(pooled, federated, strict=True):
        if p[:2] != f[:2]:
            raise SystemExit("group labels and counts disagree with the pooled query")
        for a, b in zip(p[2:], f[2:], strict=True):
            worst = max(worst, abs(float(a) - float(b)) / abs(float(b)))  # type: ignore[arg-type]
    return worst


if __name__ == "__main__":
    main()
