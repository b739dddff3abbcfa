"""Conversions for the node <-> coordinator stream, and vector chunking.

Slots named inside node messages are never trusted: the coordinator fills in
the sender from the stream's identity (``sender=UNKNOWN_SLOT`` here).

This module dispatches the stream's messages and converts registration, heartbeats,
task status and failures, cancellation and encrypted shares itself; the secure
aggregation rounds are converted by :mod:`federation.transport.serde_secagg` and task
assignments by :mod:`federation.transport.serde_task`; masked inputs and encrypted
shares are chunked and reassembled by :mod:`federation.transport.serde_chunks`, and
slot-keyed bytes converted by :mod:`federation.transport.serde_slots`.
"""

from __future__ import annotations

from collections.abc import Iterator

from federation.errors import ProtocolError
from federation.messages import (
    AuditReceipt,
    CoordinatorToNode,
    EncryptedShare,
    Heartbeat,
    NodeToCoordinator,
    Registered,
    Registration,
    SecAggFromNode,
    TaskAssignment,
    TaskCancelled,
    TaskFailure,
    TaskState,
    TaskStatus,
)
from federation.transport.serde_chunks import (
    CHUNK_BYTES,
    CHUNK_ELEMENTS,
    MAX_SHARE_BYTES,
    MAX_VECTOR_LENGTH,
    BytesAssembler,
    ChunkReassembler,
    EncryptedShareChunk,
    MaskedInputChunk,
    VectorAssembler,
    chunk_bytes,
)
from federation.transport.serde_common import (
    error_from_proto,
    error_to_proto,
    policy_from_proto,
    policy_to_proto,
    schema_from_proto,
    schema_to_proto,
)
from federation.transport.serde_dp import budgets_from_proto, budgets_to_proto
from federation.transport.serde_secagg import (
    secagg_coordinator_message_from_proto,
    secagg_coordinator_message_to_proto,
    secagg_node_message_from_proto,
    secagg_node_messages_to_proto,
)
from federation.transport.serde_slots import UNKNOWN_SLOT
from federation.transport.serde_task import MAX_ROUND_TIMEOUT, task_from_proto, task_to_proto
from federation.v1 import node_pb2

__all__ = [
    "CHUNK_BYTES",
    "CHUNK_ELEMENTS",
    "MAX_ROUND_TIMEOUT",
    "MAX_SHARE_BYTES",
    "MAX_VECTOR_LENGTH",
    "UNKNOWN_SLOT",
    "BytesAssembler",
    "ChunkReassembler",
    "EncryptedShareChunk",
    "MaskedInputChunk",
    "VectorAssembler",
    "coordinator_message_from_proto",
    "coordinator_message_to_proto",
    "node_message_from_proto",
    "node_messages_to_proto",
]


# --- node -> coordinator ---------------------------------------------------


def node_messages_to_proto(message: NodeToCoordinator) -> Iterator[node_pb2.NodeMessage]:
    """Domain -> wire; a masked input becomes as many chunks as it needs."""
    if isinstance(message, Registration):
        yield node_pb2.NodeMessage(
            register=node_pb2.Register(
                node_name=message.node_name,
                agent_version=message.agent_version,
                protocol_version=message.protocol_version,
                datasets=[schema_to_proto(s) for s in message.datasets],
                mask_public_key=message.mask_public_key,
                policies={name: policy_to_proto(p) for name, p in message.policies},
                audit_key=message.audit_key,
                audit_size=message.audit_size,
                audit_pending=list(message.audit_pending),
                mask_key_signature=message.mask_key_signature,
            )
        )
    elif isinstance(message, AuditReceipt):
        yield node_pb2.NodeMessage(audit_receipt=node_pb2.AuditReceipt(entry=message.entry))
    elif isinstance(message, Heartbeat):
        yield node_pb2.NodeMessage(
            heartbeat=node_pb2.Heartbeat(
                sent_at=message.sent_at, budgets=budgets_to_proto(message.budgets)
            )
        )
    elif isinstance(message, TaskFailure):
        yield node_pb2.NodeMessage(
            task_failed=node_pb2.TaskFailed(
                job_id=message.job_id, error=error_to_proto(message.error)
            )
        )
    elif isinstance(message, TaskStatus):
        yield node_pb2.NodeMessage(
            task_status=node_pb2.TaskStatus(
                job_id=message.job_id,
                state=message.state.value,
                request_id=message.request_id,
                expires_at=message.expires_at,
            )
        )
    elif isinstance(message, SecAggFromNode):
        yield from secagg_node_messages_to_proto(message)
    elif isinstance(message, EncryptedShare):
        if not message.data:
            raise ProtocolError("an encrypted share cannot be empty")
        for offset, data in chunk_bytes(message.data):
            yield node_pb2.NodeMessage(
                encrypted_share=node_pb2.EncryptedShare(
                    job_id=message.job_id,
                    offset=offset,
                    total_length=len(message.data),
                    data=data,
                )
            )
    else:  # pragma: no cover - exhaustive over NodeToCoordinator
        raise TypeError(f"not a node message: {type(message).__name__}")


def node_message_from_proto(  # noqa: PLR0911 - one return per message kind
    msg: node_pb2.NodeMessage,
) -> NodeToCoordinator | MaskedInputChunk | EncryptedShareChunk:
    """Wire -> domain. Masked inputs arrive as chunks for a VectorAssembler."""
    which = msg.WhichOneof("body")
    if which == "register":
        reg = msg.register
        return Registration(
            node_name=reg.node_name,
            datasets=tuple(schema_from_proto(s) for s in reg.datasets),
            agent_version=reg.agent_version,
            protocol_version=reg.protocol_version,
            mask_public_key=bytes(reg.mask_public_key),
            policies=tuple(
                (name, policy_from_proto(reg.policies[name])) for name in sorted(reg.policies)
            ),
            audit_key=bytes(reg.audit_key),
            audit_size=int(reg.audit_size),
            audit_pending=tuple(bytes(e) for e in reg.audit_pending),
            mask_key_signature=bytes(reg.mask_key_signature),
        )
    if which == "audit_receipt":
        return AuditReceipt(bytes(msg.audit_receipt.entry))
    if which == "heartbeat":
        return Heartbeat(
            sent_at=msg.heartbeat.sent_at, budgets=budgets_from_proto(msg.heartbeat.budgets)
        )
    if which == "task_failed":
        return TaskFailure(
            job_id=msg.task_failed.job_id, error=error_from_proto(msg.task_failed.error)
        )
    if which == "task_status":
        st = msg.task_status
        try:
            state = TaskState(st.state)
        except ValueError:
            raise ProtocolError(f"unknown task state {st.state!r} from a node") from None
        return TaskStatus(
            job_id=st.job_id, state=state, request_id=st.request_id, expires_at=st.expires_at
        )
    if which == "secagg":
        return secagg_node_message_from_proto(msg.secagg)
    if which == "encrypted_share":
        e = msg.encrypted_share
        return EncryptedShareChunk(e.job_id, int(e.offset), int(e.total_length), bytes(e.data))
    raise ProtocolError("empty node message: no body set")


# --- coordinator -> node ---------------------------------------------------


def coordinator_message_to_proto(message: CoordinatorToNode) -> node_pb2.CoordinatorMessage:
    """Domain -> wire."""
    if isinstance(message, Registered):
        return node_pb2.CoordinatorMessage(
            registered=node_pb2.Registered(
                node_name=message.node_name, heartbeat_interval=message.heartbeat_interval
            )
        )
    if isinstance(message, TaskAssignment):
        return node_pb2.CoordinatorMessage(task=task_to_proto(message))
    if isinstance(message, TaskCancelled):
        return node_pb2.CoordinatorMessage(
            cancel=node_pb2.CancelTask(job_id=message.job_id, reason=error_to_proto(message.reason))
        )
    return node_pb2.CoordinatorMessage(secagg=secagg_coordinator_message_to_proto(message))


def coordinator_message_from_proto(
    msg: node_pb2.CoordinatorMessage, *, recipient: int = UNKNOWN_SLOT
) -> CoordinatorToNode:
    """Wire -> domain. ``recipient`` is the node's own slot in the job, if known."""
    which = msg.WhichOneof("body")
    if which == "registered":
        return Registered(
            node_name=msg.registered.node_name,
            heartbeat_interval=msg.registered.heartbeat_interval,
        )
    if which == "task":
        return task_from_proto(msg.task)
    if which == "cancel":
        return TaskCancelled(job_id=msg.cancel.job_id, reason=error_from_proto(msg.cancel.reason))
    if which == "secagg":
        return secagg_coordinator_message_from_proto(msg.secagg, recipient)
    raise ProtocolError("empty coordinator message: no body set")
