"""The query layer: SQL text -> per-node exact aggregate vectors -> the result table.

>>> from federation.schema import Column, ColumnType, DatasetSchema
>>> schema = DatasetSchema("patients", (
...     Column("sex", ColumnType.CATEGORICAL, domain=("F", "M")),
...     Column("age", ColumnType.INTEGER)))
>>> bound = bind_query(parse_query("SELECT sex, AVG(age) FROM patients GROUP BY sex"), schema)
>>> bound.vector_length  # 3 groups (F, M, NULL) x (rows, count, 3-digit sum)
15
>>> bind_query(parse_query(
...     "SELECT FLOOR(age / 10) AS decade, COUNT(*) FROM patients GROUP BY decade"),
...     DatasetSchema("patients", (Column("age", ColumnType.INTEGER, bounds=(0, 99)),)),
... ).layout.slots  # 10 decades + NULL
11
>>> bind_query(parse_query(
...     "SELECT sex, COUNT(*) FROM patients GROUP BY GROUPING SETS ((sex), ())"), schema,
... ).layout.sets  # the slots of (sex), then the grand total's
((0,), ())

Pipeline: :func:`parse_query` (syntax and shape) -> :func:`bind_query` (columns, types,
vector layout, fingerprint) -> :func:`compute_local` at every node (DuckDB: the fastest
exact formulation for its data, falling back to wider ones; exact integers, uint64
vector) -> secure aggregation sums the vectors mod 2**64 ->
:func:`finalize` at the coordinator (exact rationals -> :class:`~federation.table.ResultTable`).

Supported SQL::

    SELECT [group keys,] aggregate or arithmetic on aggregates [AS name], ...
    FROM dataset [AS alias]
    [WHERE predicate]
    [GROUP BY group keys | [keys,] GROUPING SETS ((keys), ..., ()) | ROLLUP (...) | CUBE (...)]
    [HAVING condition on aggregates, group keys and aliases]
    [ORDER BY output columns [ASC|DESC] [NULLS FIRST|LAST]] [LIMIT n] [OFFSET m]

* Aggregates: ``COUNT(*)`` (and ``COUNT(1)``), ``COUNT(col)``, ``SUM``, ``AVG``
  (``MEAN``), ``VAR_SAMP`` (``VARIANCE``), ``VAR_POP``, ``STDDEV_SAMP`` (``STDDEV``),
  ``STDDEV_POP``, each over one plain column; ``CORR(y, x)``, ``COVAR_SAMP``,
  ``COVAR_POP``, ``REGR_SLOPE``, ``REGR_INTERCEPT``, ``REGR_R2`` over two plain
  columns, using the rows where both are non-NULL. SUM, the moments and the bivariate
  aggregates need integer or double columns; categorical and text columns can only be
  counted. Degenerate cases are NULL as in PostgreSQL: COVAR_SAMP of fewer than two
  pairs, CORR when either variance is zero, REGR_* when x's variance is zero (REGR_R2
  is 1 when only y's is); DuckDB returns NaN for CORR and REGR_SLOPE there.
* Arithmetic on aggregates in the select list: ``+ - * /``, unary minus, parentheses
  and numeric literals (``SUM(x) / COUNT(*)``, ``AVG(x) * 2 + 1``, ``SUM(a) - SUM(b)``),
  evaluated exactly by the coordinator (:mod:`federation.query.outputs`); division by
  zero gives NULL. The result is INTEGER when every operand is (counts, integer SUMs,
  integer literals) and only ``+ - *`` are used, else DOUBLE.
* GROUP BY keys (:mod:`federation.query.groups`): categorical columns;
  ``FLOOR(col / w)`` on a numeric column with declared bounds; ``WIDTH_BUCKET(col, lo,
  hi, n)`` (exact buckets when ``(hi - lo) / n`` is a power of two and ``lo`` a
  multiple of it, else computed in floating point); ``CASE WHEN predicate THEN 'label'
  ... [ELSE 'label'] END``. Keys may be
  written as expressions, select-list positions or select aliases (a dataset column
  of the same name takes precedence, as in DuckDB). The groups of every key are fixed
  by the schema and the SQL, so every node's vector is aligned; a value outside a
  FLOOR bucket's declared bounds makes the node refuse the query
  (:class:`~federation.errors.ValueOutOfRangeError`) rather than fall in an overflow
  bucket. GROUP BY a numeric or text column, or FLOOR without declared bounds, is
  refused with a :class:`~federation.errors.QueryError` naming the column.
* Output rows: every combination of the keys' groups, in group order (NULL last, the
  first key varying slowest), including empty ones (count 0, other aggregates NULL:
  the zero cells of a cross-tabulation and the empty bins of a histogram);
  combinations involving a NULL group or WIDTH_BUCKET's out-of-range buckets 0 and
  n+1 only when they have rows. Write ``HAVING COUNT(*) > 0`` for SQL's
  non-empty groups only. A query without GROUP BY returns exactly one row (or none
  when HAVING rejects it). HAVING, ORDER BY, LIMIT and OFFSET apply to these
  aggregated rows only, at the coordinator (they reveal nothing beyond the aggregates).
* ``GROUP BY GROUPING SETS ((k1), (k2, k3), ())``, as in SQL: the rows of each set in
  set order, each set's as above (its keys' combinations, zero cells included; the
  empty set ``()`` is the one grand-total row), the keys outside a set NULL in its
  rows. ``GROUPING(k, ...)`` (or ``GROUPING_ID``; in the select list and HAVING) is
  the bitmask of the keys not in the row's set (last key lowest bit), telling a
  set's NULL from a NULL group. Keys listed outside the sets are in every set
  (``GROUP BY g, GROUPING SETS ((a), ())``); several GROUPING SETS multiply; ``ROLLUP
  (a, b)`` is ``((a, b), (a), ())`` and ``CUBE (a, b)`` ``((a, b), (a), (b), ())`` (at
  most 12 elements); a set listed twice gives its rows twice. The slots of all sets
  together are bounded like one GROUP BY's (:data:`~federation.query.layout.MAX_GROUP_SLOTS`),
  as are the sets (:data:`~federation.query.layout.MAX_GROUPING_SETS`); each node
  computes all sets in one DuckDB statement. Every row is in one slot of every set, so
  differential privacy spends the budget on each (:mod:`federation.dp.mechanism`). As
  with several queries, sets may be differenced (a suppressed cell from a total and
  the other cells).
* WHERE: comparisons, AND/OR/NOT, [NOT] IN (literals), [NOT] BETWEEN, IS [NOT] NULL,
  [NOT] LIKE/ILIKE 'pattern' on text and categorical columns, + - * / % on numbers,
  ABS, LOWER, UPPER, LENGTH, numeric and string literals. It is rendered for DuckDB
  from the checked AST with quoted identifiers and escaped literals.
* Refused: rows-returning queries (``SELECT *``, bare non-grouped columns), subqueries,
  joins, CTEs, DISTINCT, window functions, FILTER, ``GROUP BY ALL``, ``WITH TOTALS``,
  several statements, other
  functions (also on aggregates, e.g. ``SQRT(COUNT(*))``), table functions or
  qualified names in FROM.

Numeric guarantees (see :mod:`federation.encoding` for the formats):

* Every count is exact. Integer columns (accepted ``|x| <= 2**62 - 1``, or their
  declared bounds) give exact ``SUM`` (a Python ``int``, beyond 2**53 too), and every
  other statistic is the exact rational value correctly rounded to a float.
* Double columns are accepted for ``|x| < 2**41`` (or their declared bounds, when
  tighter) and encoded as ``X = round(x·2**52)``. All sums are exact over the encoded
  values, so the only errors are the encoding of values with bits below 2**-52 and
  one final rounding. For ``n`` non-NULL values with exact pooled statistics ``S``
  (sum), ``m`` (mean), ``v`` (variance) and ``s`` (standard deviation), and
  ``δ = 2**-53``, each result ``r`` satisfies ``|r - exact| <= 2**-53·|exact| + E`` with

  - SUM: ``E = n·δ``; AVG: ``E = δ``;
  - VAR_POP: ``E = 2·s_pop·δ + δ²``; VAR_SAMP: ``E = n/(n-1)·(2·s_pop·δ + δ²)``;
  - STDDEV_POP: ``E = δ``; STDDEV_SAMP: ``E = sqrt(n/(n-1))·δ``.

  When every value is a multiple of 2**-52 (in particular every double with
  ``|x| >= 1``), ``E = 0``: the result is the pooled exact value correctly rounded,
  whatever the offset or spread of the data (no cancellation).
* The bivariate aggregates are computed from exact pair sums ``n, ΣX, ΣY, ΣX², ΣY²,
  ΣXY`` (the cross product summed exactly from 31-bit limbs) and likewise rounded once:
  on values that are multiples of 2**-52 each is the exact pooled value correctly
  rounded (CORR: the correctly rounded square root of the exact ``r²``, with its
  sign). Arithmetic on aggregates and HAVING use the exact values; STDDEV_* and CORR
  enter as their correctly rounded doubles.
* Values outside the accepted range raise :class:`~federation.errors.ValueOutOfRangeError`
  (naming the column and the range), NaN or ±inf raise :class:`~federation.errors.DataError`;
  nothing wraps around silently. Errors never quote a data value.
* Up to :data:`~federation.encoding.MAX_NODES` nodes of at most
  :data:`~federation.encoding.MAX_ROWS_PER_NODE` rows each can be summed exactly.
"""

from federation.query.bind import BoundOrder, BoundQuery, OutputColumn, bind_query
from federation.query.cache import bind_sql, parse_sql
from federation.query.finalize import finalize
from federation.query.layout import FieldKind, VectorField, VectorLayout
from federation.query.local import compute_local, local_sql
from federation.query.parse import (
    Aggregate,
    AggregateFunction,
    GroupColumn,
    OrderItem,
    ParsedQuery,
    SelectItem,
    parse_query,
)

__all__ = [
    "Aggregate",
    "AggregateFunction",
    "BoundOrder",
    "BoundQuery",
    "FieldKind",
    "GroupColumn",
    "OrderItem",
    "OutputColumn",
    "ParsedQuery",
    "SelectItem",
    "VectorField",
    "VectorLayout",
    "bind_query",
    "bind_sql",
    "compute_local",
    "finalize",
    "local_sql",
    "parse_query",
    "parse_sql",
]
