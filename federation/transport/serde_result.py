"""Result tables on the wire: a header, then the rows as column chunks.

:func:`result_chunks` encodes a table's columns in chunks that fit a message;
:class:`ResultAssembler` decodes them, validated (the wire is a trust boundary), into
the table again.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from federation.errors import FederationError, MessageTooLargeError
from federation.table import Cell, ColumnKind, NumericColumn, ResultTable, paused_gc
from federation.transport.options import MAX_MESSAGE_BYTES
from federation.v1 import analyst_pb2

__all__ = [
    "CHUNK_BYTES",
    "ResultAssembler",
    "result_chunks",
    "table_from_chunks",
    "table_header_from_proto",
    "table_header_to_proto",
]

CHUNK_BYTES = MAX_MESSAGE_BYTES // 4
"""Target size of one streamed result chunk (far below the message size limit)."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_BIG_INT_DIGITS = 4000  # below Python's int/str conversion limit
_BIG_INT = re.compile(rf"-?[0-9]{{1,{_MAX_BIG_INT_DIGITS}}}")


def table_header_to_proto(table: ResultTable) -> analyst_pb2.ResultHeader:
    """The column names and kinds of a table, and its row count."""
    return analyst_pb2.ResultHeader(
        columns=[
            analyst_pb2.ResultColumn(name=n, kind=k.value)
            for n, k in zip(table.columns, table.kinds, strict=True)
        ],
        row_count=len(table.rows),
    )


def table_header_from_proto(
    msg: analyst_pb2.ResultHeader,
) -> tuple[tuple[str, ...], tuple[ColumnKind, ...], int]:
    """Wire -> (column names, kinds, row count)."""
    try:
        kinds = tuple(ColumnKind(c.kind) for c in msg.columns)
    except ValueError:
        raise FederationError("result header names an unknown column kind") from None
    return tuple(c.name for c in msg.columns), kinds, msg.row_count


def result_chunks(
    table: ResultTable, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[analyst_pb2.ResultChunk]:
    """A table's rows as column chunks of about ``chunk_bytes`` each, in row order.

    Raises:
        TypeError: A column mixes value types (ints, floats, strings) or holds a
            bool; the result model gives each column one type.
        MessageTooLargeError: A single row does not fit in one message.
    """
    n = len(table.rows)
    if n == 0:
        return
    columns = table.column_values()
    step = max(1, min(n, chunk_bytes // _row_bytes(columns)))
    for start in range(0, n, step):
        yield from _fitting_chunks(columns, start, min(n, start + step))


def _row_bytes(columns: list[Sequence[Cell]]) -> int:
    """A generous estimate of one row's encoded size (the chunks are checked anyway)."""
    total = 0
    for values in columns:
        sample = values[:: max(1, len(values) // 1024)]
        texts = [v for v in sample if isinstance(v, str)]
        total += 11 + (4 * max(map(len, texts)) if texts else 0)
    return total


def _fitting_chunks(
    columns: list[Sequence[Cell]], start: int, stop: int
) -> Iterator[analyst_pb2.ResultChunk]:
    chunk = analyst_pb2.ResultChunk(
        row_count=stop - start, columns=[_column_to_proto(c[start:stop]) for c in columns]
    )
    if chunk.ByteSize() <= MAX_MESSAGE_BYTES - 4096:
        yield chunk
    elif stop - start > 1:
        middle = (start + stop) // 2
        yield from _fitting_chunks(columns, start, middle)
        yield from _fitting_chunks(columns, middle, stop)
    else:
        raise MessageTooLargeError(
            f"a result row takes {chunk.ByteSize()} bytes, more than one message may carry"
        )


def _column_to_proto(values: Sequence[Cell]) -> analyst_pb2.ColumnChunk:
    msg = analyst_pb2.ColumnChunk()
    present = [v for v in values if v is not None]
    if len(present) != len(values):
        nulls = np.fromiter(
            map(operator.is_, values, itertools.repeat(None)), dtype=np.bool_, count=len(values)
        )
        msg.null_bitmap = np.packbits(nulls, bitorder="little").tobytes()
    if not present:
        return msg
    types = set(map(type, present))
    if len(types) > 1 or bool in types:
        raise TypeError(
            f"a result column holds {sorted(t.__name__ for t in types)}: one type per column"
        )
    (kind,) = types
    if kind is int:
        _ints_to_proto(msg, values, present)  # type: ignore[arg-type]
    elif kind is float:
        msg.doubles.extend(present)  # type: ignore[arg-type]
    elif kind is str:
        msg.texts.extend(present)  # type: ignore[arg-type]
    else:
        raise TypeError(f"{kind.__name__} cells are not part of the result model")
    return msg


def _ints_to_proto(
    msg: analyst_pb2.ColumnChunk, values: Sequence[Cell], present: list[int]
) -> None:
    if min(present) >= _INT64_MIN and max(present) <= _INT64_MAX:
        msg.ints.extend(present)
        return
    ints: list[int] = []
    for row, v in enumerate(values):
        if v is None:
            continue
        assert isinstance(v, int)
        if _INT64_MIN <= v <= _INT64_MAX:
            ints.append(v)
        else:
            ints.append(0)
            msg.big_int_rows.append(row)
            msg.big_int_values.append(str(v))
    msg.ints.extend(ints)


class ResultAssembler:
    """Decodes a result's chunks (validated: the wire is a trust boundary) into a table."""

    def __init__(self, header: analyst_pb2.ResultHeader) -> None:
        self.names, self.kinds, self.row_count = table_header_from_proto(header)
        self._parts: list[list[tuple[list[Cell], NumericColumn | None]]] = []
        self._received = 0

    def add(self, chunk: analyst_pb2.ResultChunk) -> None:
        """Decode one chunk."""
        width = len(self.names)
        if len(chunk.columns) != width:
            raise FederationError(
                f"a result chunk has {len(chunk.columns)} columns, the header declares {width}"
            )
        n = chunk.row_count
        if n == 0 or self._received + n > self.row_count:
            raise FederationError(
                f"a result chunk of {n} rows overflows the {self.row_count} rows announced"
            )
        self._parts.append(
            [
                _column_from_proto(c, n, name)
                for c, name in zip(chunk.columns, self.names, strict=True)
            ]
        )
        self._received += n

    def table(self) -> ResultTable:
        """The complete table; FederationError if rows are missing."""
        if self._received != self.row_count:
            raise FederationError(
                f"result announced {self.row_count} rows but {self._received} arrived"
            )
        values: list[list[Cell]] = []
        numeric: list[NumericColumn | None] = []
        for i in range(len(self.names)):
            parts = [p[i] for p in self._parts]
            values.append(
                [v for vals, _ in parts for v in vals] if len(parts) != 1 else parts[0][0]
            )
            numeric.append(_joined([num for _, num in parts], self.row_count))
        return ResultTable.from_columns(self.names, self.kinds, values, tuple(numeric))


def _joined(parts: list[NumericColumn | None], rows: int) -> NumericColumn | None:
    if not parts or any(p is None for p in parts):
        return None
    ps = [p for p in parts if p is not None]
    if len({p.values.dtype for p in ps}) != 1:
        return None
    values = np.concatenate([p.values for p in ps]) if len(ps) > 1 else ps[0].values
    if all(p.nulls is None for p in ps):
        return NumericColumn(values, None)
    nulls = np.concatenate(
        [p.nulls if p.nulls is not None else np.zeros(len(p.values), np.bool_) for p in ps]
    )
    return NumericColumn(values, nulls)


def _column_from_proto(
    msg: analyst_pb2.ColumnChunk, n: int, name: str
) -> tuple[list[Cell], NumericColumn | None]:
    """One column of a chunk: its Python values and, for numbers, their numpy form."""
    nulls = _null_mask(msg.null_bitmap, n, name)
    present = n if nulls is None else n - int(np.count_nonzero(nulls))
    filled = [len(msg.ints), len(msg.doubles), len(msg.texts)]
    if sum(1 for f in filled if f) > 1:
        raise FederationError(f"result column {name!r} mixes value types within one chunk")
    if sum(filled) != present:
        raise FederationError(
            f"result column {name!r} carries {sum(filled)} values for {present} non-NULL rows"
        )
    if (msg.big_int_rows or msg.big_int_values) and not msg.ints:
        raise FederationError(f"result column {name!r} lists big integers outside an int column")
    array: npt.NDArray[Any]
    if msg.ints:
        array = np.array(msg.ints, dtype=np.int64)
    elif msg.doubles:
        array = np.array(msg.doubles, dtype=np.float64)
    elif msg.texts:
        array = np.array(msg.texts, dtype=object)
    else:
        array = np.zeros(0, dtype=np.int64)
    if nulls is None:
        full = array
        values: list[Cell] = array.tolist()
    else:
        full = np.zeros(n, dtype=array.dtype) if array.dtype != object else np.empty(n, object)
        full[~nulls] = array
        cells = np.empty(n, dtype=object)
        cells[~nulls] = array
        values = cells.tolist()
    if msg.big_int_rows or msg.big_int_values:
        _place_big_ints(msg, values, nulls, name)
        return values, None
    if array.dtype == object or not present:
        return values, None
    return values, NumericColumn(full, nulls)


def _null_mask(bitmap: bytes, n: int, name: str) -> npt.NDArray[np.bool_] | None:
    if not bitmap:
        return None
    if len(bitmap) != (n + 7) // 8:
        raise FederationError(
            f"result column {name!r} has a {len(bitmap)}-byte null bitmap; "
            f"{n} rows need {(n + 7) // 8}"
        )
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    if bits[n:].any():
        raise FederationError(f"result column {name!r} has null bitmap padding bits set")
    mask: npt.NDArray[np.bool_] = bits[:n].astype(np.bool_)
    return mask


def _place_big_ints(
    msg: analyst_pb2.ColumnChunk,
    values: list[Cell],
    nulls: npt.NDArray[np.bool_] | None,
    name: str,
) -> None:
    rows, texts = list(msg.big_int_rows), list(msg.big_int_values)
    if len(rows) != len(texts):
        raise FederationError(
            f"result column {name!r} lists {len(rows)} big-integer rows and {len(texts)} values"
        )
    previous = -1
    for row, text in zip(rows, texts, strict=True):
        if row <= previous or row >= len(values):
            raise FederationError(
                f"result column {name!r} lists big-integer rows out of order or out of range"
            )
        if nulls is not None and nulls[row]:
            raise FederationError(f"result column {name!r} gives a value to a NULL row")
        if not _BIG_INT.fullmatch(text):
            raise FederationError(f"result column {name!r} holds a malformed integer {text[:40]!r}")
        values[row] = int(text)
        previous = row


def table_from_chunks(
    header: analyst_pb2.ResultHeader, chunks: Sequence[analyst_pb2.ResultChunk]
) -> ResultTable:
    """A whole table from its header and every chunk."""
    assembler = ResultAssembler(header)
    with paused_gc():
        for chunk in chunks:
            assembler.add(chunk)
    return assembler.table()
