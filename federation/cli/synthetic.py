"""Synthetic partitions for ``federation simulate`` and the benchmarks.

This is test data, not protocol randomness: a seeded statistical generator is
the right tool here (reproducible runs), and nothing secret depends on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["synthetic_partitions"]


def synthetic_partitions(nodes: int, rows: int, groups: int, seed: int) -> list[pd.DataFrame]:
    """``nodes`` frames of ``rows`` rows: a categorical ``g``, a double ``x``, an integer ``y``.

    Each node has its own mean shift, so partitions are not identically distributed.
    """
    import numpy as np
    import pandas as pd

    gen = np.random.default_rng(seed)
    labels = np.array([f"g{i}" for i in range(groups)], dtype=object)
    frames = []
    for _ in range(nodes):
        shift = gen.normal(0.0, 5.0)
        frames.append(
            pd.DataFrame(
                {
                    "g": labels[gen.integers(0, groups, rows)],
                    "x": gen.normal(50.0 + shift, 10.0, rows),
                    "y": gen.integers(0, 1000, rows, dtype=np.int64),
                }
            )
        )
    return frames
