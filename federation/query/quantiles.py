"""MEDIAN and quantiles by secure histogram refinement (pure: no I/O).

A quantile is an order statistic, which no sum reveals directly. The analyst's
SDK finds it with a few ordinary aggregate jobs, each a secure (or homomorphic) sum
of histogram counts, so no node ever reveals its own order statistics, and the
coordinator sees only counts summed over all nodes:

1. The query is split (:func:`split_quantiles`): each quantile item becomes
   ``COUNT(column)`` (the number of values it ranks) in a *base query* that carries
   every other aggregate, the WHERE clause and the GROUP BY.
2. For every group and every rank a quantile needs, a :class:`RankSearch` keeps an
   interval known to hold that order statistic, starting from the column's declared
   bounds (or its encodable range), or narrower from the moments. Each round asks
   ``WIDTH_BUCKET(column, lo, hi, BUCKETS)`` counts over the interval; the counts below
   and above it (buckets 0 and n+1) are exact comparisons, so the rank falls in one
   known bucket. When the bucket width is a power of two and ``lo`` a multiple of it
   (:func:`dyadic_cover` aligns intervals so), the nodes compute every bucket exactly
   (:func:`~federation.query.groups.dyadic_width`): the rank's bucket is the next
   interval, already verified, and each round divides the interval by ``BUCKETS``.
   Otherwise DuckDB computes the inner buckets in floating point and may put a value
   next to a boundary into the neighbouring bucket, so the next interval is that
   bucket *and* its two neighbours (each round divides it by ``BUCKETS / 3``), and the
   search ends only after a round verifies it.
3. One round is one job (:func:`histogram_sql`): every open search's histogram is a
   grouping set ``(group columns..., WIDTH_BUCKET(...))``; searches of one column and
   group asking the same or overlapping intervals share one (the ranks ``floor(h)``
   and ``ceil(h)`` of a quantile, and in the first round every quantile of a column).
4. The search stops when the interval holds one integer (integer columns: exact)
   or one double, or is narrower than the tolerance (at finest :data:`RESOLUTION`
   relative to ``max(1, |x|)``, the resolution of the exact encoding of doubles); the
   estimate is its midpoint and half its width is the error bound the result
   reports. From the interval the moments give, that takes about 3 rounds at the
   default tolerance ``1e-9``; from the encodable range ``|x| < 2**41``, 3 to 7 rounds,
   and 5 to 10 to the last double.

Semantics follow DuckDB: ``QUANTILE_CONT(x, q)`` (and ``MEDIAN(x)``,
``PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY x)``) interpolates between the order
statistics of ranks ``floor(h)`` and ``ceil(h)``, ``h = (n - 1) q``;
``QUANTILE_DISC(x, q)`` (``PERCENTILE_DISC``) is the value of rank ``max(ceil(q n) -
1, 0)``. NULLs are ignored; a group without values gives NULL.

``MIN(x)`` and ``MAX(x)`` are the order statistics of rank 0 and ``n - 1``, found
the same way to the last bit; the SDK allows them only on columns classified
``public`` (they reveal one record's value).

Limits: GROUP BY keys must be plain (categorical) columns; HAVING and ORDER BY may
not refer to a quantile; a quantile cannot be part of arithmetic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from federation.errors import QueryError, QuerySyntaxError, UnsupportedQueryError
from federation.query.groups import dyadic_width

__all__ = [
    "BUCKETS",
    "QuantileItem",
    "QuantileQuery",
    "RankSearch",
    "dyadic_cover",
    "histogram_sql",
    "interpolate",
    "ranks",
    "split_quantiles",
]

BUCKETS = 2048
"""Histogram buckets per refinement round."""

RESOLUTION = 2.0**-52
"""The finest relative width a search narrows to: the resolution of the exact encoding
of doubles (``2**-52`` absolute below 1, about one double above)."""

_FUNCTIONS = (exp.Median, exp.PercentileCont, exp.PercentileDisc, exp.Min, exp.Max)
_MAYBE_QUANTILE = re.compile(r"median|quantile|percentile|min|max", re.IGNORECASE)
"""Every spelling of a quantile function contains one of these (a cheap pre-filter)."""


@dataclass(frozen=True)
class QuantileItem:
    """One quantile in the select list.

    Attributes:
        index: Its position among the output columns.
        name: Its output column name.
        column: The column it ranks (as written).
        q: The quantile, in [0, 1].
        discrete: ``QUANTILE_DISC`` (a data value) rather than ``QUANTILE_CONT``.
        extreme: ``MIN`` or ``MAX`` (``QUANTILE_DISC`` at 0 or 1, found exactly; a
            single record's value, so only on columns a policy classifies public).
    """

    index: int
    name: str
    column: str
    q: Fraction
    discrete: bool
    extreme: bool = False


@dataclass(frozen=True)
class QuantileQuery:
    """A query with quantiles, split for refinement.

    Attributes:
        base_sql: The query with every quantile item replaced by ``COUNT(column)``
            under the item's output name.
        dataset: The FROM dataset.
        where: The WHERE predicate as DuckDB SQL, or ``None``.
        group_columns: The GROUP BY columns, in order.
        items: The quantile items.
        moments: Per ranked column, the names of two extra output columns of the
            base query, ``AVG(column)`` and ``VAR_POP(column)`` (each the correctly
            rounded exact value): with the count they bound where each order
            statistic lies, so searches start narrow. They are dropped from the answer.
    """

    base_sql: str
    dataset: str
    where: str | None
    group_columns: tuple[str, ...]
    items: tuple[QuantileItem, ...]
    moments: dict[str, tuple[str, str]] = field(default_factory=dict)


def _contains_quantile(node: exp.Expression | None) -> bool:
    return node is not None and any(True for _ in node.find_all(*_FUNCTIONS))


def _quantile_of(node: exp.Expression) -> tuple[str, Fraction, bool] | None:
    """(column, q, discrete) when ``node`` is a quantile aggregate, else ``None``."""
    if isinstance(node, exp.WithinGroup) and isinstance(
        node.this, exp.PercentileCont | exp.PercentileDisc
    ):
        order = node.expression
        keys = order.expressions if isinstance(order, exp.Order) else []
        if len(keys) != 1 or not isinstance(keys[0], exp.Ordered) or keys[0].args.get("desc"):
            raise UnsupportedQueryError(
                "PERCENTILE_CONT/DISC ... WITHIN GROUP needs ORDER BY one column, ascending"
            )
        return _column(keys[0].this), _q(node.this.this), isinstance(node.this, exp.PercentileDisc)
    if isinstance(node, exp.Median):
        return _column(node.this), Fraction(1, 2), False
    if isinstance(node, exp.Min | exp.Max):
        if node.expressions:
            raise UnsupportedQueryError(f"{node.key.upper()} takes one column")
        return _column(node.this), Fraction(int(isinstance(node, exp.Max))), True
    if isinstance(node, exp.PercentileCont | exp.PercentileDisc):
        return _column(node.this), _q(node.expression), isinstance(node, exp.PercentileDisc)
    return None


def _column(node: exp.Expression | None) -> str:
    if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
        return str(node.this.this)
    found = node.sql(dialect="duckdb") if node is not None else "nothing"
    raise UnsupportedQueryError(f"a quantile ranks one plain column, found {found!r}")


def _q(node: exp.Expression | None) -> Fraction:
    if isinstance(node, exp.Array):
        raise UnsupportedQueryError(
            "a list of quantiles in one call is not supported; write one QUANTILE_CONT per quantile"
        )
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            q = Fraction(str(node.this))
        except (ValueError, ZeroDivisionError):
            q = Fraction(-1)
        if 0 <= q <= 1:
            return q
        raise QueryError(f"a quantile must lie in [0, 1], got {node.this}")
    if isinstance(node, exp.Neg):
        raise QueryError(f"a quantile must lie in [0, 1], got {node.sql()}")
    found = node.sql(dialect="duckdb") if node is not None else "nothing"
    raise UnsupportedQueryError(f"a quantile must be a numeric literal in [0, 1], found {found!r}")


def _quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="duckdb")


def split_quantiles(sql: str) -> QuantileQuery | None:
    """Split a query with quantile aggregates; ``None`` when it has none.

    Only the shape quantiles need is checked here; the base query is then checked
    like any query.

    Raises:
        QueryError: A quantile outside [0, 1].
        UnsupportedQueryError: A quantile inside an expression, in HAVING or ORDER BY,
            over an expression, or with GROUP BY keys that are not plain columns.
    """
    if isinstance(sql, str) and not _MAYBE_QUANTILE.search(sql):
        return None  # no quantile function named: skip parsing (most queries)
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except SqlglotError:
        return None  # the ordinary path reports the syntax error
    if len(statements) != 1 or not isinstance(statements[0], exp.Select):
        return None
    select = statements[0]
    if not _contains_quantile(select):
        return None
    items, rewritten = _rewrite_items(select)
    _refuse_references(select, {i.name for i in items})
    group_columns = _group_columns(select)
    table = select.args.get("from_")
    dataset = table.this if table is not None else None
    if not isinstance(dataset, exp.Table) or not dataset.name:
        raise QuerySyntaxError("the query needs FROM <dataset>")
    moments: dict[str, tuple[str, str]] = {}
    for column in dict.fromkeys(item.column for item in items):
        names = (f"__quantile_mean {column}", f"__quantile_var {column}")
        x = exp.column(column, quoted=True)
        for name, agg in zip(names, (exp.Avg(this=x), exp.VariancePop(this=x.copy())), strict=True):
            rewritten.append(exp.Alias(this=agg, alias=exp.to_identifier(name, quoted=True)))
        moments[column] = names
    base = select.copy()
    base.set("expressions", rewritten)
    where = select.args.get("where")
    return QuantileQuery(
        base_sql=base.sql(dialect="duckdb"),
        dataset=dataset.name,
        where=where.this.sql(dialect="duckdb") if where is not None else None,
        group_columns=tuple(group_columns),
        items=tuple(items),
        moments=moments,
    )


def _item_name(inner: exp.Expression, alias: str | None, discrete: bool) -> str:
    if alias:
        return alias
    if isinstance(inner, exp.Min | exp.Max):
        return f"{inner.key}({inner.this.sql(dialect='duckdb')})".lower()
    if isinstance(inner, exp.WithinGroup):
        kind = "percentile_disc" if discrete else "percentile_cont"
        return f"{kind}({inner.this.this.sql(dialect='duckdb')})"
    return inner.sql(dialect="duckdb").lower()


def _rewrite_items(select: exp.Select) -> tuple[list[QuantileItem], list[exp.Expression]]:
    """The quantile items, and the select list with each one replaced by its COUNT."""
    items: list[QuantileItem] = []
    rewritten: list[exp.Expression] = []
    for index, item in enumerate(select.expressions):
        alias = item.alias if isinstance(item, exp.Alias) else None
        inner = item.this if isinstance(item, exp.Alias) else item
        found = _quantile_of(inner)
        if found is None:
            if _contains_quantile(item):
                raise UnsupportedQueryError(
                    "a quantile must be a select item of its own, not part of an expression "
                    f"({item.sql(dialect='duckdb')!r})"
                )
            rewritten.append(item)
            continue
        column, q, discrete = found
        name = _item_name(inner, alias, discrete)
        extreme = isinstance(inner, exp.Min | exp.Max)
        items.append(QuantileItem(index, name, column, q, discrete, extreme))
        count = exp.Count(this=exp.column(column, quoted=True))
        rewritten.append(exp.Alias(this=count, alias=exp.to_identifier(name, quoted=True)))
    return items, rewritten


def _refuse_references(select: exp.Select, names: set[str]) -> None:
    for clause in ("having", "order"):
        node = select.args.get(clause)
        if _contains_quantile(node) or (
            node is not None
            and any(c.name in names and not c.table for c in node.find_all(exp.Column))
        ):
            raise UnsupportedQueryError(
                f"{'HAVING' if clause == 'having' else 'ORDER BY'} cannot refer to a quantile "
                "yet; filter or sort the result table instead"
            )


def _group_columns(select: exp.Select) -> list[str]:
    group = select.args.get("group")
    columns: list[str] = []
    for written in group.expressions if group is not None else []:
        key: exp.Expression | None = written
        if isinstance(written, exp.Literal) and not written.is_string:
            position = int(str(written.this)) - 1
            listed = select.expressions
            target = listed[position] if 0 <= position < len(listed) else None
            key = target.this if isinstance(target, exp.Alias) else target
        if not (isinstance(key, exp.Column) and isinstance(key.this, exp.Identifier)):
            raise UnsupportedQueryError(
                "quantiles with GROUP BY need plain categorical columns as keys, found "
                f"{key.sql(dialect='duckdb') if key is not None else 'nothing'!r}"
            )
        columns.append(str(key.this.this))
    return columns


def ranks(item: QuantileItem, n: int) -> tuple[int, ...]:
    """The 0-based ranks whose order statistics ``item`` needs among ``n`` values."""
    if n <= 0:
        return ()
    if item.discrete:
        return (max(math.ceil(item.q * n) - 1, 0),)
    h = (n - 1) * item.q
    return tuple(sorted({math.floor(h), math.ceil(h)}))


def interpolate(item: QuantileItem, n: int, values: dict[int, Fraction]) -> Fraction:
    """The quantile from the order statistics of :func:`ranks` (exact)."""
    if item.discrete:
        return values[ranks(item, n)[0]]
    h = (n - 1) * item.q
    low, high = math.floor(h), math.ceil(h)
    return values[low] + (h - low) * (values[high] - values[low])


def histogram_sql(query: QuantileQuery, asks: Sequence[tuple[str, tuple[float, float]]]) -> str:
    """One round's query: for each ask ``(column, [lo, hi))``, the bucket counts of the
    column over the interval in every group, all in one job.

    Each ask is one grouping set ``(group columns..., WIDTH_BUCKET(column, lo, hi,
    BUCKETS))``; its bucket is output column ``__b<i>`` (NULL in the other sets' rows),
    the row count ``__n``. Empty buckets are left out (``HAVING``; a bucket suppressed by
    a minimum cell size is kept, as NULL). The asks must be distinct.

    >>> q = split_quantiles("SELECT MEDIAN(x), MEDIAN(y) FROM t")
    >>> histogram_sql(q, [("x", (0.0, 1.0)), ("y", (2.0, 4.0))])  # doctest: +ELLIPSIS
    'SELECT WIDTH_BUCKET("x", 0.0, 1.0, 2048) AS "__b0", ... GROUP BY GROUPING SETS ((1), (2)) ...'
    """
    if not asks:
        raise ValueError("a histogram round needs at least one ask")
    keys = [_quoted(c) for c in query.group_columns]
    buckets = [
        f'WIDTH_BUCKET({_quoted(column)}, {lo!r}, {hi!r}, {BUCKETS}) AS "__b{i}"'
        for i, (column, (lo, hi)) in enumerate(asks)
    ]
    select = ", ".join([*keys, *buckets, 'COUNT(*) AS "__n"'])
    where = f" WHERE ({query.where})" if query.where else ""
    groups = [str(i + 1) for i in range(len(keys))]
    sets = [", ".join([*groups, str(len(keys) + i + 1)]) for i in range(len(asks))]
    group_by = sets[0] if len(sets) == 1 else f"GROUPING SETS ({', '.join(f'({s})' for s in sets)})"
    # Quoted identifiers and escaped literals; the coordinator and every node parse
    # and check this text like any analyst's query.
    return (
        f"SELECT {select} FROM {_quoted(query.dataset)}{where} GROUP BY {group_by} "  # noqa: S608
        "HAVING COUNT(*) > 0 OR COUNT(*) IS NULL"
    )


def dyadic_cover(lo: float, hi: float) -> tuple[float, float] | None:
    """The narrowest interval ``[a, a + BUCKETS·w)`` containing ``[lo, hi)`` with ``w`` a
    power of two and ``a`` a multiple of ``w`` (at most four times as wide), whose
    buckets the nodes compute exactly (:func:`~federation.query.groups.dyadic_width`);
    ``None`` when there is none.

    >>> dyadic_cover(30.0, 70.0)  # buckets of 2**-5
    (30.0, 94.0)
    """
    span = hi - lo
    if not (math.isfinite(lo) and math.isfinite(span) and span > 0):
        return None
    mantissa, exponent = math.frexp(span / BUCKETS)
    width = math.ldexp(1.0, exponent if mantissa > 0.5 else exponent - 1)
    for _ in range(3):
        start = math.floor(lo / width) * width
        end = start + BUCKETS * width
        if end >= hi:
            return (start, end) if dyadic_width(start, end, BUCKETS) is not None else None
        width *= 2
    return None


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
