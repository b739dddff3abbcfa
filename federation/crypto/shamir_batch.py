"""Recovering many Shamir secrets at once (the SecAgg+ coordinator recovers one per survivor).

:func:`combine_batch` returns what ``[combine_shares(s, t) for s in share_sets]``
returns, faster. Sets of exactly ``t`` well-formed shares at the same strictly
increasing points ``x_1 < ... < x_t`` form a group (without dropouts, SecAgg+ recovers
every seed from the shares at points ``1 .. t``) and are interpolated together. With
the group's weights ``w_i`` and ``scale`` (cached per set of points, see
:mod:`federation.crypto.shamir`), secret ``s`` is ``scale * a_s mod p`` with
``a_s = sum_i w_i * y_{s,i}``, and all the ``a_s`` are read off one integer::

    T = sum_i w_i * C_i,    C_i = sum_s v_{s,i} * 2**(R * (m - 1 - s))

``C_i`` is the ``i``-th share of each of the ``m`` secrets, ``v = x_i * 2**528 + y``
read as one integer per share, laid out in ``R``-bit records (the shares joined with
zero padding, so one ``int.from_bytes`` per holder). Record ``s`` of ``T`` is
``a_s + 2**528 * sum_i w_i * x_i``: the second term is the same for every record and
is removed with the bias of ``2**(R - 1)`` per record that keeps signed sums
non-negative; ``R`` leaves room for both, so records never carry into each other.
That is ``t`` multiply-adds on integers linear in ``m`` instead of ``t`` per secret.

The points and the range of every ``y`` are checked on the joined columns with
strided byte comparisons. Anything else (other shapes, mixed points, a bad share, an
inconsistent secret) goes through :func:`combine_shares` set by set, which also
produces the precise error. Only public values (the points) decide the path taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, pairwise

import gmpy2

from federation.crypto.shamir import (
    PRIME,
    SECRET_SIZE,
    SHARE_SIZE,
    check_threshold,
    combine_shares,
    lagrange_weights,
)

__all__ = ["ShareSetError", "combine_batch"]

_X_SIZE = 4
_Y_SIZE = SHARE_SIZE - _X_SIZE
_Y_BITS = 8 * _Y_SIZE
_MIN_GROUP = 8
"""Smallest group interpolated packed (below, set by set is as fast)."""
_PRIME_BYTES = PRIME.to_bytes(_Y_SIZE, "big")
_PRIME_MPZ = gmpy2.mpz(PRIME)
_SECRET_BOUND = 1 << (8 * SECRET_SIZE)


class ShareSetError(ValueError):
    """A set given to :func:`combine_batch` is malformed or inconsistent.

    Attributes:
        index: Position of the (first such) set in the batch.
    """

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"share set {index}: {reason}")
        self.index = index


def combine_batch(share_sets: Sequence[Sequence[bytes]], threshold: int) -> list[bytes]:
    """Recover one secret from each set of shares: ``combine_shares`` for many sets.

    Args:
        share_sets: The shares of each secret (at least ``threshold`` per set; sets of
            exactly ``threshold`` shares in increasing point order are the fast case).
        threshold: The threshold every secret was shared with.

    Returns:
        The 32-byte secrets, in the order of ``share_sets``.

    Raises:
        TypeError: If ``threshold`` is not an int.
        ValueError: If ``threshold`` is out of range.
        ShareSetError: If a set is malformed or inconsistent (anything
            :func:`combine_shares` rejects); ``index`` names the first such set, and
            the cause is chained.
    """
    check_threshold(threshold)
    regular = [type(shares) in (list, tuple) and len(shares) == threshold for shares in share_sets]
    if all(regular) and len(share_sets) >= _MIN_GROUP:
        flat = list(chain.from_iterable(share_sets))
        if set(map(type, flat)) == {bytes} and set(map(len, flat)) == {SHARE_SIZE}:
            together = _combine_group(share_sets, threshold)
            if together is not None:
                return together
    return _combine_apart(share_sets, threshold, regular)


def _combine_apart(
    share_sets: Sequence[Sequence[bytes]], threshold: int, regular: list[bool]
) -> list[bytes]:
    """Group the regular sets by their points; the rest (and failed groups) set by set."""
    groups: dict[bytes, list[int]] = {}
    singles: list[int] = []
    for index, (shares, plain) in enumerate(zip(share_sets, regular, strict=True)):
        if plain and set(map(type, shares)) == {bytes}:
            groups.setdefault(b"".join([share[:_X_SIZE] for share in shares]), []).append(index)
        else:
            singles.append(index)
    results: dict[int, bytes] = {}
    for members in groups.values():
        group = [share_sets[i] for i in members]
        together = None
        if len(members) >= _MIN_GROUP and set(map(len, chain.from_iterable(group))) == {SHARE_SIZE}:
            together = _combine_group(group, threshold)
        if together is None:
            singles.extend(members)
        else:
            results.update(zip(members, together, strict=True))
    failures: dict[int, ValueError | TypeError] = {}
    for index in singles:
        try:
            results[index] = combine_shares(share_sets[index], threshold)
        except (TypeError, ValueError) as error:
            failures[index] = error
    if failures:
        first = min(failures)
        raise ShareSetError(first, str(failures[first])) from failures[first]
    return [results[index] for index in range(len(share_sets))]


def _combine_group(share_sets: Sequence[Sequence[bytes]], threshold: int) -> list[bytes] | None:
    """Interpolate sets of ``threshold`` bytes shares of ``SHARE_SIZE`` together.

    Returns ``None`` (nothing is decided) unless every set has the first set's
    points, strictly increasing, every ``y`` is below p and every secret is
    consistent; the caller then goes set by set.
    """
    count = len(share_sets)
    first = share_sets[0]
    xs = tuple(int.from_bytes(share[:_X_SIZE], "big") for share in first)
    if xs[0] == 0 or any(a >= b for a, b in pairwise(xs)):
        return None
    weights, scale = lagrange_weights(xs)
    offset = sum(w * x for w, x in zip(weights, xs, strict=True)) << _Y_BITS
    # Records of `width` bytes hold a share each, and a_s + 2**(8 * width - 1) in
    # [0, 2**(8 * width)): |a_s| < sum|w_i| * 2**528 (even for a y >= p, refused below).
    magnitude = sum(abs(w) for w in weights) << _Y_BITS
    width = max(SHARE_SIZE, magnitude.bit_length() // 8 + 2)
    pad = bytes(width - SHARE_SIZE)
    total = int.from_bytes((b"\x80" + bytes(width - 1)) * count, "big")  # the biases
    total -= offset * int.from_bytes((bytes(width - 1) + b"\x01") * count, "big")
    start = len(pad)
    for i, weight in enumerate(weights):
        column = pad + pad.join([shares[i] for shares in share_sets])
        # Every set's i-th point is x_i, and every y < p: top byte 0 or 1, and not p.
        if (
            any(column[start + j :: width] != first[i][j : j + 1] * count for j in range(_X_SIZE))
            or column[start + _X_SIZE :: width].translate(None, b"\x00\x01")
            or _PRIME_BYTES in column
        ):
            return None
        total += weight * int.from_bytes(column, "big")
    records = total.to_bytes(count * width, "big")
    half = 1 << (8 * width - 1)
    values = [
        int.from_bytes(records[at : at + width], "big") - half
        for at in range(0, count * width, width)
    ]
    if scale != 1:
        values = [int(gmpy2.mpz(value) * scale % _PRIME_MPZ) for value in values]
    secrets = [value % PRIME for value in values]
    if max(secrets) >= _SECRET_BOUND:
        return None
    return [secret.to_bytes(SECRET_SIZE, "big") for secret in secrets]
