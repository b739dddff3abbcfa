"""Batched Shamir recovery: same results and same refusals as combine_shares, set by set."""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest

from federation.crypto.shamir import (
    MAX_X,
    PRIME,
    combine_shares,
    lagrange_weights,
    split_secret,
)
from federation.crypto.shamir_batch import ShareSetError, combine_batch


def _batch(
    count: int, threshold: int, points: Sequence[int], rng: random.Random
) -> tuple[list[bytes], list[list[bytes]]]:
    chosen = sorted(rng.sample(list(points), threshold))
    values = [rng.randbytes(32) for _ in range(count)]
    shares = [split_secret(v, threshold, points) for v in values]
    return values, [[by_point[x] for x in chosen] for by_point in shares]


@pytest.mark.parametrize(("count", "threshold"), [(8, 2), (20, 7), (100, 15), (9, 22)])
def test_same_points_are_recovered_together(count: int, threshold: int) -> None:
    rng = random.Random(count * threshold)
    values, sets = _batch(count, threshold, range(1, threshold + 1), rng)
    assert combine_batch(sets, threshold) == values
    assert combine_batch([tuple(s) for s in sets], threshold) == values


@pytest.mark.parametrize("points", [range(1, 40, 3), [5, 9, 2**31, MAX_X - 1, MAX_X, 17, 3]])
def test_points_needing_a_field_scale(points: Sequence[int]) -> None:
    rng = random.Random(7)
    values, sets = _batch(12, 5, points, rng)
    assert combine_batch(sets, 5) == values


def test_mixed_shapes_and_point_sets() -> None:
    rng = random.Random(3)
    t, points = 4, range(1, 9)
    values: list[bytes] = []
    sets: list[Any] = []
    for i in range(60):
        value = rng.randbytes(32)
        shares = split_secret(value, t, points)
        kind = i % 5
        if kind == 0:  # the first t points: one big group
            chosen = [shares[x] for x in range(1, t + 1)]
        elif kind == 1:  # other sorted subsets: small groups
            chosen = [shares[x] for x in sorted(rng.sample(list(points), t))]
        elif kind == 2:  # unsorted
            chosen = [shares[x] for x in rng.sample(list(points), t)]
        elif kind == 3:  # more than t shares
            chosen = list(shares.values())
        else:  # a mapping
            chosen = shares
        values.append(value)
        sets.append(chosen)
    assert combine_batch(sets, t) == values


def test_empty_and_small_batches() -> None:
    assert combine_batch([], 3) == []
    values, sets = _batch(3, 3, range(1, 6), random.Random(1))
    assert combine_batch(sets, 3) == values


def _corrupt(kind: str, share: bytes) -> Any:
    x = share[:4]
    return {
        "random": x + secrets.randbelow(PRIME).to_bytes(66, "big"),
        "prime": x + PRIME.to_bytes(66, "big"),
        "above": x + (2**528 - 1).to_bytes(66, "big"),
        "short": share[:-1],
        "long": share + b"\x00",
        "str": "x" * 70,
        "none": None,
        "bytearray": bytearray(share),
        "other point": (int.from_bytes(x, "big") + 1).to_bytes(4, "big") + share[4:],
        "zero point": bytes(4) + share[4:],
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "random",
        "prime",
        "above",
        "short",
        "long",
        "str",
        "none",
        "bytearray",
        "other point",
        "zero point",
    ],
)
@pytest.mark.parametrize("where", [0, 13, 39])
def test_a_bad_set_is_named_with_the_single_set_error(kind: str, where: int) -> None:
    rng = random.Random(where)
    t = 6
    _, sets = _batch(40, t, range(1, 9), rng)
    bad = list(sets[where])
    bad[2] = _corrupt(kind, bad[2])
    sets[where] = bad
    with pytest.raises((TypeError, ValueError)) as single:
        combine_shares(bad, t)
    with pytest.raises(ShareSetError) as batch:
        combine_batch(sets, t)
    assert batch.value.index == where
    assert str(single.value) in str(batch.value)
    assert type(batch.value.__cause__) is type(single.value)


def test_the_first_bad_set_is_named() -> None:
    _, sets = _batch(30, 3, range(1, 5), random.Random(5))
    for where in (21, 4):
        sets[where] = [sets[where][0], sets[where][0], sets[where][2]]  # duplicate point
    with pytest.raises(ShareSetError, match="distinct") as raised:
        combine_batch(sets, 3)
    assert raised.value.index == 4


def test_threshold_is_checked() -> None:
    with pytest.raises(TypeError):
        combine_batch([], "3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        combine_batch([], 1)


@pytest.mark.parametrize(
    "xs", [(1, 2, 3), (1, 2, 3, 4, 5, 6, 7), (2, 5, 6, 11), (1, 3, 2**32 - 1), (7, 8)]
)
def test_lagrange_weights_are_the_coefficients_at_zero(xs: tuple[int, ...]) -> None:
    weights, scale = lagrange_weights(xs)
    for i, xi in enumerate(xs):
        exact = Fraction(1)
        for xj in xs:
            if xj != xi:
                exact *= Fraction(xj, xj - xi)
        expected = exact.numerator * pow(exact.denominator, -1, PRIME) % PRIME
        assert weights[i] * scale % PRIME == expected
    if xs == tuple(range(1, len(xs) + 1)):
        assert scale == 1  # integer coefficients, no field multiplication
