"""Shamir secret sharing over GF(2**521 - 1): behaviour and negative matrix."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import pytest

from federation.crypto.shamir import (
    MAX_THRESHOLD,
    MAX_X,
    PRIME,
    SHARE_SIZE,
    combine_shares,
    is_share_at,
    share_x,
    split_secret,
)

SECRET = bytes(range(32))


def test_field_is_the_mersenne_prime_above_2_256() -> None:
    assert PRIME == 2**521 - 1
    assert PRIME > 2**256
    assert SHARE_SIZE == 70


@pytest.mark.parametrize(("t", "n"), [(2, 2), (2, 3), (3, 5), (5, 9), (11, 21)])
def test_every_threshold_subset_recovers(t: int, n: int) -> None:
    secret = secrets.token_bytes(32)
    shares = split_secret(secret, t, range(1, n + 1))
    assert len(shares) == n
    assert all(len(s) == SHARE_SIZE for s in shares.values())
    subsets = list(itertools.combinations(shares.values(), t))[:50]
    for subset in subsets:
        assert combine_shares(list(subset), t) == secret
    assert combine_shares(shares, t) == secret  # a mapping, all shares


def test_extreme_secrets_round_trip() -> None:
    for secret in (bytes(32), b"\xff" * 32):
        shares = split_secret(secret, 3, [1, 2, 3])
        assert combine_shares([shares[3], shares[1], shares[2]], 3) == secret


def test_share_x_and_is_share_at() -> None:
    shares = split_secret(SECRET, 2, [7, 2**32 - 1])
    assert share_x(shares[7]) == 7
    assert share_x(shares[2**32 - 1]) == 2**32 - 1
    assert is_share_at(shares[7], 7)
    assert not is_share_at(shares[7], 8)
    assert not is_share_at(shares[7][:-1], 7)
    assert not is_share_at(bytearray(shares[7]), 7)
    assert not is_share_at((7).to_bytes(4, "big") + PRIME.to_bytes(66, "big"), 7)
    assert not is_share_at((7).to_bytes(4, "big") + (2**521).to_bytes(66, "big"), 7)


def test_fewer_than_threshold_shares_are_refused() -> None:
    shares = list(split_secret(SECRET, 4, [1, 2, 3, 4, 5]).values())
    with pytest.raises(ValueError, match="at least 4"):
        combine_shares(shares[:3], 4)


def test_threshold_minus_one_shares_fit_any_secret() -> None:
    # Information-theoretic hiding: t-1 shares plus a forged t-th point interpolate to
    # arbitrary field elements; they never single out the real secret.
    shares = split_secret(SECRET, 3, [1, 2, 3])
    forged = [
        (3).to_bytes(4, "big") + secrets.randbelow(PRIME).to_bytes(66, "big") for _ in range(20)
    ]
    recovered: set[bytes | None] = set()
    for f in forged:
        try:
            recovered.add(combine_shares([shares[1], shares[2], f], 3))
        except ValueError:
            recovered.add(None)  # landed outside [0, 2**256): flagged as inconsistent
    assert SECRET not in recovered


def test_randomly_corrupted_share_is_detected_as_inconsistent() -> None:
    shares = split_secret(SECRET, 3, [1, 2, 3])
    for _ in range(10):
        bad = shares[2][:4] + secrets.randbelow(PRIME).to_bytes(66, "big")
        with pytest.raises(ValueError, match="inconsistent"):
            combine_shares([shares[1], bad, shares[3]], 3)


def test_small_deliberate_change_is_not_detectable_by_the_range_check() -> None:
    # Documented limit: the range check catches random corruption only; the protocol
    # checks recovered masking keys against their public keys on top.
    shares = split_secret(SECRET, 3, [1, 2, 3])
    bad = shares[2][:-1] + bytes([shares[2][-1] ^ 1])
    assert combine_shares([shares[1], bad, shares[3]], 3) != SECRET


@pytest.mark.parametrize(
    ("secret", "threshold", "xs", "error"),
    [
        ("s" * 32, 2, [1, 2], TypeError),
        (bytearray(32), 2, [1, 2], TypeError),
        (bytes(31), 2, [1, 2], ValueError),
        (bytes(33), 2, [1, 2], ValueError),
        (b"", 2, [1, 2], ValueError),
        (SECRET, 1, [1, 2], ValueError),
        (SECRET, 0, [1, 2], ValueError),
        (SECRET, -3, [1, 2], ValueError),
        (SECRET, 2.0, [1, 2], TypeError),
        (SECRET, True, [1, 2], TypeError),
        (SECRET, MAX_THRESHOLD + 1, [1, 2], ValueError),
        (SECRET, 3, [1, 2], ValueError),
        (SECRET, 2, [1, 1], ValueError),
        (SECRET, 2, [0, 1], ValueError),
        (SECRET, 2, [-1, 1], ValueError),
        (SECRET, 2, [1, MAX_X + 1], ValueError),
        (SECRET, 2, [1, 2.0], TypeError),
        (SECRET, 2, [1, "2"], TypeError),
    ],
)
def test_split_rejects(secret: Any, threshold: Any, xs: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        split_secret(secret, threshold, xs)


def test_split_rejects_oversized_share_count() -> None:
    with pytest.raises(ValueError, match="at most"):
        split_secret(SECRET, 2, range(1, MAX_THRESHOLD + 2))


GOOD = split_secret(SECRET, 2, [1, 2, 3])


@pytest.mark.parametrize(
    ("shares", "threshold", "error"),
    [
        ([GOOD[1], GOOD[1]], 2, ValueError),
        ([GOOD[1], GOOD[2][:-1]], 2, ValueError),
        ([GOOD[1], GOOD[2] + b"\x00"], 2, ValueError),
        ([GOOD[1], b""], 2, ValueError),
        ([GOOD[1], "x" * 70], 2, TypeError),
        ([GOOD[1], None], 2, TypeError),
        ([GOOD[1], bytes(70)], 2, ValueError),  # x = 0
        ([GOOD[1], (2).to_bytes(4, "big") + PRIME.to_bytes(66, "big")], 2, ValueError),
        ([GOOD[1], GOOD[2]], 1, ValueError),
        ([GOOD[1], GOOD[2]], "2", TypeError),
        ([GOOD[1]], 2, ValueError),
    ],
)
def test_combine_rejects(shares: Any, threshold: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        combine_shares(shares, threshold)


@pytest.mark.parametrize("bad", [b"short", "x" * 70, bytes(70)])
def test_share_x_rejects(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        share_x(bad)


def test_random_coefficients_are_field_elements_redrawn_at_p(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from federation.crypto import shamir

    # 66 bytes of 0xff give 2**521 - 1 = p after dropping 7 bits: it must be redrawn.
    monkeypatch.setattr(shamir.secrets, "token_bytes", lambda n: b"\xff" * n)
    monkeypatch.setattr(shamir.secrets, "randbelow", lambda bound: bound - 2)
    assert shamir._random_field_elements(3) == [PRIME - 2] * 3


def test_random_coefficients_use_all_521_bits() -> None:
    from federation.crypto import shamir

    values = shamir._random_field_elements(400)
    assert all(0 <= v < PRIME for v in values)
    assert max(values).bit_length() == 521  # the top bit is used (probability 1 - 2**-400)
    assert len(set(values)) == len(values)
