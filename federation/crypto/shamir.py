"""Shamir secret sharing of 32-byte secrets over the field GF(2**521 - 1).

A secret ``s`` (32 bytes, read big-endian as an integer below 2**256) is the
constant term of a random polynomial ``f`` of degree ``threshold - 1`` over the
prime field of the Mersenne prime ``p = 2**521 - 1``; the share at ``x`` is
``f(x)``. Any ``threshold`` shares determine ``s`` (Lagrange interpolation at 0);
fewer reveal nothing about it. Coefficients come from :mod:`secrets`.

A share is ``SHARE_SIZE`` = 70 bytes: ``u32(x) || u528(f(x))`` (big-endian,
``x`` in ``[1, MAX_X]``). :func:`combine_shares` rejects a result that is not
below 2**256, which catches a randomly corrupted share except with probability
about 2**-265 (not a deliberately small change: authenticate what you recover,
as the SecAgg+ coordinator does for masking keys).

Reconstruction is ``s = scale * sum(w_i * y_i) mod p`` with, for each set of
evaluation points, small integer weights ``w_i`` (the Lagrange coefficients at 0
over a common denominator ``L``) and ``scale = L**-1 mod p``: computed once per
set of points and cached (only public points enter the cache), so all secrets
recovered from the same holders share one modular inversion (with gmpy2, as is the
one 521 x 521-bit product by ``scale`` per secret). For the points ``1 .. t``, the
SecAgg+ case without dropouts, ``L = 1`` and no field multiplication is needed.
:mod:`federation.crypto.shamir_batch` recovers many secrets at once.

>>> shares = split_secret(bytes(range(32)), threshold=2, xs=[1, 2, 3])
>>> combine_shares([shares[3], shares[1]], threshold=2) == bytes(range(32))
True
"""

from __future__ import annotations

import math
import operator
import secrets
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import cast

import gmpy2

__all__ = [
    "MAX_THRESHOLD",
    "MAX_X",
    "PRIME",
    "SECRET_SIZE",
    "SHARE_SIZE",
    "check_threshold",
    "combine_shares",
    "encode_points",
    "is_share_at",
    "lagrange_weights",
    "share_x",
    "shares_at",
    "split_secret",
]

PRIME = 2**521 - 1
"""The field modulus, a Mersenne prime larger than 2**256."""
SECRET_SIZE = 32
_X_SIZE = 4
_Y_SIZE = 66
SHARE_SIZE = _X_SIZE + _Y_SIZE
_Y_BOUND = 1 << (8 * _Y_SIZE)
MAX_X = 2**32 - 1
MAX_THRESHOLD = 1 << 16
"""Largest supported threshold (and number of shares per call)."""


def check_threshold(threshold: int) -> None:
    """Raise unless ``threshold`` is an int in ``[2, MAX_THRESHOLD]`` (TypeError / ValueError)."""
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise TypeError(f"threshold must be an int, got {type(threshold).__name__}")
    if not 2 <= threshold <= MAX_THRESHOLD:
        raise ValueError(
            f"threshold must lie in [2, {MAX_THRESHOLD}], got {threshold} "
            "(a threshold of 1 would make every share equal to the secret)"
        )


def _check_xs(xs: Iterable[int], *, distinct: bool = True) -> tuple[int, ...]:
    points = tuple(xs)
    for x in points:
        if not isinstance(x, int) or isinstance(x, bool):
            raise TypeError(f"evaluation points must be int, got {type(x).__name__}")
        if not 1 <= x <= MAX_X:
            raise ValueError(f"evaluation points must lie in [1, {MAX_X}], got {x}")
    if distinct and len(set(points)) != len(points):
        raise ValueError("evaluation points must be distinct")
    return points


def _encode(x: int, y: int) -> bytes:
    return x.to_bytes(_X_SIZE, "big") + y.to_bytes(_Y_SIZE, "big")


def _shares_from_polynomial(coefficients: Sequence[int], xs: Sequence[int]) -> dict[int, bytes]:
    """Evaluate ``sum(c[i] * x**i)`` mod p at each x (Horner); no validation, no randomness.

    The points are below 2**32, so Horner's rule runs on exact integers (growing by at
    most 32 bits a step) and reduces modulo p once per point.
    """
    shares: dict[int, bytes] = {}
    top = coefficients[::-1]
    for x in xs:
        y = 0
        for c in top:
            y = y * x + c
        shares[x] = _encode(x, y % PRIME)
    return shares


def split_secret(secret: bytes, threshold: int, xs: Iterable[int]) -> dict[int, bytes]:
    """Share ``secret`` so that any ``threshold`` of the shares recover it.

    Args:
        secret: Exactly 32 bytes.
        threshold: Number of shares needed to recover the secret, at least 2.
        xs: Distinct evaluation points in ``[1, MAX_X]``, at least ``threshold`` of them
            (one per share holder).

    Returns:
        The share for each evaluation point, ``SHARE_SIZE`` bytes each.

    Raises:
        TypeError: On wrongly typed arguments.
        ValueError: On a secret of the wrong length, a bad threshold or bad points.
    """
    if not isinstance(secret, bytes):
        raise TypeError(f"secret must be bytes, got {type(secret).__name__}")
    if len(secret) != SECRET_SIZE:
        raise ValueError(f"secret must have {SECRET_SIZE} bytes, got {len(secret)}")
    check_threshold(threshold)
    points = _check_xs(xs)
    if len(points) > MAX_THRESHOLD:
        raise ValueError(f"at most {MAX_THRESHOLD} shares per secret, got {len(points)}")
    if len(points) < threshold:
        raise ValueError(
            f"need at least threshold={threshold} evaluation points, got {len(points)}"
        )
    coefficients = [int.from_bytes(secret, "big"), *_random_field_elements(threshold - 1)]
    return _shares_from_polynomial(coefficients, points)


def _random_field_elements(count: int) -> list[int]:
    """``count`` uniform elements of GF(p) from one :mod:`secrets` call.

    Each is 521 random bits (the top 7 bits of its 66 bytes dropped), redrawn in the
    event, of probability 2**-521, that it equals p: the distribution of
    ``secrets.randbelow(PRIME)``, without a system call per coefficient.
    """
    data = secrets.token_bytes(_Y_SIZE * count)
    elements = [
        int.from_bytes(data[i : i + _Y_SIZE], "big") >> 7 for i in range(0, len(data), _Y_SIZE)
    ]
    return [e if e < PRIME else secrets.randbelow(PRIME) for e in elements]


def _decode(share: bytes) -> tuple[int, int]:
    if not isinstance(share, bytes):
        raise TypeError(f"share must be bytes, got {type(share).__name__}")
    if len(share) != SHARE_SIZE:
        raise ValueError(f"share must have {SHARE_SIZE} bytes, got {len(share)}")
    x = int.from_bytes(share[:_X_SIZE], "big")
    y = int.from_bytes(share[_X_SIZE:], "big")
    if x == 0:
        raise ValueError("share has evaluation point 0")
    if y >= PRIME:
        raise ValueError("share value is not a field element")
    return x, y


_PRIME_BYTES = PRIME.to_bytes(_Y_SIZE, "big")


def is_share_at(share: object, x: int) -> bool:
    """Whether ``share`` is a well-formed share at evaluation point ``x`` (fast, no decoding).

    >>> is_share_at(split_secret(bytes(32), 2, [5, 6])[5], 5)
    True
    """
    return (
        type(share) is bytes
        and len(share) == SHARE_SIZE
        and share[:_X_SIZE] == x.to_bytes(_X_SIZE, "big")
        and share[_X_SIZE] <= 1  # below 2**521 ...
        and share[_X_SIZE:] != _PRIME_BYTES  # ... and not p itself
        and x != 0
    )


def shares_at(shares: Sequence[object], points: bytes) -> bool:
    """Whether every share is well formed and at its expected point (batched :func:`is_share_at`).

    Args:
        shares: The shares to check.
        points: Their expected evaluation points, from :func:`encode_points` (same order).
    """
    if len(points) != _X_SIZE * len(shares):
        return False
    if not shares:
        return True
    if set(map(type, shares)) != {bytes}:
        return False
    checked = cast("Sequence[bytes]", shares)  # all bytes, checked above
    if set(map(len, checked)) != {SHARE_SIZE}:
        return False
    blob = b"".join(checked)
    # Byte j of every share's point, against byte j of every expected point; and every
    # top byte of y in {0, 1} (y < 2**521).
    if any(blob[j::SHARE_SIZE] != points[j::_X_SIZE] for j in range(_X_SIZE)) or blob[
        _X_SIZE::SHARE_SIZE
    ].translate(None, b"\x00\x01"):
        return False
    # Exclude y = p = 2**521 - 1 (0x01, then 65 bytes 0xff); the substring test finds
    # every candidate (and rarely a straddling false one, which the exact check clears).
    return _PRIME_BYTES not in blob or all(
        blob[i + _X_SIZE : i + SHARE_SIZE] != _PRIME_BYTES for i in range(0, len(blob), SHARE_SIZE)
    )


def encode_points(xs: Sequence[int]) -> bytes:
    """Encode evaluation points for :func:`shares_at`.

    Raises:
        TypeError: If a point is not an int.
        ValueError: If a point lies outside ``[1, MAX_X]``.
    """
    return b"".join(x.to_bytes(_X_SIZE, "big") for x in _check_xs(xs, distinct=False))


def share_x(share: bytes) -> int:
    """Return the evaluation point of a share (validating its format).

    Raises:
        TypeError: If ``share`` is not bytes.
        ValueError: If it is malformed.
    """
    return _decode(share)[0]


@lru_cache(maxsize=4096)
def lagrange_weights(xs: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """Return weights ``w_i`` and ``scale`` with ``l_i(0) = scale * w_i mod p``.

    ``l_i(0) = prod_{j != i} x_j / (x_j - x_i)``: numerators and denominators are exact
    products of small integers. Over their least common denominator ``L`` the
    weights are integers and ``scale = L**-1 mod p`` (one inversion for the whole
    set; ``L`` has only prime factors below 2**32, so it is invertible). For the
    points ``1 .. t`` every ``l_i(0)`` is an integer (``(-1)**(i-1) C(t, i)``) and
    ``scale`` is 1. Weights wider than the field are reduced into it (then scale is
    1), which keeps each product in :func:`combine_shares` at most 521 x 521 bits.
    Only public values (evaluation points) enter the cache.
    """
    everything = math.prod(xs)
    fractions = []
    for xi in xs:
        numerator = everything // xi
        denominator = math.prod([xj - xi for xj in xs if xj != xi])
        divisor = math.gcd(numerator, denominator) * (-1 if denominator < 0 else 1)
        fractions.append((numerator // divisor, denominator // divisor))
    common = math.lcm(*(denominator for _, denominator in fractions))
    weights = tuple(numerator * (common // denominator) for numerator, denominator in fractions)
    if common == 1:
        return weights, 1
    scale = int(gmpy2.invert(common, _PRIME_MPZ))
    if max(abs(w) for w in weights).bit_length() > 521:
        return tuple(w * scale % PRIME for w in weights), 1
    return weights, scale


_PRIME_MPZ = gmpy2.mpz(PRIME)
_Y_MASK = _Y_BOUND - 1
_Y_BITS = 8 * _Y_SIZE


def combine_shares(shares: Sequence[bytes] | Mapping[int, bytes], threshold: int) -> bytes:
    """Recover a secret from at least ``threshold`` shares.

    Exactly ``threshold`` shares are used (those with the smallest evaluation points).

    Args:
        shares: The shares (a sequence, or a mapping whose values are the shares).
        threshold: The threshold the secret was shared with.

    Returns:
        The 32-byte secret.

    Raises:
        TypeError: On wrongly typed arguments.
        ValueError: On malformed or duplicate shares, too few shares, or shares that
            do not interpolate to a 32-byte secret (inconsistent or tampered).
    """
    check_threshold(threshold)
    if type(shares) is list or type(shares) is tuple:
        values: Sequence[bytes] = shares
    elif isinstance(shares, Mapping):
        values = list(shares.values())
    else:
        values = list(shares)
    if len(values) < threshold:
        raise ValueError(f"need at least {threshold} shares, got {len(values)}")
    if set(map(type, values)) != {bytes} or set(map(len, values)) != {SHARE_SIZE}:
        for share in values:
            _decode(share)  # raises the precise TypeError / ValueError
    # One integer per share: x in the top 32 bits, y in the low 528; sorted by x.
    points = sorted([int.from_bytes(share, "big") for share in values])
    xs = [point >> _Y_BITS for point in points]
    if any(map(operator.eq, xs, xs[1:])):
        raise ValueError("shares must have distinct evaluation points")
    ys = [point & _Y_MASK for point in points[:threshold]]
    if xs[0] == 0 or max(ys) >= PRIME:
        for share in values:
            _decode(share)  # raises the precise ValueError
    weights, scale = lagrange_weights(tuple(xs[:threshold]))
    total: int = sum(map(operator.mul, ys, weights))
    if scale != 1:
        total = int(gmpy2.mpz(total) * scale % _PRIME_MPZ)
    secret = total % PRIME
    if secret >= 1 << (8 * SECRET_SIZE):
        raise ValueError("shares are inconsistent: they do not interpolate to a 32-byte secret")
    return secret.to_bytes(SECRET_SIZE, "big")
