"""A task assignment on the node stream: the job's query and its protocol setup.

A task carries exactly one setup, secure aggregation's (:class:`SecAggSetup`) or a
homomorphic scheme's (:class:`HESetup`), and a round timeout a node can honour.
"""

from __future__ import annotations

import math

from federation.errors import ProtocolError
from federation.messages import HESetup, SecAggSetup, TaskAssignment
from federation.transport.serde_audit import proof_from_proto, proof_to_proto
from federation.transport.serde_common import protocol_from_wire
from federation.transport.serde_dp import dp_params_from_proto, dp_params_to_proto
from federation.transport.serde_slots import slot_map
from federation.v1 import node_pb2

__all__ = ["MAX_ROUND_TIMEOUT", "task_from_proto", "task_to_proto"]

MAX_ROUND_TIMEOUT = 86_400.0
"""Longest round timeout (seconds) a node accepts in a task: a day."""


def task_to_proto(message: TaskAssignment) -> node_pb2.Task:
    """TaskAssignment -> wire."""
    task = node_pb2.Task(
        job_id=message.job_id,
        dataset=message.dataset,
        sql=message.sql,
        fingerprint=message.fingerprint,
        protocol=message.protocol.value,
        round_timeout=message.round_timeout,
        min_cell_size=message.min_cell_size,
    )
    if message.dp is not None:
        task.dp.CopyFrom(dp_params_to_proto(message.dp))
    if message.audit is not None:
        task.audit.CopyFrom(proof_to_proto(message.audit))
    if message.secagg is not None:
        s = message.secagg
        task.secagg.CopyFrom(
            node_pb2.SecAggSetup(
                slots=s.slots,
                slot=s.slot,
                vector_length=s.vector_length,
                threshold=s.threshold,
                neighbours=[node_pb2.NeighbourList(slots=list(n)) for n in s.neighbours],
                signed=s.signed,
                certificates=list(s.certificates),
            )
        )
    if message.he is not None:
        h = message.he
        task.he.CopyFrom(
            node_pb2.HESetup(
                scheme=message.protocol.value,
                public_key=h.public_key,
                slot=h.slot,
                parties=h.parties,
                ring_bits=h.ring_bits,
                length=h.length,
                peers=[node_pb2.SlotBytes(slot=k, data=v) for k, v in h.peers],
                peer_signatures=[node_pb2.SlotBytes(slot=k, data=v) for k, v in h.peer_signatures],
                certificates=list(h.certificates),
            )
        )
    return task


def task_from_proto(t: node_pb2.Task) -> TaskAssignment:
    """Wire -> TaskAssignment (validated: one protocol setup, a bounded round timeout)."""
    secagg = None
    if t.HasField("secagg"):
        s = t.secagg
        secagg = SecAggSetup(
            slots=s.slots,
            slot=s.slot,
            vector_length=int(s.vector_length),
            threshold=s.threshold,
            neighbours=tuple(tuple(int(x) for x in n.slots) for n in s.neighbours),
            signed=bool(s.signed),
            certificates=tuple(bytes(c) for c in s.certificates),
        )
    he = None
    if t.HasField("he"):
        h = t.he
        peers = slot_map(h.peers, "a homomorphic task")
        he = HESetup(
            public_key=bytes(h.public_key),
            slot=h.slot,
            parties=h.parties,
            ring_bits=h.ring_bits,
            length=int(h.length),
            peers=tuple(sorted(peers.items())),
            peer_signatures=tuple(
                sorted(slot_map(h.peer_signatures, "a homomorphic task").items())
            ),
            certificates=tuple(bytes(c) for c in h.certificates),
        )
    if (secagg is None) == (he is None):
        raise ProtocolError("a task must carry exactly one protocol setup")
    if not (math.isfinite(t.round_timeout) and 0 < t.round_timeout <= MAX_ROUND_TIMEOUT):
        raise ProtocolError(
            f"a task's round timeout must be in (0, {MAX_ROUND_TIMEOUT:g}] seconds, "
            f"got {t.round_timeout!r}"
        )
    return TaskAssignment(
        job_id=t.job_id,
        dataset=t.dataset,
        sql=t.sql,
        fingerprint=t.fingerprint,
        protocol=protocol_from_wire(t.protocol),
        round_timeout=t.round_timeout,
        secagg=secagg,
        he=he,
        min_cell_size=max(int(t.min_cell_size), 1),
        dp=dp_params_from_proto(t.dp) if t.HasField("dp") else None,
        audit=proof_from_proto(t.audit) if t.HasField("audit") else None,
    )
