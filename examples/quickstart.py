"""Quickstart: simulate a federation of five hospitals on one machine.

    python examples/quickstart.py

Each hospital's rows go to its own node agent; the analyst's client talks to the
coordinator over real gRPC; node 3 crashes mid-protocol and the answer says so.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import federation as fed

DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    frames = [pd.read_csv(p) for p in sorted(DATA.glob("hospital_*.csv"))]
    # Split the three files into five partitions, as if there were five hospitals.
    pooled = pd.concat(frames, ignore_index=True)
    partitions = [pooled.iloc[i::5].reset_index(drop=True) for i in range(5)]

    with fed.simulate({"patients": partitions}, dropout={3: "after_keys"}) as client:
        print(f"coordinator at {client.address}")
        for info in client.datasets():
            print(f"dataset {info.schema.name}: {info.online_node_count} nodes")
        result = client.query(
            "SELECT smoker, COUNT(*) AS n, AVG(systolic_bp) AS mean_bp, "
            "STDDEV_SAMP(systolic_bp) AS sd_bp FROM patients GROUP BY smoker"
        )
        print(result)
        print(f"covered {result.node_count} of {result.selected_nodes} nodes (node 3 crashed)")
        print(result.to_pandas())


if __name__ == "__main__":
    main()
