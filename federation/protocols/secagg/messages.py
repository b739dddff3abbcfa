"""Messages of the SecAgg+ protocol, as plain dataclasses (no I/O, no protobuf).

Parties are numbered by their *slot* in the job (``0 .. n-1``); the coordinator
maps slots to node identities. A message addressed to a node carries
``recipient``; a message from a node carries ``sender``. The transport layer
converts these to and from the wire (``federation.transport.serde_secagg``).

Rounds, after Bonawitz et al. 2017 with the SecAgg+ neighbour graph of Bell et
al. 2020::

    node -> coordinator        coordinator -> node
    1. KeyAdvertisement        KeyRoster        (neighbours' public keys)
    2. ShareBundle             ShareDelivery    (encrypted shares for the recipient)
    3. MaskedInput             UnmaskRequest    (who survived, who dropped)
    4. UnmaskResponse          -                (coordinator reconstructs the sum)

With signatures (``SecAggParams.signed``, the actively secure variant), keys are
signed by each node's identity key, and a consistency round runs between 3 and 4::

    3. MaskedInput             ConsistencyRequest  (the survivor set, to sign)
    3b. ConsistencySignature   UnmaskRequest       (+ the group's signatures on it)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "ConsistencyRequest",
    "ConsistencySignature",
    "KeyAdvertisement",
    "KeyRoster",
    "MaskedInput",
    "PublicKeys",
    "SecAggParams",
    "ShareBundle",
    "ShareDelivery",
    "Stage",
    "UnmaskRequest",
    "UnmaskResponse",
]

Vector = npt.NDArray[np.uint64]


class Stage(enum.Enum):
    """Protocol stages, in order. A party's stage names the message it expects next."""

    ADVERTISE_KEYS = 1
    SHARE_KEYS = 2
    MASKED_INPUT = 3
    CONSISTENCY = 7
    """Signed runs only: the survivors sign the survivor set."""
    UNMASK = 4
    DONE = 5
    ABORTED = 6


@dataclass(frozen=True)
class SecAggParams:
    """Public parameters of one SecAgg+ run, identical at every party.

    Attributes:
        job_id: Unique job identifier; bound into every key derivation.
        slots: Number of participating nodes ``n`` (slots ``0 .. n-1``).
        vector_length: Length of the uint64 vectors summed modulo 2**64.
        neighbours: For each slot, the sorted tuple of its neighbour slots (the
            SecAgg+ graph; symmetric, no self loops). With ``n`` small it is complete.
        threshold: Shamir threshold ``t``: a secret shared among a node and its
            neighbours is recoverable from any ``t`` of those shares and hides
            everything from fewer.
    """

    job_id: str
    slots: int
    vector_length: int
    neighbours: tuple[tuple[int, ...], ...]
    threshold: int
    signed: bool = False
    """The actively secure variant: signed keys and a consistency round
    (:mod:`federation.protocols.secagg.binding`)."""
    fingerprint: str = ""
    """The hash of the exact computation, bound into every signed message (each node
    sets it from its own binding of the query, never from the coordinator's word)."""


@dataclass(frozen=True)
class PublicKeys:
    """A node's two X25519 public keys (raw 32 bytes each)."""

    encryption_key: bytes
    """c_pk: used to agree AEAD keys for share transport."""
    masking_key: bytes
    """s_pk: used to agree pairwise mask seeds."""


@dataclass(frozen=True)
class KeyAdvertisement:
    """Round 1, node -> coordinator."""

    sender: int
    keys: PublicKeys
    signature: bytes = b""
    """Signed runs: the sender's identity signature over
    :func:`~federation.protocols.secagg.binding.keys_message`."""


@dataclass(frozen=True)
class KeyRoster:
    """Round 1 -> 2, coordinator -> node: the keys of the recipient's neighbours that advertised."""

    recipient: int
    keys: Mapping[int, PublicKeys]
    signatures: Mapping[int, bytes] = field(default_factory=dict)
    """Signed runs: each neighbour's signature over its keys."""


@dataclass(frozen=True)
class ShareBundle:
    """Round 2, node -> coordinator: AEAD-encrypted share pairs, one per neighbour slot."""

    sender: int
    ciphertexts: Mapping[int, bytes]


@dataclass(frozen=True)
class ShareDelivery:
    """Round 2 -> 3, coordinator -> node: ciphertexts addressed to the recipient, by sender."""

    recipient: int
    ciphertexts: Mapping[int, bytes]


@dataclass(frozen=True)
class MaskedInput:
    """Round 3, node -> coordinator: the node's input plus all its masks, mod 2**64."""

    sender: int
    vector: Vector


@dataclass(frozen=True)
class UnmaskRequest:
    """Round 3 -> 4, coordinator -> node: who uploaded a masked input and who dropped."""

    recipient: int
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: Mapping[int, bytes] = field(default_factory=dict)
    """Signed runs: the recipient's group members' signatures over the survivor set."""


@dataclass(frozen=True)
class ConsistencyRequest:
    """Signed runs, round 3 -> 3b, coordinator -> node: every slot that uploaded a
    masked input (the same set for every node, or the run aborts)."""

    recipient: int
    survivors: tuple[int, ...]


@dataclass(frozen=True)
class ConsistencySignature:
    """Signed runs, round 3b, node -> coordinator: the sender's signature over
    :func:`~federation.protocols.secagg.binding.survivors_message`."""

    sender: int
    signature: bytes


@dataclass(frozen=True)
class UnmaskResponse:
    """Round 4, node -> coordinator: Shamir shares the coordinator asked for.

    ``self_mask_shares[u]`` is the sender's share of survivor ``u``'s self-mask seed;
    ``key_shares[u]`` is its share of dropped node ``u``'s masking secret key.
    A node never sends both kinds for the same ``u``.
    """

    sender: int
    self_mask_shares: Mapping[int, bytes]
    key_shares: Mapping[int, bytes]
