"""federation.encoding: balanced digits, overflow bounds, fixed-point formats, exact sqrt."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.encoding import (
    DIGIT_BITS,
    DOUBLE_LIMIT,
    INTEGER_LIMIT,
    MAX_NODES,
    LimbPlan,
    decode_integer,
    digits_for,
    encode_integer,
    fixed_point_format,
    round_half_away,
)
from federation.errors import ConfigError, ValueOutOfRangeError
from federation.query.finalize import sqrt_ratio
from federation.schema import Column, ColumnType

HALF = 1 << (DIGIT_BITS - 1)


def signed(word: int) -> int:
    return word - (1 << 64) if word >= 1 << 63 else word


@given(st.integers(min_value=-(2**300), max_value=2**300))
def test_round_trip_and_digit_range(value: int) -> None:
    k = digits_for(abs(value))
    words = encode_integer(value, k)
    assert len(words) == k
    assert all(0 <= w < 2**64 for w in words)
    assert all(-HALF <= signed(w) < HALF for w in words)
    assert decode_integer(words) == value


@given(st.integers(min_value=0, max_value=2**400))
def test_digits_for_is_minimal(max_abs: int) -> None:
    k = digits_for(max_abs)
    encode_integer(max_abs, k)
    encode_integer(-max_abs, k)
    if k > 1:  # one digit fewer cannot hold both ends of the range
        fits = []
        for v in (max_abs, -max_abs):
            try:
                encode_integer(v, k - 1)
                fits.append(True)
            except ValueOutOfRangeError:
                fits.append(False)
        assert not all(fits)


def test_too_few_digits_is_an_error_not_a_wrap() -> None:
    with pytest.raises(ValueOutOfRangeError, match="digits"):
        encode_integer(2**200, 2)


@settings(max_examples=50)
@given(st.lists(st.integers(min_value=-(2**140), max_value=2**140), min_size=1, max_size=40))
def test_sum_of_encodings_mod_2_64_decodes_to_the_sum(values: list[int]) -> None:
    k = digits_for(2**140)
    total = np.zeros(k, dtype=np.uint64)
    for v in values:
        total += np.array(encode_integer(v, k), dtype=np.uint64)
    assert decode_integer(total) == sum(values)


def test_worst_case_digit_sum_over_max_nodes_does_not_overflow() -> None:
    # The extreme node digits are -2**47 and 2**47 - 1; MAX_NODES of them still fit int64.
    k = 3
    lowest = sum(-HALF << (DIGIT_BITS * j) for j in range(k))
    highest = sum((HALF - 1) << (DIGIT_BITS * j) for j in range(k))
    lo_words = np.array(encode_integer(lowest, k), dtype=np.uint64)
    hi_words = np.array(encode_integer(highest, k), dtype=np.uint64)
    assert [signed(int(w)) for w in lo_words] == [-HALF] * k
    assert [signed(int(w)) for w in hi_words] == [HALF - 1] * k
    for words, value in ((lo_words, lowest), (hi_words, highest)):
        total = (words * np.uint64(MAX_NODES)).astype(np.uint64)
        assert decode_integer(total) == value * MAX_NODES
    assert MAX_NODES * HALF <= 2**63


def test_round_half_away_matches_duckdb_convention() -> None:
    assert round_half_away(Fraction(1, 2)) == 1
    assert round_half_away(Fraction(-1, 2)) == -1
    assert round_half_away(Fraction(5, 2)) == 3
    assert round_half_away(Fraction(-5, 2)) == -3
    assert round_half_away(Fraction(7, 3)) == 2


def test_integer_format_default_and_bounds() -> None:
    f = fixed_point_format(Column("a", ColumnType.INTEGER))
    assert (f.lower, f.upper, f.max_abs, f.fraction_bits) == (
        -INTEGER_LIMIT,
        INTEGER_LIMIT,
        INTEGER_LIMIT,
        0,
    )
    assert f.limbs is LimbPlan.TWO
    g = fixed_point_format(Column("a", ColumnType.INTEGER, bounds=(-0.5, 150.7)))
    assert (g.lower, g.upper, g.max_abs) == (0, 150, 150)
    assert g.limbs is LimbPlan.ONE
    huge = fixed_point_format(Column("a", ColumnType.INTEGER, bounds=(-1e30, 1e30)))
    assert huge.upper == INTEGER_LIMIT


def test_double_format_default_and_bounds() -> None:
    f = fixed_point_format(Column("x", ColumnType.DOUBLE))
    assert f.upper == DOUBLE_LIMIT < 2.0**41
    assert math.nextafter(DOUBLE_LIMIT, math.inf) == 2.0**41
    assert f.max_abs <= 2**93
    assert f.limbs is LimbPlan.THREE
    g = fixed_point_format(Column("x", ColumnType.DOUBLE, bounds=(-1000.0, 10.0)))
    assert g.max_abs == 1000 * 2**52
    assert g.limbs is LimbPlan.TWO
    wide = fixed_point_format(Column("x", ColumnType.DOUBLE, bounds=(0.0, 1e300)))
    assert (wide.lower, wide.upper) == (0.0, DOUBLE_LIMIT)
    tiny = fixed_point_format(Column("x", ColumnType.DOUBLE, bounds=(-1e-7, 1e-7)))
    assert tiny.limbs is LimbPlan.ONE


def test_out_of_range_error_names_column_and_range() -> None:
    f = fixed_point_format(Column("dose", ColumnType.DOUBLE, bounds=(0.0, 5.0)))
    msg = str(f.out_of_range_error())
    assert "'dose'" in msg
    assert "[0.0, 5.0]" in msg


def test_text_columns_have_no_format() -> None:
    with pytest.raises(ConfigError, match="no fixed-point form"):
        fixed_point_format(Column("t", ColumnType.TEXT))


@given(st.integers(min_value=0, max_value=2**200), st.integers(min_value=1, max_value=2**200))
def test_sqrt_ratio_is_correctly_rounded(num: int, den: int) -> None:
    r = sqrt_ratio(num, den)
    exact = Fraction(num, den)
    # r is correctly rounded iff exact lies within half an ulp: compare squares exactly.
    if r == 0.0:
        assert num == 0
        return
    up = Fraction(math.nextafter(r, math.inf))
    down = Fraction(math.nextafter(r, 0.0))
    fr = Fraction(r)
    assert ((fr + down) / 2) ** 2 <= exact <= ((fr + up) / 2) ** 2


def test_sqrt_ratio_exact_squares_and_errors() -> None:
    assert sqrt_ratio(9, 4) == 1.5
    assert sqrt_ratio(2, 1) == math.sqrt(2)
    with pytest.raises(ValueError, match="num >= 0"):
        sqrt_ratio(-1, 1)
