"""Job records on the wire: the record, then its result table's chunks."""

from __future__ import annotations

from collections.abc import Iterator

from federation.errors import FederationError
from federation.messages import JobRecord, JobStatus
from federation.transport.serde_common import error_from_proto, error_to_proto, protocol_from_wire
from federation.transport.serde_result import (
    result_chunks,
    table_from_chunks,
    table_header_to_proto,
)
from federation.v1 import analyst_pb2

__all__ = ["job_record_from_proto", "job_record_to_proto"]


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
        result = table_from_chunks(msg.result_header, chunks)
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
