"""Pure conversions between our dataclasses and the ``federation.v1`` wire types.

Shared and analyst-facing types live here; node-stream messages in
:mod:`federation.transport.serde_node`. Every ``*_from_proto`` function
validates what it reads and raises :class:`~federation.errors.FederationError`
subclasses with clear messages: the wire is a trust boundary.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from federation.errors import ConfigError, FederationError, MessageTooLargeError
from federation.messages import (
    DatasetInfo,
    DatasetStatus,
    ErrorInfo,
    JobRecord,
    JobStatus,
    NodeInfo,
    Protocol,
)
from federation.policy import DEFAULT_POLICY, ApprovalMode, Policy
from federation.schema import Classification, Column, ColumnType, DatasetSchema
from federation.table import Cell, ColumnKind, NumericColumn, ResultTable, paused_gc
from federation.transport.options import MAX_MESSAGE_BYTES
from federation.transport.serde_dp import budgets_from_proto, budgets_to_proto
from federation.v1 import analyst_pb2, common_pb2

__all__ = [
    "CHUNK_BYTES",
    "ResultAssembler",
    "dataset_info_from_proto",
    "dataset_info_to_proto",
    "error_from_proto",
    "error_to_proto",
    "job_record_from_proto",
    "job_record_to_proto",
    "node_info_from_proto",
    "node_info_to_proto",
    "policy_from_proto",
    "policy_to_proto",
    "protocol_from_wire",
    "result_chunks",
    "schema_from_proto",
    "schema_to_proto",
    "table_header_from_proto",
    "table_header_to_proto",
]

CHUNK_BYTES = MAX_MESSAGE_BYTES // 4
"""Target size of one streamed result chunk (far below the message size limit)."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_BIG_INT_DIGITS = 4000  # below Python's int/str conversion limit
_BIG_INT = re.compile(rf"-?[0-9]{{1,{_MAX_BIG_INT_DIGITS}}}")


def protocol_from_wire(name: str) -> Protocol:
    """Parse a protocol name; empty means the default (secagg).

    Raises:
        ConfigError: Not a protocol this release knows.
    """
    if not name:
        return Protocol.SECAGG
    try:
        return Protocol(name.lower())
    except ValueError:
        raise ConfigError(
            f"unknown protocol {name!r}; available: {[p.value for p in Protocol]}"
        ) from None


# --- schema ----------------------------------------------------------------


def schema_to_proto(schema: DatasetSchema) -> common_pb2.DatasetSchema:
    """DatasetSchema -> wire."""
    return common_pb2.DatasetSchema(
        name=schema.name,
        description=schema.description,
        columns=[
            common_pb2.Column(
                name=c.name,
                type=c.type.value,
                domain=list(c.domain),
                has_bounds=c.bounds is not None,
                lower=c.bounds[0] if c.bounds else 0.0,
                upper=c.bounds[1] if c.bounds else 0.0,
                classification=c.classification.value,
                description=c.description,
            )
            for c in schema.columns
        ],
    )


def schema_from_proto(msg: common_pb2.DatasetSchema) -> DatasetSchema:
    """Wire -> DatasetSchema (validated; ConfigError on nonsense)."""
    columns = []
    for c in msg.columns:
        try:
            ctype = ColumnType(c.type)
            classification = Classification(c.classification or "internal")
        except ValueError:
            raise ConfigError(
                f"dataset {msg.name!r}: column {c.name!r} has an unknown type or classification"
            ) from None
        columns.append(
            Column(
                name=c.name,
                type=ctype,
                domain=tuple(c.domain),
                bounds=(c.lower, c.upper) if c.has_bounds else None,
                classification=classification,
                description=c.description,
            )
        )
    return DatasetSchema(name=msg.name, columns=tuple(columns), description=msg.description)


# --- policy ----------------------------------------------------------------


def policy_to_proto(policy: Policy) -> common_pb2.DatasetPolicy:
    """Policy -> wire."""
    return common_pb2.DatasetPolicy(
        min_cell_size=policy.min_cell_size,
        min_query_set_size=policy.min_query_set_size,
        allowed_statistics=list(policy.allowed_statistics),
        approval=policy.approval.value,
        approval_timeout=policy.approval_timeout,
        dp_epsilon=policy.dp_epsilon,
        dp_delta=policy.dp_delta,
    )


def policy_from_proto(msg: common_pb2.DatasetPolicy) -> Policy:
    """Wire -> Policy (validated; ConfigError on nonsense)."""
    try:
        approval = ApprovalMode(msg.approval or ApprovalMode.AUTOMATIC.value)
    except ValueError:
        raise ConfigError(f"dataset policy: unknown approval mode {msg.approval!r}") from None
    # Not Policy.from_dict: a combined directory policy may allow no statistic at all
    # (nodes allowing disjoint sets), which only a config file may not declare.
    return Policy(
        min_cell_size=max(int(msg.min_cell_size), 1),
        min_query_set_size=max(int(msg.min_query_set_size), 1),
        allowed_statistics=tuple(msg.allowed_statistics),
        approval=approval,
        approval_timeout=msg.approval_timeout or DEFAULT_POLICY.approval_timeout,
        dp_epsilon=msg.dp_epsilon,
        dp_delta=msg.dp_delta,
    )


# --- errors ----------------------------------------------------------------


def error_to_proto(error: ErrorInfo) -> common_pb2.Error:
    """ErrorInfo -> wire."""
    return common_pb2.Error(code=error.code, message=error.message)


def error_from_proto(msg: common_pb2.Error) -> ErrorInfo:
    """Wire -> ErrorInfo."""
    return ErrorInfo(code=msg.code or FederationError.code, message=msg.message)


# --- directory ---------------------------------------------------------------


def dataset_info_to_proto(info: DatasetInfo) -> analyst_pb2.DatasetInfo:
    """DatasetInfo -> wire."""
    return analyst_pb2.DatasetInfo(
        schema=schema_to_proto(info.schema),
        node_count=info.node_count,
        online_node_count=info.online_node_count,
        status=info.status.value,
        detail=info.detail,
        policy=policy_to_proto(info.policy),
        budgets=budgets_to_proto(info.budgets),
    )


def dataset_info_from_proto(msg: analyst_pb2.DatasetInfo) -> DatasetInfo:
    """Wire -> DatasetInfo."""
    try:
        status = DatasetStatus(msg.status or "ok")
    except ValueError:
        status = DatasetStatus.CONFLICT
    return DatasetInfo(
        schema=schema_from_proto(msg.schema),
        node_count=msg.node_count,
        online_node_count=msg.online_node_count,
        status=status,
        detail=msg.detail,
        policy=policy_from_proto(msg.policy) if msg.HasField("policy") else DEFAULT_POLICY,
        budgets=budgets_from_proto(msg.budgets),
    )


def node_info_to_proto(info: NodeInfo) -> analyst_pb2.NodeInfo:
    """NodeInfo -> wire."""
    return analyst_pb2.NodeInfo(
        name=info.name, online=info.online, last_seen=info.last_seen, datasets=info.datasets
    )


def node_info_from_proto(msg: analyst_pb2.NodeInfo) -> NodeInfo:
    """Wire -> NodeInfo."""
    return NodeInfo(
        name=msg.name, online=msg.online, last_seen=msg.last_seen, datasets=tuple(msg.datasets)
    )


# --- result tables -----------------------------------------------------------


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


def _table_from_chunks(
    header: analyst_pb2.ResultHeader, chunks: Sequence[analyst_pb2.ResultChunk]
) -> ResultTable:
    assembler = ResultAssembler(header)
    with paused_gc():
        for chunk in chunks:
            assembler.add(chunk)
    return assembler.table()


# --- job records ---------------------------------------------------------------


def job_record_to_proto(record: JobRecord) -> Iterator[analyst_pb2.JobRecordPart]:
    """JobRecord -> wire: the record, then its result table's chunks."""
    msg = analyst_pb2.JobRecord(
        job_id=record.job_id,
        sql=record.sql,
        protocol=record.protocol.value,
        dataset=record.dataset,
        status=record.status.value,
        submitted_at=record.submitted_at,
        finished_at=record.finished_at or 0.0,
        selected_nodes=record.selected_nodes,
        contributing_nodes=record.contributing_nodes,
    )
    if record.error is not None:
        msg.error.CopyFrom(error_to_proto(record.error))
    if record.result is not None:
        msg.result_header.CopyFrom(table_header_to_proto(record.result))
    yield analyst_pb2.JobRecordPart(record=msg)
    if record.result is not None:
        for chunk in result_chunks(record.result):
            yield analyst_pb2.JobRecordPart(result_chunk=chunk)


def job_record_from_proto(parts: Iterator[analyst_pb2.JobRecordPart]) -> JobRecord:
    """Wire -> JobRecord: the record part, then its result table's chunks."""
    first = next(parts, None)
    if first is None or first.WhichOneof("part") != "record":
        raise FederationError("a job record stream must start with the record")
    msg = first.record
    chunks = []
    for part in parts:
        if part.WhichOneof("part") != "result_chunk":
            raise FederationError("a job record stream holds one record, then result chunks")
        chunks.append(part.result_chunk)
    if chunks and not msg.HasField("result_header"):
        raise FederationError("result chunks arrived for a job record without a result")
    try:
        status = JobStatus(msg.status)
    except ValueError:
        raise FederationError(f"job record has an unknown status {msg.status!r}") from None
    result = None
    if msg.HasField("result_header"):
        result = _table_from_chunks(msg.result_header, chunks)
    return JobRecord(
        job_id=msg.job_id,
        sql=msg.sql,
        protocol=protocol_from_wire(msg.protocol),
        dataset=msg.dataset,
        status=status,
        submitted_at=msg.submitted_at,
        finished_at=msg.finished_at or None,
        selected_nodes=msg.selected_nodes,
        contributing_nodes=msg.contributing_nodes,
        error=error_from_proto(msg.error) if msg.HasField("error") else None,
        result=result,
    )
