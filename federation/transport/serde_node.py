"""Conversions for the node <-> coordinator stream, and vector chunking.

Slots named inside node messages are never trusted: the coordinator fills in
the sender from the stream's identity (``sender=UNKNOWN_SLOT`` here).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from federation.errors import MessageTooLargeError, ProtocolError
from federation.messages import (
    AuditReceipt,
    CoordinatorToNode,
    EncryptedShare,
    Heartbeat,
    HESetup,
    NodeToCoordinator,
    Registered,
    Registration,
    SecAggFromNode,
    SecAggSetup,
    SecAggToNode,
    TaskAssignment,
    TaskCancelled,
    TaskFailure,
    TaskState,
    TaskStatus,
)
from federation.protocols.secagg.messages import (
    ConsistencyRequest,
    ConsistencySignature,
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    PublicKeys,
    ShareBundle,
    ShareDelivery,
    UnmaskRequest,
    UnmaskResponse,
)
from federation.transport.serde import (
    error_from_proto,
    error_to_proto,
    policy_from_proto,
    policy_to_proto,
    protocol_from_wire,
    schema_from_proto,
    schema_to_proto,
)
from federation.transport.serde_audit import proof_from_proto, proof_to_proto
from federation.transport.serde_dp import (
    budgets_from_proto,
    budgets_to_proto,
    dp_params_from_proto,
    dp_params_to_proto,
)
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

UNKNOWN_SLOT = -1
CHUNK_ELEMENTS = 1 << 17
"""uint64 elements per vector chunk: 1 MiB of payload, far below the 4 MiB message limit."""
MAX_VECTOR_LENGTH = 1 << 26
"""Largest vector (in elements, 512 MiB) a coordinator accepts from a node."""

CHUNK_BYTES = 1 << 20
"""Bytes per chunk of an encrypted share (1 MiB)."""
MAX_SHARE_BYTES = 1 << 30
"""Largest encrypted share (1 GiB) a coordinator accepts from a node."""

MAX_ROUND_TIMEOUT = 86_400.0
"""Longest round timeout (seconds) a node accepts in a task: a day."""

_LE_U64 = np.dtype("<u8")


class EncryptedShareChunk:
    """One received slice of a node's encrypted share (transport-internal)."""

    __slots__ = ("data", "job_id", "offset", "total_length")

    def __init__(self, job_id: str, offset: int, total_length: int, data: bytes) -> None:
        self.job_id = job_id
        self.offset = offset
        self.total_length = total_length
        self.data = data


class BytesAssembler:
    """Reassembles bytes sent as contiguous chunks; rejects anything else.

    The buffer grows with the data received: an announced length costs nothing
    until the sender actually sends that much.
    """

    def __init__(self, total_length: int, limit: int = MAX_SHARE_BYTES) -> None:
        if total_length == 0:
            raise ProtocolError("a chunked payload must announce a positive length")
        if total_length > limit:
            raise MessageTooLargeError(
                f"a payload of {total_length} bytes was announced; the limit is {limit}"
            )
        self.total_length = total_length
        self._buffer = bytearray()

    def add(self, offset: int, total_length: int, data: bytes) -> bytes | None:
        """Add the next chunk; returns the whole payload once it is complete."""
        filled = len(self._buffer)
        if total_length != self.total_length:
            raise ProtocolError("chunks disagree on the total length")
        if offset != filled:
            raise ProtocolError(f"chunk at offset {offset}, expected {filled} (chunks in order)")
        if not data or filled + len(data) > self.total_length:
            raise ProtocolError("a chunk is empty or exceeds the announced length")
        self._buffer += data
        return bytes(self._buffer) if len(self._buffer) == self.total_length else None


def chunk_bytes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(offset, slice)`` pairs covering ``data`` in chunks of CHUNK_BYTES."""
    for start in range(0, len(data), CHUNK_BYTES):
        yield start, data[start : start + CHUNK_BYTES]


class MaskedInputChunk:
    """One received slice of a node's masked input (transport-internal)."""

    __slots__ = ("data", "job_id", "offset", "total_length")

    def __init__(self, job_id: str, offset: int, total_length: int, data: bytes) -> None:
        self.job_id = job_id
        self.offset = offset
        self.total_length = total_length
        self.data = data


class VectorAssembler:
    """Reassembles a vector sent as contiguous chunks; rejects anything else.

    The buffer grows with the data received: an announced length costs nothing
    until the sender actually sends that much.
    """

    def __init__(self, total_length: int) -> None:
        if total_length == 0:
            raise ProtocolError("a chunked vector must announce a positive length")
        if total_length > MAX_VECTOR_LENGTH:
            raise MessageTooLargeError(
                f"a vector of {total_length} elements was announced; "
                f"the limit is {MAX_VECTOR_LENGTH}"
            )
        self.total_length = total_length
        self._buffer = bytearray()

    def add(self, chunk: MaskedInputChunk) -> np.ndarray | None:
        """Add the next chunk; returns the whole vector once it is complete."""
        filled = len(self._buffer) // 8
        if chunk.total_length != self.total_length:
            raise ProtocolError("vector chunks disagree on the total length")
        if chunk.offset != filled:
            raise ProtocolError(
                f"vector chunk at offset {chunk.offset}, expected {filled} (chunks in order)"
            )
        if len(chunk.data) % 8 or not chunk.data:
            raise ProtocolError("a vector chunk must hold a positive whole number of uint64 values")
        if filled + len(chunk.data) // 8 > self.total_length:
            raise ProtocolError("vector chunks exceed the announced length")
        self._buffer += chunk.data
        if len(self._buffer) < self.total_length * 8:
            return None
        return np.frombuffer(bytes(self._buffer), dtype=_LE_U64).astype(np.uint64, copy=False)


def _slot_bytes(items: Mapping[int, bytes]) -> list[node_pb2.SlotBytes]:
    return [node_pb2.SlotBytes(slot=k, data=v) for k, v in sorted(items.items())]


def _slot_map(items: Iterable[node_pb2.SlotBytes], what: str) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for item in items:
        if item.slot in out:
            raise ProtocolError(f"{what} names slot {item.slot} twice")
        out[int(item.slot)] = bytes(item.data)
    return out


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
        yield from _secagg_node_to_proto(message)
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


def _secagg_node_to_proto(message: SecAggFromNode) -> Iterator[node_pb2.NodeMessage]:
    body = message.message
    job = message.job_id
    if isinstance(body, KeyAdvertisement):
        keys = node_pb2.PublicKeys(
            encryption_key=body.keys.encryption_key,
            masking_key=body.keys.masking_key,
            signature=body.signature,
        )
        yield node_pb2.NodeMessage(
            secagg=node_pb2.SecAggNodeMessage(job_id=job, advertise_keys=keys)
        )
    elif isinstance(body, ShareBundle):
        bundle = node_pb2.ShareBundle(ciphertexts=_slot_bytes(body.ciphertexts))
        yield node_pb2.NodeMessage(
            secagg=node_pb2.SecAggNodeMessage(job_id=job, share_bundle=bundle)
        )
    elif isinstance(body, MaskedInput):
        raw = np.ascontiguousarray(body.vector, dtype=_LE_U64).tobytes()
        total = len(raw) // 8
        for start in range(0, max(total, 1), CHUNK_ELEMENTS):
            stop = min(start + CHUNK_ELEMENTS, total)
            chunk = node_pb2.VectorChunk(
                offset=start, total_length=total, data=raw[start * 8 : stop * 8]
            )
            yield node_pb2.NodeMessage(
                secagg=node_pb2.SecAggNodeMessage(job_id=job, masked_input=chunk)
            )
    elif isinstance(body, ConsistencySignature):
        yield node_pb2.NodeMessage(
            secagg=node_pb2.SecAggNodeMessage(job_id=job, consistency_signature=body.signature)
        )
    else:
        response = node_pb2.UnmaskResponse(
            self_mask_shares=_slot_bytes(body.self_mask_shares),
            key_shares=_slot_bytes(body.key_shares),
        )
        yield node_pb2.NodeMessage(
            secagg=node_pb2.SecAggNodeMessage(job_id=job, unmask_response=response)
        )


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
        return _secagg_node_from_proto(msg.secagg)
    if which == "encrypted_share":
        e = msg.encrypted_share
        return EncryptedShareChunk(e.job_id, int(e.offset), int(e.total_length), bytes(e.data))
    raise ProtocolError("empty node message: no body set")


def _secagg_node_from_proto(
    msg: node_pb2.SecAggNodeMessage,
) -> SecAggFromNode | MaskedInputChunk:
    which = msg.WhichOneof("round")
    if which == "advertise_keys":
        keys = PublicKeys(
            encryption_key=bytes(msg.advertise_keys.encryption_key),
            masking_key=bytes(msg.advertise_keys.masking_key),
        )
        return SecAggFromNode(
            msg.job_id,
            KeyAdvertisement(
                sender=UNKNOWN_SLOT, keys=keys, signature=bytes(msg.advertise_keys.signature)
            ),
        )
    if which == "consistency_signature":
        return SecAggFromNode(
            msg.job_id,
            ConsistencySignature(sender=UNKNOWN_SLOT, signature=bytes(msg.consistency_signature)),
        )
    if which == "share_bundle":
        cts = _slot_map(msg.share_bundle.ciphertexts, "a share bundle")
        return SecAggFromNode(msg.job_id, ShareBundle(sender=UNKNOWN_SLOT, ciphertexts=cts))
    if which == "masked_input":
        c = msg.masked_input
        return MaskedInputChunk(msg.job_id, int(c.offset), int(c.total_length), bytes(c.data))
    if which == "unmask_response":
        r = msg.unmask_response
        return SecAggFromNode(
            msg.job_id,
            UnmaskResponse(
                sender=UNKNOWN_SLOT,
                self_mask_shares=_slot_map(r.self_mask_shares, "an unmask response"),
                key_shares=_slot_map(r.key_shares, "an unmask response"),
            ),
        )
    raise ProtocolError("secure aggregation message with no round set")


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
                    peer_signatures=[
                        node_pb2.SlotBytes(slot=k, data=v) for k, v in h.peer_signatures
                    ],
                    certificates=list(h.certificates),
                )
            )
        return node_pb2.CoordinatorMessage(task=task)
    if isinstance(message, TaskCancelled):
        return node_pb2.CoordinatorMessage(
            cancel=node_pb2.CancelTask(job_id=message.job_id, reason=error_to_proto(message.reason))
        )
    body = message.message
    out = node_pb2.SecAggCoordinatorMessage(job_id=message.job_id)
    if isinstance(body, KeyRoster):
        out.key_roster.keys.extend(
            node_pb2.SlotKeys(
                slot=slot,
                keys=node_pb2.PublicKeys(
                    encryption_key=k.encryption_key,
                    masking_key=k.masking_key,
                    signature=body.signatures.get(slot, b""),
                ),
            )
            for slot, k in sorted(body.keys.items())
        )
    elif isinstance(body, ShareDelivery):
        out.share_delivery.ciphertexts.extend(_slot_bytes(body.ciphertexts))
    elif isinstance(body, ConsistencyRequest):
        out.consistency_request.survivors.extend(body.survivors)
    else:
        out.unmask_request.signatures.extend(_slot_bytes(body.signatures))
        out.unmask_request.survivors.extend(body.survivors)
        out.unmask_request.dropped.extend(body.dropped)
    return node_pb2.CoordinatorMessage(secagg=out)


def coordinator_message_from_proto(  # noqa: PLR0911 - one return per message kind
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
        return _task_from_proto(msg.task)
    if which == "cancel":
        return TaskCancelled(job_id=msg.cancel.job_id, reason=error_from_proto(msg.cancel.reason))
    if which == "secagg":
        sa = msg.secagg
        rnd = sa.WhichOneof("round")
        if rnd == "key_roster":
            keys: dict[int, PublicKeys] = {}
            signatures: dict[int, bytes] = {}
            for item in sa.key_roster.keys:
                if item.slot in keys:
                    raise ProtocolError(f"key roster names slot {item.slot} twice")
                keys[int(item.slot)] = PublicKeys(
                    encryption_key=bytes(item.keys.encryption_key),
                    masking_key=bytes(item.keys.masking_key),
                )
                if item.keys.signature:
                    signatures[int(item.slot)] = bytes(item.keys.signature)
            return SecAggToNode(
                sa.job_id, KeyRoster(recipient=recipient, keys=keys, signatures=signatures)
            )
        if rnd == "share_delivery":
            cts = _slot_map(sa.share_delivery.ciphertexts, "a share delivery")
            return SecAggToNode(sa.job_id, ShareDelivery(recipient=recipient, ciphertexts=cts))
        if rnd == "unmask_request":
            req = sa.unmask_request
            return SecAggToNode(
                sa.job_id,
                UnmaskRequest(
                    recipient=recipient,
                    survivors=tuple(int(x) for x in req.survivors),
                    dropped=tuple(int(x) for x in req.dropped),
                    signatures=_slot_map(req.signatures, "an unmask request"),
                ),
            )
        if rnd == "consistency_request":
            survivors = tuple(int(x) for x in sa.consistency_request.survivors)
            return SecAggToNode(sa.job_id, ConsistencyRequest(recipient, survivors))
        raise ProtocolError("secure aggregation message with no round set")
    raise ProtocolError("empty coordinator message: no body set")


def _task_from_proto(t: node_pb2.Task) -> TaskAssignment:
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
        peers = _slot_map(h.peers, "a homomorphic task")
        he = HESetup(
            public_key=bytes(h.public_key),
            slot=h.slot,
            parties=h.parties,
            ring_bits=h.ring_bits,
            length=int(h.length),
            peers=tuple(sorted(peers.items())),
            peer_signatures=tuple(
                sorted(_slot_map(h.peer_signatures, "a homomorphic task").items())
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


class ChunkReassembler:
    """Turns a node's stream of wire messages back into whole domain messages.

    Chunks of a masked input or an encrypted share are buffered per job until
    complete; every other message passes through. Not thread-safe: one per stream.
    """

    def __init__(self) -> None:
        self._vectors: dict[str, VectorAssembler] = {}
        self._shares: dict[str, BytesAssembler] = {}

    def feed(
        self, message: NodeToCoordinator | MaskedInputChunk | EncryptedShareChunk
    ) -> NodeToCoordinator | None:
        """The complete message, or None while a chunked one is still arriving."""
        if isinstance(message, MaskedInputChunk):
            vectors = self._vectors.get(message.job_id)
            if vectors is None:
                vectors = VectorAssembler(message.total_length)
                self._vectors[message.job_id] = vectors
            vector = vectors.add(message)
            if vector is None:
                return None
            del self._vectors[message.job_id]
            return SecAggFromNode(message.job_id, MaskedInput(UNKNOWN_SLOT, vector))
        if isinstance(message, EncryptedShareChunk):
            share = self._shares.get(message.job_id)
            if share is None:
                share = BytesAssembler(message.total_length)
                self._shares[message.job_id] = share
            payload = share.add(message.offset, message.total_length, message.data)
            if payload is None:
                return None
            del self._shares[message.job_id]
            return EncryptedShare(message.job_id, payload)
        return message
