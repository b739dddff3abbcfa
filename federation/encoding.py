"""Exact fixed-point formats and the balanced-digit encoding of big integers into uint64.

Every aggregate a node releases is an integer: a row count, or a sum ``S1 = ΣX`` or
``S2 = ΣX²`` of fixed-point values ``X``, exact but for an ``S2`` computed on the
CENTERED tier, which is within a certified bound (:mod:`federation.query.centered`).
Secure aggregation adds vectors of uint64 modulo 2**64, so each integer is written as
``k`` balanced base-2**48 digits ``d_j ∈ [-2**47, 2**47)`` (stored two's-complement,
mod 2**64) with ``v = Σ d_j · 2**(48 j)``.

Why this is exact: the coordinator adds the digit vectors of at most :data:`MAX_NODES`
(2**15) nodes, so each summed digit lies in ``[-2**62, 2**62)`` and is read back
without wrap-around as a signed int64; recombining the summed digits gives the exact
sum of the nodes' integers, whatever carries a plain sum would have needed.

Fixed-point formats (``X`` from a value ``x``):

* integer columns: ``X = x`` (``F = 0``); accepted ``|x| <= 2**62 - 1``, or the
  declared bounds (rounded inward to integers) where they are tighter.
* double columns: ``X = round(x · 2**52)`` (``F = 52``, ties away from zero);
  accepted ``|x| < 2**41``, or the declared bounds where they are tighter. Every
  double with ``|x| >= 1`` (and every multiple of 2**-52) is represented exactly;
  any other value is off by at most 2**-53 absolute.

>>> digits = encode_integer(-5, 2)
>>> decode_integer([int(d) for d in digits])
-5
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from federation.errors import ConfigError, ValueOutOfRangeError
from federation.schema import Column, ColumnType

__all__ = [
    "DIGIT_BITS",
    "DOUBLE_FRACTION_BITS",
    "DOUBLE_LIMIT",
    "ENCODING_VERSION",
    "INTEGER_LIMIT",
    "MAX_NODES",
    "MAX_ROWS_PER_NODE",
    "FixedPointFormat",
    "LimbPlan",
    "decode_integer",
    "digits_for",
    "encode_integer",
    "fixed_point_format",
    "round_half_away",
]

ENCODING_VERSION = "federation.encoding/v1"
"""Bound into every query fingerprint: change it whenever a format or the layout changes."""

DIGIT_BITS = 48
"""Bits per balanced digit: node digits lie in ``[-2**47, 2**47)``."""

MAX_NODES = 2**15
"""At most this many node vectors may be summed (each summed digit stays within int64)."""

MAX_ROWS_PER_NODE = 2**40 - 1
"""The most rows one node may aggregate; sizes the digits of every quantity."""

INTEGER_LIMIT = 2**62 - 1
"""Largest accepted magnitude of an integer-column value."""

DOUBLE_FRACTION_BITS = 52
"""Fraction bits ``F`` of the double-column fixed point (resolution 2**-52)."""

DOUBLE_LIMIT = math.nextafter(2.0**41, 0.0)
"""Largest accepted magnitude of a double-column value: the largest double below 2**41."""

_HALF_DIGIT = 1 << (DIGIT_BITS - 1)
_DIGIT_MASK = (1 << DIGIT_BITS) - 1


class LimbPlan(enum.Enum):
    """How a node computes ``ΣX²`` exactly with 64-bit products (chosen from ``|X|`` max)."""

    ONE = 1
    """``|X| <= 2**31``: ``X*X`` fits BIGINT."""
    TWO = 2
    """``|X| <= 2**62``: ``X = a·2**31 + c`` with integer shift and mask."""
    THREE = 3
    """``|X| <= 2**93``: ``X = h·2**62 + m·2**31 + l``, split in exact double arithmetic."""


def round_half_away(value: Fraction) -> int:
    """Round a rational to the nearest integer, ties away from zero (DuckDB's ``round``)."""
    magnitude = abs(value)
    whole = math.floor(magnitude + Fraction(1, 2))
    return whole if value >= 0 else -whole


@dataclass(frozen=True)
class FixedPointFormat:
    """The exact fixed-point representation of one numeric column.

    Attributes:
        column: Column name (schema spelling).
        column_type: ``INTEGER`` or ``DOUBLE``.
        fraction_bits: ``F``: ``X = round(x · 2**F)``.
        lower: Smallest accepted value (inclusive); ``int`` for integer columns.
        upper: Largest accepted value (inclusive).
        max_abs: Bound on ``|X|`` for every accepted value.
    """

    column: str
    column_type: ColumnType
    fraction_bits: int
    lower: int | float
    upper: int | float
    max_abs: int

    @property
    def limbs(self) -> LimbPlan:
        """The cheapest exact limb plan for this format."""
        if self.max_abs <= 2**31:
            return LimbPlan.ONE
        if self.max_abs <= 2**62:
            return LimbPlan.TWO
        return LimbPlan.THREE

    def range_text(self) -> str:
        """The accepted range, for error messages: ``[lower, upper]``."""
        return f"[{self.lower!r}, {self.upper!r}]"

    def out_of_range_error(self) -> ValueOutOfRangeError:
        """The error a node raises when a value of this column is outside the range."""
        return ValueOutOfRangeError(
            f"column {self.column!r} holds a value outside its encodable range "
            f"{self.range_text()} ({self.column_type.value}, fixed point with "
            f"{self.fraction_bits} fraction bits); clean the data, or filter such rows "
            "out with WHERE"
        )

    def to_dict(self) -> dict[str, object]:
        """Canonical JSON-ready form (bound into the query fingerprint)."""
        return {
            "column": self.column,
            "type": self.column_type.value,
            "fraction_bits": self.fraction_bits,
            "lower": repr(self.lower),
            "upper": repr(self.upper),
            "max_abs": str(self.max_abs),
        }


def fixed_point_format(column: Column) -> FixedPointFormat:
    """The fixed-point format of a numeric column, from its type and declared bounds.

    Raises:
        ConfigError: The column is not numeric.
    """
    if column.type is ColumnType.INTEGER:
        lo_i, hi_i = -INTEGER_LIMIT, INTEGER_LIMIT
        if column.bounds is not None:
            lo_i = max(lo_i, math.ceil(column.bounds[0]))
            hi_i = min(hi_i, math.floor(column.bounds[1]))
        return FixedPointFormat(
            column=column.name,
            column_type=column.type,
            fraction_bits=0,
            lower=lo_i,
            upper=hi_i,
            max_abs=max(abs(lo_i), abs(hi_i)),
        )
    if column.type is ColumnType.DOUBLE:
        lo, hi = -DOUBLE_LIMIT, DOUBLE_LIMIT
        if column.bounds is not None:
            lo = max(lo, float(column.bounds[0]))
            hi = min(hi, float(column.bounds[1]))
        scale = 2**DOUBLE_FRACTION_BITS
        max_abs = max(
            abs(round_half_away(Fraction(lo) * scale)), abs(round_half_away(Fraction(hi) * scale))
        )
        return FixedPointFormat(
            column=column.name,
            column_type=column.type,
            fraction_bits=DOUBLE_FRACTION_BITS,
            lower=lo,
            upper=hi,
            max_abs=max_abs,
        )
    raise ConfigError(f"column {column.name!r} is {column.type.value}; it has no fixed-point form")


def _capacity(digits: int) -> int:
    """Largest magnitude every value in ``[-c, c]`` of which ``digits`` balanced digits hold."""
    return (_HALF_DIGIT - 1) * sum(1 << (DIGIT_BITS * j) for j in range(digits))


def digits_for(max_abs: int) -> int:
    """The number of balanced digits that holds every integer ``v`` with ``|v| <= max_abs``."""
    if max_abs < 0:
        raise ValueError("max_abs must be non-negative")
    k = 1
    while _capacity(k) < max_abs:
        k += 1
    return k


def encode_integer(value: int, digits: int) -> list[int]:
    """Balanced base-2**48 digits of ``value``, least significant first, as uint64 words.

    Raises:
        ValueOutOfRangeError: ``value`` needs more than ``digits`` digits.
    """
    out: list[int] = []
    rest = value
    for _ in range(digits):
        d = ((rest + _HALF_DIGIT) & _DIGIT_MASK) - _HALF_DIGIT
        out.append(d & 0xFFFF_FFFF_FFFF_FFFF)
        rest = (rest - d) >> DIGIT_BITS
    if rest != 0:
        raise ValueOutOfRangeError(
            f"an aggregate needs more than {digits} digits of {DIGIT_BITS} bits; "
            "this is a bug in the vector layout"
        )
    return out


def decode_integer(words: Sequence[int] | npt.NDArray[np.uint64]) -> int:
    """Recombine summed digits (uint64 words, each read as a signed int64) exactly."""
    value = 0
    for j, w in enumerate(int(w) for w in words):
        signed = w - (1 << 64) if w >= 1 << 63 else w
        value += signed << (DIGIT_BITS * j)
    return value
