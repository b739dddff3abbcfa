"""Exact rational linear algebra for the models: solving the normal equations.

The secure aggregate gives the moment matrices ``X'X`` and ``X'y`` exactly (sums of
fixed-point integers, :mod:`federation.encoding`). Solving them in floating point
would throw that away: on nearly collinear or polynomial designs the condition number
of ``X'X`` exceeds 1e16 and a float64 solve keeps no correct digit. Here the system
is solved exactly: each row is scaled to integers, reduced with Bareiss' fraction-free
elimination (every intermediate is an exact integer minor, so sizes grow only
linearly) and back-substituted in :class:`~fractions.Fraction`. The answer is the
exact rational solution; the caller rounds it once.

>>> from fractions import Fraction as F
>>> solve_exact([[F(2), F(1)], [F(1), F(3)]], [[F(3)], [F(5)]])
[[Fraction(4, 5)], [Fraction(7, 5)]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

__all__ = ["SingularMatrixError", "solve_exact"]


class SingularMatrixError(ArithmeticError):
    """The matrix is exactly singular; ``column`` is the first dependent column."""

    def __init__(self, column: int) -> None:
        super().__init__(f"column {column} is a linear combination of the preceding columns")
        self.column = column


def solve_exact(
    a: Sequence[Sequence[Fraction | int]], b: Sequence[Sequence[Fraction | int]]
) -> list[list[Fraction]]:
    """The exact solution ``X`` of ``A X = B`` for a square non-singular ``A``.

    The pivot of column ``k`` is searched in the rows not used yet; without partial
    pivoting on size (exact arithmetic needs none), the first dependent column is the
    first for which no pivot exists.

    Raises:
        SingularMatrixError: ``A`` is singular (names the first dependent column).
    """
    q = len(a)
    width = len(b[0]) if b else 0
    rows: list[list[int]] = []
    for i in range(q):
        entries = [Fraction(v) for v in (*a[i], *b[i])]
        scale = math.lcm(*(e.denominator for e in entries))
        rows.append([int(e * scale) for e in entries])
    # Bareiss: after step k, rows[i][j] (i, j > k) is a (k+1)x(k+1) minor of the input.
    previous = 1
    order: list[int] = []
    remaining = list(range(q))
    for k in range(q):
        pivot_row = next((r for r in remaining if rows[r][k] != 0), None)
        if pivot_row is None:
            raise SingularMatrixError(k)
        remaining.remove(pivot_row)
        order.append(pivot_row)
        pivot = rows[pivot_row]
        pk = pivot[k]
        for r in remaining:
            row = rows[r]
            factor = row[k]
            for j in range(k + 1, q + width):
                row[j] = (pk * row[j] - factor * pivot[j]) // previous
            row[k] = 0
        previous = pk
    # Back substitution over the pivot rows, in exact rationals.
    solution = [[Fraction(0)] * width for _ in range(q)]
    for k in range(q - 1, -1, -1):
        row = rows[order[k]]
        for c in range(width):
            acc = Fraction(row[q + c])
            for j in range(k + 1, q):
                if row[j]:
                    acc -= row[j] * solution[j][c]
            solution[k][c] = acc / row[k]
    return solution
