"""Pure conversions between our dataclasses and the ``federation.v1`` wire types.

Shared and analyst-facing types are converted here and by the modules named below;
node-stream messages in :mod:`federation.transport.serde_node`. Every ``*_from_proto`` function
validates what it reads and raises :class:`~federation.errors.FederationError`
subclasses with clear messages: the wire is a trust boundary.

This module converts the analyst's directory (datasets and nodes); protocol names,
schemas, policies and errors are converted by :mod:`federation.transport.serde_common`,
result tables by :mod:`federation.transport.serde_result` and job records by
:mod:`federation.transport.serde_jobs`.
"""

from __future__ import annotations

from federation.messages import DatasetInfo, DatasetStatus, NodeInfo
from federation.policy import DEFAULT_POLICY
from federation.transport.serde_common import (
    error_from_proto,
    error_to_proto,
    policy_from_proto,
    policy_to_proto,
    protocol_from_wire,
    schema_from_proto,
    schema_to_proto,
)
from federation.transport.serde_dp import budgets_from_proto, budgets_to_proto
from federation.transport.serde_jobs import job_record_from_proto, job_record_to_proto
from federation.transport.serde_result import (
    CHUNK_BYTES,
    ResultAssembler,
    result_chunks,
    table_header_from_proto,
    table_header_to_proto,
)
from federation.v1 import analyst_pb2

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
