"""The secure aggregation round messages of a job, both ways on the node stream.

A node's masked input leaves as vector chunks (:mod:`federation.transport.serde_chunks`
reassembles them); a node message's sender is never read from the wire but left as
``UNKNOWN_SLOT`` (:mod:`federation.transport.serde_slots`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from federation.errors import ProtocolError
from federation.messages import SecAggFromNode, SecAggToNode
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
from federation.transport.serde_chunks import CHUNK_ELEMENTS, LE_U64, MaskedInputChunk
from federation.transport.serde_slots import UNKNOWN_SLOT, slot_bytes, slot_map
from federation.v1 import node_pb2

__all__ = [
    "secagg_coordinator_message_from_proto",
    "secagg_coordinator_message_to_proto",
    "secagg_node_message_from_proto",
    "secagg_node_messages_to_proto",
]


# --- node -> coordinator ---------------------------------------------------


def secagg_node_messages_to_proto(message: SecAggFromNode) -> Iterator[node_pb2.NodeMessage]:
    """Domain -> wire; a masked input becomes as many chunks as it needs."""
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
        bundle = node_pb2.ShareBundle(ciphertexts=slot_bytes(body.ciphertexts))
        yield node_pb2.NodeMessage(
            secagg=node_pb2.SecAggNodeMessage(job_id=job, share_bundle=bundle)
        )
    elif isinstance(body, MaskedInput):
        raw = np.ascontiguousarray(body.vector, dtype=LE_U64).tobytes()
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
            self_mask_shares=slot_bytes(body.self_mask_shares),
            key_shares=slot_bytes(body.key_shares),
        )
        yield node_pb2.NodeMessage(
            secagg=node_pb2.SecAggNodeMessage(job_id=job, unmask_response=response)
        )


def secagg_node_message_from_proto(
    msg: node_pb2.SecAggNodeMessage,
) -> SecAggFromNode | MaskedInputChunk:
    """Wire -> domain. A masked input arrives as a chunk for a VectorAssembler."""
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
        cts = slot_map(msg.share_bundle.ciphertexts, "a share bundle")
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
                self_mask_shares=slot_map(r.self_mask_shares, "an unmask response"),
                key_shares=slot_map(r.key_shares, "an unmask response"),
            ),
        )
    raise ProtocolError("secure aggregation message with no round set")


# --- coordinator -> node ---------------------------------------------------


def secagg_coordinator_message_to_proto(
    message: SecAggToNode,
) -> node_pb2.SecAggCoordinatorMessage:
    """Domain -> wire."""
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
        out.share_delivery.ciphertexts.extend(slot_bytes(body.ciphertexts))
    elif isinstance(body, ConsistencyRequest):
        out.consistency_request.survivors.extend(body.survivors)
    else:
        out.unmask_request.signatures.extend(slot_bytes(body.signatures))
        out.unmask_request.survivors.extend(body.survivors)
        out.unmask_request.dropped.extend(body.dropped)
    return out


def secagg_coordinator_message_from_proto(
    sa: node_pb2.SecAggCoordinatorMessage, recipient: int
) -> SecAggToNode:
    """Wire -> domain. ``recipient`` is the node's own slot in the job, if known."""
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
        cts = slot_map(sa.share_delivery.ciphertexts, "a share delivery")
        return SecAggToNode(sa.job_id, ShareDelivery(recipient=recipient, ciphertexts=cts))
    if rnd == "unmask_request":
        req = sa.unmask_request
        return SecAggToNode(
            sa.job_id,
            UnmaskRequest(
                recipient=recipient,
                survivors=tuple(int(x) for x in req.survivors),
                dropped=tuple(int(x) for x in req.dropped),
                signatures=slot_map(req.signatures, "an unmask request"),
            ),
        )
    if rnd == "consistency_request":
        survivors = tuple(int(x) for x in sa.consistency_request.survivors)
        return SecAggToNode(sa.job_id, ConsistencyRequest(recipient, survivors))
    raise ProtocolError("secure aggregation message with no round set")
