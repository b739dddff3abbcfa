"""The query layer: SQL text -> per-node exact aggregate vectors -> the result table.

>>> from federation.schema import Column, ColumnType, DatasetSchema
>>> schema = DatasetSchema("patients", (
...     Column("sex", ColumnType.CATEGORICAL, domain=("F", "M")),
...     Column("age", ColumnType.INTEGER)))
>>> bound = bind_query(parse_query("SELECT sex, AVG(age) FROM patients GROUP BY sex"), schema)
>>> bound.vector_length  # 3 groups (F, M, NULL) x (rows, count, 3-digit sum)
15

Pipeline: :func:`parse_query` (syntax and shape) -> :func:`bind_query` (columns, types,
vector layout, fingerprint) -> :func:`compute_local` at every node (DuckDB: the fastest
exact formulation for its data, falling back to wider ones; exact integers, uint64
vector) -> secure aggregation sums the vectors mod 2**64 ->
:func:`finalize` at the coordinator (exact rationals -> :class:`~federation.table.ResultTable`).

Supported SQL::

    SELECT [group columns,] aggregate [AS name], ...
    FROM dataset [AS alias]
    [WHERE predicate]
    [GROUP BY categorical columns]
    [ORDER BY output columns [ASC|DESC] [NULLS FIRST|LAST]] [LIMIT n] [OFFSET m]

* Aggregates: ``COUNT(*)`` (and ``COUNT(1)``), ``COUNT(col)``, ``SUM``, ``AVG``
  (``MEAN``), ``VAR_SAMP`` (``VARIANCE``), ``VAR_POP``, ``STDDEV_SAMP`` (``STDDEV``),
  ``STDDEV_POP``, each over one plain column. SUM and the moments need an integer or
  double column; categorical and text columns can only be counted.
* GROUP BY: categorical columns only. Their declared domains fix the groups; a NULL
  group is reported when it has rows. Output rows are the groups with at least one
  row, in domain order (NULL last, the first GROUP BY column varying slowest); a query
  without GROUP BY returns exactly one row. ORDER BY/LIMIT/OFFSET apply to those
  aggregated rows only (they reveal nothing more).
* WHERE: comparisons, AND/OR/NOT, [NOT] IN (literals), [NOT] BETWEEN, IS [NOT] NULL,
  [NOT] LIKE/ILIKE 'pattern' on text and categorical columns, + - * / % on numbers,
  ABS, LOWER, UPPER, LENGTH, numeric and string literals. It is rendered for DuckDB
  from the checked AST with quoted identifiers and escaped literals.
* Refused: rows-returning queries (``SELECT *``, bare non-grouped columns), subqueries,
  joins, CTEs, HAVING, DISTINCT, window functions, FILTER, several statements, other
  functions, table functions or qualified names in FROM.

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
* Values outside the accepted range raise :class:`~federation.errors.ValueOutOfRangeError`
  (naming the column and the range), NaN or ±inf raise :class:`~federation.errors.DataError`;
  nothing wraps around silently. Errors never quote a data value.
* Up to :data:`~federation.encoding.MAX_NODES` nodes of at most
  :data:`~federation.encoding.MAX_ROWS_PER_NODE` rows each can be summed exactly.
"""

from federation.query.bind import BoundOrder, BoundQuery, OutputColumn, bind_query
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
    "compute_local",
    "finalize",
    "local_sql",
    "parse_query",
]
