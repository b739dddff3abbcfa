"""Narrow, round by round, an interval that holds the order statistic of one rank
(:class:`RankSearch`), from each round's histogram counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from federation.errors import QueryError
from federation.query.quantile_histogram import BUCKETS
from federation.query.width_buckets import dyadic_width

__all__ = ["RESOLUTION", "RankSearch"]

RESOLUTION = 2.0**-52
"""The finest relative width a search narrows to: the resolution of the exact encoding
of doubles (``2**-52`` absolute below 1, about one double above)."""


def _boundary(lo: float, hi: float, j: int) -> float:
    """The lower edge of bucket ``j`` (1-based) of ``[lo, hi)``, rounded to a double."""
    if j <= 1:
        return lo
    if j > BUCKETS:
        return hi
    return float(Fraction(lo) + (Fraction(hi) - Fraction(lo)) * (j - 1) / BUCKETS)


@dataclass
class RankSearch:
    """Narrows an interval that holds the order statistic of one rank.

    Each round's counts below and above the interval are exact comparisons, so a
    round *verifies* whether the interval holds the rank. Only a verified interval
    ends the search; a narrowed interval that misses the rank (a value put two
    buckets off by DuckDB's floating point) falls back to the part of the last
    verified interval on the rank's side.

    Attributes:
        rank: The 0-based rank among the group's values.
        total: How many values the group has.
        lo: Lower end of the interval to ask about next (inclusive).
        hi: Upper end (exclusive).
        integral: The column holds integers (the search can end exactly).
        tolerance: Stop when ``hi - lo <= max(tolerance, RESOLUTION) * max(1, |lo|, |hi|)``
            or the interval holds one double (integer columns: when it holds one
            integer, whatever the tolerance).
        done: A verified interval is narrow enough.
        rounds: Rounds taken so far.
    """

    rank: int
    total: int
    lo: float
    hi: float
    integral: bool
    tolerance: float
    done: bool = False
    rounds: int = 0
    outer: tuple[float, float] | None = None
    """An interval known to hold every value (the column's range): a start interval
    that turns out to miss the rank falls back to it instead of failing."""
    _verified: tuple[float, float] | None = field(default=None, repr=False)

    @property
    def interval(self) -> tuple[float, float]:
        """The interval to ask about next."""
        return (self.lo, self.hi)

    def _narrow_enough(self) -> bool:
        lo, hi = self.lo, self.hi
        if self.integral:
            return math.ceil(lo) + 1 >= hi  # at most one integer in [lo, hi): exact
        if math.nextafter(lo, math.inf) >= hi:
            return True  # one double
        return hi - lo <= max(self.tolerance, RESOLUTION) * max(1.0, abs(lo), abs(hi))

    def estimate(self) -> tuple[Fraction, Fraction]:
        """The estimate and its error bound (exact rationals), once :attr:`done`."""
        lo, hi = Fraction(self.lo), Fraction(self.hi)
        if self.integral and math.ceil(lo) + 1 >= hi:
            return Fraction(math.ceil(lo)), Fraction(0)
        if math.nextafter(self.lo, math.inf) >= self.hi:
            return lo, Fraction(0)
        return (lo + hi) / 2, (hi - lo) / 2

    def allows(self, lo: float, hi: float) -> bool:
        """True when the search may ask about ``[lo, hi)`` instead of :attr:`interval`
        (:meth:`widen`): it contains the interval and lies within the interval verified
        last (or :attr:`outer` before any), so a round that finds the rank outside it
        still falls back to a verified interval."""
        bound = self._verified or self.outer
        if self.done or not lo <= self.lo < self.hi <= hi:
            return False
        return bound is None or bound[0] <= lo < hi <= bound[1]

    def widen(self, lo: float, hi: float) -> None:
        """Ask about ``[lo, hi)`` next (so that searches of one column can share one
        histogram).

        Raises:
            ValueError: :meth:`allows` does not.
        """
        if not self.allows(lo, hi):
            raise ValueError(f"a search of {self.interval} cannot widen to {(lo, hi)}")
        self.lo, self.hi = lo, hi

    def update(self, counts: list[int]) -> None:
        """Take one round's bucket counts (``BUCKETS + 2`` of them) over :attr:`interval`.

        Raises:
            QueryError: The counts do not add up to the group's count, or contradict
                an interval verified earlier (the data changed between rounds).
        """
        if len(counts) != BUCKETS + 2 or sum(counts) != self.total:
            raise QueryError(
                "the histogram counts of a quantile round do not add up to the group's count; "
                "the data changed while the quantile was being computed: run the query again"
            )
        self.rounds += 1
        below, above = counts[0], counts[-1]
        lo, hi = self.lo, self.hi
        if not below <= self.rank < self.total - above:
            verified = self._verified or self.outer
            if verified is None or not verified[0] <= lo < hi <= verified[1]:
                raise QueryError(
                    "a quantile round found its rank outside every interval verified so far; "
                    "the data changed while the quantile was being computed: run the query again"
                )
            self.lo, self.hi = (verified[0], lo) if self.rank < below else (hi, verified[1])
            if self.lo >= self.hi:
                raise QueryError("a quantile search lost its interval; run the query again")
            return
        self._verified = (lo, hi)
        if self._narrow_enough():
            self.done = True
            return
        cumulative = below
        j = BUCKETS
        for k in range(1, BUCKETS + 1):
            cumulative += counts[k]
            if cumulative > self.rank:
                j = k
                break
        width = dyadic_width(lo, hi, BUCKETS)
        if width is not None:
            # Exact buckets: the counts put the rank in bucket j exactly, so that bucket
            # is verified too (the wider interval stays the one verified for fallbacks).
            self.lo, self.hi = lo + (j - 1) * width, lo + j * width
            self.done = self._narrow_enough()
            return
        new_lo, new_hi = _boundary(lo, hi, j - 1), _boundary(lo, hi, j + 2)
        if (new_lo, new_hi) == (lo, hi):  # few doubles left: try the bucket alone
            new_lo, new_hi = _boundary(lo, hi, j), _boundary(lo, hi, j + 1)
        if new_hi <= new_lo:  # the bucket holds less than one double: take the next one
            new_hi = math.nextafter(new_lo, math.inf)
        self.lo, self.hi = new_lo, new_hi
