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


def _pairs(ys: Iterable[object], xs: Iterable[object]) -> list[tuple[Fraction, Fraction]]:
    out = []
    for y, x in zip(ys, xs, strict=True):
        if y is None or x is None:
            continue
        out.append((Fraction(y), Fraction(x)))  # type: ignore[arg-type]
    return out


def exact_bivariate(func: str, ys: Iterable[object], xs: Iterable[object]) -> Fraction | None:
    """``func(y, x)`` over the pairs where both are non-NULL, from centred sums.

    For CORR the result is the *signed square* ``sign(r)·r²`` (r itself is irrational);
    the other functions give their exact value. NULL follows PostgreSQL.
    """
    pairs = _pairs(ys, xs)
    n = len(pairs)
    if n == 0:
        return None
    my = sum((y for y, _ in pairs), Fraction(0)) / n
    mx = sum((x for _, x in pairs), Fraction(0)) / n
    sxy = sum(((x - mx) * (y - my) for y, x in pairs), Fraction(0))
    sxx = sum(((x - mx) ** 2 for _, x in pairs), Fraction(0))
    syy = sum(((y - my) ** 2 for y, _ in pairs), Fraction(0))
    if func == "COVAR_POP":
        return sxy / n
    if func == "COVAR_SAMP":
        return sxy / (n - 1) if n >= 2 else None
    if func in ("REGR_SLOPE", "REGR_INTERCEPT", "REGR_R2") and sxx == 0:
        return None
    if func == "REGR_SLOPE":
        return sxy / sxx
    if func == "REGR_INTERCEPT":
        return my - sxy / sxx * mx
    if func == "REGR_R2":
        return Fraction(1) if syy == 0 else sxy * sxy / (sxx * syy)
    if func == "CORR":
        if sxx == 0 or syy == 0:
            return None
        r2 = sxy * sxy / (sxx * syy)
        return r2 if sxy >= 0 else -r2
    raise ValueError(func)


def signed_sqrt(value: Fraction) -> float:
    """``sign(v)·sqrt(|v|)`` rounded to a float via 60-digit decimal arithmetic."""
    from decimal import Context

    ctx = Context(prec=60)
    root = ctx.sqrt(ctx.divide(abs(value.numerator), value.denominator))
    return float(root) if value >= 0 else -float(root)
