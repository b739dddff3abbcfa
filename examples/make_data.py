"""Regenerate the example hospital data in examples/data/ (deterministic).

    python examples/make_data.py

Synthetic patients: no real person is described. Each hospital has its own
case mix (age, smoking, blood pressure), so the partitions differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HOSPITALS = {
    "hospital_a": {
        "rows": 240,
        "age": (58, 14),
        "smoke": 0.22,
        "bp_shift": 0.0,
        "region_p": (0.6, 0.2, 0.1, 0.1),
    },
    "hospital_b": {
        "rows": 310,
        "age": (49, 16),
        "smoke": 0.31,
        "bp_shift": 4.0,
        "region_p": (0.1, 0.5, 0.3, 0.1),
    },
    "hospital_c": {
        "rows": 180,
        "age": (63, 11),
        "smoke": 0.15,
        "bp_shift": -3.0,
        "region_p": (0.1, 0.1, 0.2, 0.6),
    },
}
REGIONS = ["north", "south", "east", "west"]


def make(
    name: str,
    *,
    rows: int,
    age: tuple[float, float],
    smoke: float,
    bp_shift: float,
    region_p: tuple[float, ...],
    gen: np.random.Generator,
) -> pd.DataFrame:
    ages = np.clip(gen.normal(age[0], age[1], rows).round(), 18, 95).astype(int)
    sex = gen.choice(["F", "M"], rows)
    smoker = np.where(gen.random(rows) < smoke, "yes", "no")
    bmi = np.clip(gen.normal(26.5, 4.5, rows), 14, 55).round(1)
    bp = (
        100
        + 0.5 * ages
        + 6 * (smoker == "yes")
        + 0.8 * (bmi - 25)
        + bp_shift
        + gen.normal(0, 11, rows)
    ).round(1)
    chol = (4.2 + 0.02 * ages + gen.normal(0, 0.8, rows)).round(2)
    chol_missing = gen.random(rows) < 0.08  # not every patient had a lipid panel
    return pd.DataFrame(
        {
            "patient_id": [f"{name[-1].upper()}{i:05d}" for i in range(rows)],
            "age": ages,
            "sex": sex,
            "region": gen.choice(REGIONS, rows, p=region_p),
            "smoker": smoker,
            "bmi": bmi,
            "systolic_bp": bp,
            "cholesterol": np.where(chol_missing, np.nan, chol),
        }
    )


def main() -> None:
    out = Path(__file__).resolve().parent / "data"
    out.mkdir(exist_ok=True)
    gen = np.random.default_rng(20261125)
    for name, spec in HOSPITALS.items():
        make(name, gen=gen, **spec).to_csv(out / f"{name}.csv", index=False)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
