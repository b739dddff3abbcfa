"""Pure conversions between our dataclasses and the ``federation.v1`` wire types.

Shared and analyst-facing types live here; node-stream messages in
:mod:`federation.transport.serde_node`. Every ``*_from_proto`` function
validates what it reads and raises :class:`~federation.errors.FederationError`
subclasses with clear messages: the wire is a trust boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from federation.errors import ConfigError, FederationError
from federation.messages import (
    DatasetInfo,
    DatasetStatus,
    ErrorInfo,
    JobRecord,
    JobStatus,
    NodeInfo,
    Protocol,
)
from federation.schema import Classification, Column, ColumnType, DatasetSchema
from federation.table import Cell, ColumnKind, ResultTable
from federation.v1 import analyst_pb2, common_pb2

__all__ = [
    "ROWS_PER_CHUNK",
    "dataset_info_from_proto",
    "dataset_info_to_proto",
    "error_from_proto",
    "error_to_proto",
    "job_record_from_proto",
    "job_record_to_proto",
    "node_info_from_proto",
    "node_info_to_proto",
    "protocol_from_wire",
    "rows_from_proto",
    "rows_to_proto",
    "schema_from_proto",
    "schema_to_proto",
    "table_header_from_proto",
    "table_header_to_proto",
]

ROWS_PER_CHUNK = 2000
"""Result rows per streamed message (keeps every message far below the size limit)."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def protocol_from_wire(name: str) -> Protocol:
    """Parse a protocol name; empty means the default (secagg)."""
    if not name:
        return Protocol.SECAGG
    try:
        return Protocol(name.lower())
    except ValueError:
        raise FederationError(
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


def _cell_to_proto(value: Cell) -> analyst_pb2.Cell:
    if value is None:
        return analyst_pb2.Cell(null=True)
    if isinstance(value, bool):
        raise TypeError("boolean cells are not part of the result model")
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return analyst_pb2.Cell(int_value=value)
        return analyst_pb2.Cell(big_int_value=str(value))
    if isinstance(value, float):
        return analyst_pb2.Cell(double_value=value)
    return analyst_pb2.Cell(text_value=value)


def _cell_from_proto(msg: analyst_pb2.Cell) -> Cell:
    which = msg.WhichOneof("value")
    if which == "int_value":
        return int(msg.int_value)
    if which == "big_int_value":
        try:
            return int(msg.big_int_value)
        except ValueError:
            raise FederationError("result cell holds a malformed integer") from None
    if which == "double_value":
        return float(msg.double_value)
    if which == "text_value":
        return str(msg.text_value)
    return None


def rows_to_proto(rows: Iterable[tuple[Cell, ...]]) -> list[analyst_pb2.Row]:
    """Rows -> wire rows."""
    return [analyst_pb2.Row(cells=[_cell_to_proto(v) for v in row]) for row in rows]


def rows_from_proto(rows: Iterable[analyst_pb2.Row], width: int) -> Iterator[tuple[Cell, ...]]:
    """Wire rows -> rows, checking each has ``width`` cells."""
    for row in rows:
        if len(row.cells) != width:
            raise FederationError(
                f"result row has {len(row.cells)} cells, the header declares {width}"
            )
        yield tuple(_cell_from_proto(c) for c in row.cells)


# --- job records ---------------------------------------------------------------


def job_record_to_proto(record: JobRecord) -> analyst_pb2.JobRecord:
    """JobRecord -> wire."""
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
        msg.rows.extend(rows_to_proto(record.result.rows))
    return msg


def job_record_from_proto(msg: analyst_pb2.JobRecord) -> JobRecord:
    """Wire -> JobRecord."""
    try:
        status = JobStatus(msg.status)
    except ValueError:
        raise FederationError(f"job record has an unknown status {msg.status!r}") from None
    result = None
    if msg.HasField("result_header"):
        names, kinds, _ = table_header_from_proto(msg.result_header)
        result = ResultTable(names, kinds, tuple(rows_from_proto(msg.rows, len(names))))
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
