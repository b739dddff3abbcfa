"""Independent reference computations on pooled data, in exact rational arithmetic.

Used by tests only: the federated answer must equal what these compute from the
pooled rows. Nothing here shares code with the library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction


def _vals(values: Iterable[object]) -> list[Fraction]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out.append(Fraction(v))  # type: ignore[arg-type]
    return out


def exact_sum(values: Iterable[object]) -> Fraction | None:
    xs = _vals(values)
    return sum(xs, Fraction(0)) if xs else None


def exact_mean(values: Iterable[object]) -> Fraction | None:
    xs = _vals(values)
    return sum(xs, Fraction(0)) / len(xs) if xs else None


def exact_var(values: Iterable[object], ddof: int) -> Fraction | None:
    xs = _vals(values)
    if len(xs) <= ddof:
        return None
    mean = sum(xs, Fraction(0)) / len(xs)
    return sum(((x - mean) ** 2 for x in xs), Fraction(0)) / (len(xs) - ddof)


def close(
    actual: object, expected: Fraction | None, *, rel: float = 1e-12, abs_: float = 0.0
) -> bool:
    """True if ``actual`` agrees with the exact value to ``rel`` (or both are NULL)."""
    if expected is None:
        return actual is None
    if actual is None:
        return False
    err = abs(Fraction(actual) - expected)  # type: ignore[arg-type]
    return err <= Fraction(rel) * abs(expected) + Fraction(abs_)
