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
   (:func:`~federation.query.width_buckets.dyadic_width`): the rank's bucket is the next
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

This module splits the query (:func:`split_quantiles`); the items, their ranks and the
interpolation are in :mod:`federation.query.quantile_items`, each round's query and the
dyadic intervals in :mod:`federation.query.quantile_histogram`, and the search of one
rank in :mod:`federation.query.rank_search`.
"""

from __future__ import annotations

import re
from fractions import Fraction

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from federation.errors import QueryError, QuerySyntaxError, UnsupportedQueryError
from federation.query.quantile_histogram import BUCKETS, dyadic_cover, histogram_sql
from federation.query.quantile_items import QuantileItem, QuantileQuery, interpolate, ranks
from federation.query.rank_search import RESOLUTION, RankSearch

__all__ = [
    "BUCKETS",
    "RESOLUTION",
    "QuantileItem",
    "QuantileQuery",
    "RankSearch",
    "dyadic_cover",
    "histogram_sql",
    "interpolate",
    "ranks",
    "split_quantiles",
]

_FUNCTIONS = (exp.Median, exp.PercentileCont, exp.PercentileDisc, exp.Min, exp.Max)
_MAYBE_QUANTILE = re.compile(r"median|quantile|percentile|min|max", re.IGNORECASE)
"""Every spelling of a quantile function contains one of these (a cheap pre-filter)."""


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
