"""How a node computes a query of several grouping sets in one DuckDB statement.

The vector holds every grouping set's slots (:mod:`federation.query.layout`). The
node computes each *distinct* set once (a set listed twice is copied into both of its
slot ranges) in one statement, in one of two formulations that give the same integers
(:func:`choose_mode`):

* :attr:`SetsMode.GROUPING_SETS`, the reference: DuckDB's ``GROUP BY GROUPING SETS``.
  ``GROUPING(keys)`` bitmasks (:data:`GROUPING_BITS` keys each) tell which set a row
  belongs to. DuckDB computes the projections once and fans every row out to one hash
  aggregation per set, which suits heavy aggregates over few sets.
* :attr:`SetsMode.BUCKET_UNION`, when every set has a ``WIDTH_BUCKET(x, lo, hi, n)``
  key and the query only counts rows (the histograms of quantile refinement): a
  ``UNION ALL`` that partitions each set's rows by ``x``. One branch per distinct list
  of other keys counts, for every set, ``x < lo`` (bucket 0), ``x >= hi`` (bucket n+1)
  and ``x IS NULL`` with ``count_if`` in one pass (grouped by those other keys only,
  without them a plain aggregate: no hashing), unnested into one row per set and
  bucket; it also counts the checks (value ranges, key bounds), once. One branch per
  chain of disjoint intervals of a column counts the rows with ``lo <= x < hi`` by set
  and inner bucket (a CASE picks each row's interval; the bucket is
  :func:`~federation.query.width_buckets.bucket_sql`, as in
  :func:`~federation.query.render_group_keys.group_sql`). The rows carry the other keys, the
  set's number and the bucket (:class:`RowReader`).

Measured (DuckDB, one thread, 10**6 rows of 11 double columns, ``COUNT(*)`` per set):
11 sets over each column's whole range 208 ms (UNION) against 322 ms (GROUPING SETS);
33 sets three buckets wide 191 against 626 ms; 66 narrow sets 210 against 1232 ms. A
ROLLUP of three categorical keys with limb sums takes 73 ms with GROUPING SETS against
225 ms as a plain UNION ALL, hence the rule.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from federation.errors import DataError
from federation.query.bind import BoundQuery
from federation.query.groups import WidthBucket, bucket_sql, double_literal, dyadic_width
from federation.query.layout import FieldKind

__all__ = [
    "GROUPING_BITS",
    "RowReader",
    "SetsMode",
    "choose_mode",
    "leading_columns",
    "outer_sql",
    "unique_sets",
    "value_alias",
]

GROUPING_BITS = 32
"""Keys per ``GROUPING(...)`` column of a GROUPING SETS statement (DuckDB takes 64)."""


class SetsMode(enum.Enum):
    """How the local query groups its rows."""

    SINGLE = "single"
    """One grouping set (an ordinary GROUP BY, or none)."""
    GROUPING_SETS = "grouping_sets"
    """DuckDB's ``GROUP BY GROUPING SETS``."""
    BUCKET_UNION = "bucket_union"
    """A ``UNION ALL`` of branches split at each set's bucket interval."""


def unique_sets(bound: BoundQuery) -> list[tuple[int, ...]]:
    """The distinct grouping sets of the query, in first-use order."""
    return list(dict.fromkeys(bound.layout.sets))


def _bucket_key(bound: BoundQuery, members: tuple[int, ...]) -> int | None:
    """The first ``WIDTH_BUCKET`` key of a set, or None."""
    return next(
        (k for k in members if isinstance(bound.group_keys[k].expression, WidthBucket)), None
    )


def choose_mode(bound: BoundQuery) -> SetsMode:
    """The formulation for the query's grouping sets."""
    sets = unique_sets(bound)
    if len(sets) <= 1:
        return SetsMode.SINGLE
    counts_only = [f.kind for f in bound.layout.fields] == [FieldKind.ROWS]
    if counts_only and all(_bucket_key(bound, s) is not None for s in sets):
        return SetsMode.BUCKET_UNION
    return SetsMode.GROUPING_SETS


def value_alias(bound: BoundQuery, key: int) -> str:
    """The alias of a bucket key's value ``CAST(x AS DOUBLE)`` in the projections (one
    per column)."""
    column = bound.group_keys[key].expression
    assert isinstance(column, WidthBucket)
    first = next(
        k
        for k, other in enumerate(bound.group_keys)
        if isinstance(other.expression, WidthBucket)
        and other.expression.column.lower() == column.column.lower()
    )
    return f"#w{first}"


def _context(bound: BoundQuery) -> list[int]:
    """The keys a :attr:`SetsMode.BUCKET_UNION` row carries: every set's keys but its
    bucket key."""
    found: set[int] = set()
    for members in unique_sets(bound):
        found.update(k for k in members if k != _bucket_key(bound, members))
    return sorted(found)


def leading_columns(bound: BoundQuery, mode: SetsMode) -> int:
    """How many columns of the local query's rows precede the aggregates: the group
    keys and what tells the set of each row (:class:`RowReader`)."""
    keys = len(bound.group_keys)
    if mode is SetsMode.GROUPING_SETS:
        return keys + -(-keys // GROUPING_BITS)
    if mode is SetsMode.BUCKET_UNION:
        return len(_context(bound)) + 2
    return keys


class RowReader:
    """Reads the grouping set and the group of each row of the local query.

    A row holds, before the aggregates: one column per group key (NULL for keys outside
    its set), then nothing (:attr:`SetsMode.SINGLE`) or ``GROUPING`` bitmasks
    (:attr:`SetsMode.GROUPING_SETS`: DuckDB's ``GROUPING(k_1, ..., k_n)`` has bit ``n - i``
    set when ``k_i`` is not in the row's set); or (:attr:`SetsMode.BUCKET_UNION`) a
    column per key of :func:`_context`, the set's number and its bucket key's value.
    """

    def __init__(self, bound: BoundQuery, mode: SetsMode) -> None:
        layout = bound.layout
        keys = len(bound.group_keys)
        lead = leading_columns(bound, mode)
        self._tag = slice(keys, lead)
        # Per tag: the layout sets, and the row's column of each key of the set.
        self._sets: dict[tuple[object, ...], tuple[list[int], list[int]]] = {}
        if mode is SetsMode.BUCKET_UNION:
            context = {k: i for i, k in enumerate(_context(bound))}
            self._tag = slice(len(context), len(context) + 1)
            number = {s: i for i, s in enumerate(unique_sets(bound))}
            for index, members in enumerate(layout.sets):
                bucket = _bucket_key(bound, members)
                columns = [len(context) + 1 if k == bucket else context[k] for k in members]
                found = self._sets.setdefault((number[members],), ([], columns))
                found[0].append(index)
            return
        for index, members in enumerate(layout.sets):
            masks = []
            if mode is SetsMode.GROUPING_SETS:
                for start in range(0, keys, GROUPING_BITS):
                    chunk = range(start, min(start + GROUPING_BITS, keys))
                    masks.append(sum((k not in members) << (chunk.stop - 1 - k) for k in chunk))
            found = self._sets.setdefault(tuple(masks), ([], list(members)))
            found[0].append(index)

    def partition(
        self, columns: list[tuple[object, ...]]
    ) -> list[tuple[list[int], list[int], list[int]]]:
        """The rows (given as columns) by grouping set: per set found, the layout sets
        its rows fill (several when a set is listed twice), the row indices, and the
        column of each key of the set, in set order.

        Raises:
            DataError: A row names no grouping set of the query.
        """
        tag_columns = columns[self._tag]
        if not tag_columns:
            sets, keys = self._sets[()]
            return [(sets, list(range(len(columns[0]) if columns else 0)), keys)]
        by_tag: dict[tuple[object, ...], list[int]] = {}
        for i, tag in enumerate(zip(*tag_columns, strict=True)):
            by_tag.setdefault(tag, []).append(i)
        out = []
        for tag, rows in by_tag.items():
            found = self._sets.get(tag)
            if found is None:
                raise DataError("the local query returned a row of no grouping set of the query")
            out.append((found[0], rows, found[1]))
        return out


Staged = Callable[[list[str]], str]
"""Gives the projected relation (every stage, the WHERE clause) carrying the aliases
that the given SQL texts read."""


def outer_sql(
    bound: BoundQuery,
    mode: SetsMode,
    aggregates: list[str],
    checks: set[int],
    staged: Staged,
) -> str:
    """The statement over the projected relation: group keys (aliases ``#g<k>``), what
    tells each row's set, then ``aggregates`` (``checks``: the indices of the check
    counts among them)."""
    keys = [f'"#g{k}"' for k in range(len(bound.group_keys))]
    sets = unique_sets(bound)
    if mode is SetsMode.SINGLE:
        sql = f"SELECT {', '.join([*keys, *aggregates])} FROM ({staged([*keys, *aggregates])})"  # noqa: S608
        return sql + (f" GROUP BY {', '.join(keys[k] for k in sets[0])}" if sets[0] else "")
    if mode is SetsMode.GROUPING_SETS:
        grouping = [
            f"GROUPING({', '.join(keys[i : i + GROUPING_BITS])})"
            for i in range(0, len(keys), GROUPING_BITS)
        ]
        items = [*keys, *grouping, *aggregates]
        specs = ", ".join(f"({', '.join(keys[k] for k in s)})" for s in sets)
        return f"SELECT {', '.join(items)} FROM ({staged(items)}) GROUP BY GROUPING SETS ({specs})"  # noqa: S608
    return _bucket_union(bound, keys, aggregates, checks, staged)


def _bucket_union(
    bound: BoundQuery, keys: list[str], aggregates: list[str], checks: set[int], staged: Staged
) -> str:
    """:attr:`SetsMode.BUCKET_UNION`: the aggregates are ``count(*)`` and the checks.

    Per distinct list of other keys, one branch counts every set's rows below, above
    and NULL (``count_if``, unnested into one row per set and bucket) and the checks;
    per column, one branch per chain of disjoint intervals counts the rows inside them
    by set and bucket, each row's interval parameters picked by a CASE.
    """
    assert all(a == "count(*)" for j, a in enumerate(aggregates) if j not in checks)
    sets = unique_sets(bound)
    context = _context(bound)
    buckets = [_Bucket.of(bound, members) for members in sets]
    by_others: dict[tuple[int, ...], list[int]] = {}
    for number, members in enumerate(sets):
        others = tuple(k for k in members if k != buckets[number].key)
        by_others.setdefault(others, []).append(number)
    branches: list[str] = []
    for others, numbers in by_others.items():
        tags, values, counts = [], [], []
        for number in numbers:
            b = buckets[number]
            tags += [str(number)] * 3
            values += ["0", str(b.count + 1), "NULL"]
            counts += [f"count_if({b.x} < {b.lo})", f"count_if({b.x} >= {b.hi})"]
            counts.append(f"count_if({b.x} IS NULL)")
        items = [
            *(keys[k] if k in others else "NULL" for k in context),
            f"unnest([{', '.join(tags)}])",
            f"unnest([{', '.join(values)}])",
            *(
                (f"unnest([{a}])" if not branches else "NULL")  # the checks, once
                if j in checks
                else f"unnest([{', '.join(counts)}])"
                for j, a in enumerate(aggregates)
            ),
        ]
        sql = f"SELECT {', '.join(items)} FROM ({staged(items)})"  # noqa: S608
        if others:
            sql += f" GROUP BY {', '.join(keys[k] for k in others)}"
        branches.append(sql)
        chains: dict[tuple[str, int, bool], list[list[int]]] = {}
        for number in sorted(numbers, key=lambda n: (buckets[n].low, buckets[n].high)):
            b = buckets[number]
            runs = chains.setdefault((b.x, b.count, b.exact is not None), [])
            if runs and buckets[runs[-1][-1]].high <= b.low:
                runs[-1].append(number)
            else:
                runs.append([number])
        counted = [a if j not in checks else "NULL" for j, a in enumerate(aggregates)]
        for runs in chains.values():
            for run in runs:
                inside = [buckets[n] for n in run]
                shown = [keys[c] if c in others else "NULL" for c in context]
                branches.append(_inside(inside, run, shown, counted, staged))
    return " UNION ALL ".join(branches)


@dataclass(frozen=True)
class _Bucket:
    """A set's bucket key: its index, value alias, bounds and bucket parameters."""

    key: int
    x: str
    count: int
    low: float
    high: float
    lo: str
    hi: str
    exact: tuple[str, str] | None

    @classmethod
    def of(cls, bound: BoundQuery, members: tuple[int, ...]) -> _Bucket:
        index = _bucket_key(bound, members)
        assert index is not None  # choose_mode
        e = bound.group_keys[index].expression
        assert isinstance(e, WidthBucket)
        low, high = float(e.low), float(e.high)
        width = dyadic_width(low, high, e.count)
        exact = None if width is None else (double_literal(width), double_literal(1 / width))
        x = f'"{value_alias(bound, index)}"'
        return cls(index, x, e.count, low, high, double_literal(low), double_literal(high), exact)


def _inside(
    run: list[_Bucket], numbers: list[int], shown: list[str], counted: list[str], staged: Staged
) -> str:
    """The rows inside a chain of disjoint intervals of one column (same bucket count
    and kind), by set and bucket: a CASE picks each row's set and interval parameters
    (the first interval whose upper bound is above the value), then one bucket
    expression (:func:`~federation.query.width_buckets.bucket_sql`) applies them. ``shown``:
    the context key columns (NULL for keys not grouped by); ``counted``: the aggregates."""
    x = run[0].x
    grouped = [k for k in shown if k != "NULL"]
    condition = " OR ".join(f"({x} >= {b.lo} AND {x} < {b.hi})" for b in run)
    picks = {
        "#set": [str(n) for n in numbers],
        "#low": [b.lo for b in run],
        "#high": [b.hi for b in run],
    }
    exact = run[0].exact
    if exact is not None:
        picks["#width"] = [b.exact[0] for b in run if b.exact is not None]
        picks["#inverse"] = [b.exact[1] for b in run if b.exact is not None]
    columns = [
        f'{_case(x, [b.hi for b in run], values)} AS "{name}"' for name, values in picks.items()
    ]
    source = staged([*grouped, x, condition])
    inner = f"SELECT {', '.join([*grouped, x, *columns])} FROM ({source}) WHERE {condition}"  # noqa: S608
    parameters = None if exact is None else ('"#width"', '"#inverse"')
    bucket = bucket_sql(x, '"#low"', '"#high"', run[0].count, parameters)
    items = [*shown, '"#set"', bucket, *counted]
    positions = [str(i + 1) for i, k in enumerate(shown) if k != "NULL"]
    positions += [str(len(shown) + 1), str(len(shown) + 2)]
    return f"SELECT {', '.join(items)} FROM ({inner}) GROUP BY {', '.join(positions)}"  # noqa: S608


def _case(x: str, highs: list[str], values: list[str]) -> str:
    """``values[i]`` of the first interval (sorted, disjoint) whose upper bound is above
    ``x``."""
    if len(set(values)) == 1:
        return values[0]
    pairs = zip(highs[:-1], values[:-1], strict=True)
    whens = " ".join(f"WHEN {x} < {hi} THEN {v}" for hi, v in pairs)
    return f"CASE {whens} ELSE {values[-1]} END"
