"""SecAgg+ secure aggregation: the coordinator learns the sum of the nodes' vectors, nothing else.

The protocol of Bonawitz et al. 2017 ("Practical Secure Aggregation for
Privacy-Preserving Machine Learning") with the sparse neighbour graph of Bell et al.
2020 ("Secure Single-Server Aggregation with (Poly)Logarithmic Overhead"), written
as two I/O-free state machines: :class:`NodeSecAgg` (one per node) and
:class:`CoordinatorSecAgg`. Vectors are uint64; all arithmetic is modulo 2**64.

Rounds
------
The coordinator builds the public :class:`SecAggParams` with :func:`make_params`:
slots ``0 .. n-1``, the neighbour graph (complete for ``n <= 21``, otherwise a
``k``-regular Harary graph on a ring order drawn from a CSPRNG) and the threshold
``t``. A node's *group* is itself plus its ``k`` neighbours. Then::

    node -> coordinator                     coordinator -> node
    1. KeyAdvertisement (c_pk, s_pk)        KeyRoster: the neighbours' keys
    2. ShareBundle                          ShareDelivery: shares addressed to the node
    3. MaskedInput y_u                      UnmaskRequest: group survivors / dropped
    4. UnmaskResponse                       -  (the coordinator unmasks the sum)

1. Each node generates two X25519 key pairs: ``c`` for share transport, ``s`` for masks.
2. Each node draws a 32-byte self-mask seed ``b_u``, Shamir-shares ``b_u`` and its
   masking private key ``s_sk`` among its group (threshold ``t``, field
   GF(2**521 - 1), each holder's evaluation point its rank in the sorted group),
   keeps its own shares and seals each neighbour's pair with AES-256-GCM
   (associated data: job, sender, recipient).
3. Each node uploads ``y_u = x_u + PRG(b_u) + sum_v sign(u, v) PRG(s_uv)`` over the
   neighbours ``v`` whose shares it received (``sign = +`` if ``u < v``).
4. The coordinator tells each survivor which of its group survived round 3 and
   which dropped; the node returns its shares of the survivors' ``b`` and of the
   dropped nodes' ``s_sk``, never both for one slot. The coordinator recovers the
   seeds and keys, subtracts the self masks and the dropped nodes' pairwise masks.

A node that drops after uploading is counted (its ``b`` is recovered from its
group); one that drops before is excluded (its pairwise masks are removed with its
recovered ``s_sk``). :class:`SecAggResult` lists the contributors.

Threat model
------------
The coordinator is honest but curious: it follows the protocol and tries to learn
more from what it sees. It sees public keys, ciphertexts it cannot open, masked
inputs (each hidden by a self mask from a 256-bit seed), and shares that
reconstruct exactly the secrets needed for the sum. Nodes do not collude with the
coordinator; any set of fewer than ``t`` holders learns nothing about a secret.
Defences in depth against a coordinator that lies: nodes refuse requests listing a
slot both as survivor and dropped, requests not matching the shares they hold, and
fewer than ``t`` survivors; ``t`` is a strict majority of each group; and the
coordinator aborts when the survivors' graph is disconnected (unmasking would
reveal the sum of each part).

Against a malicious coordinator (``SecAggParams(signed=True)``, the actively secure
variant of Bonawitz et al. 2017, used whenever parties hold certificates): every
node signs its keys with its identity key, bound to the job, the round and the
hash of the exact computation (:mod:`~federation.protocols.secagg.binding`), and
accepts a neighbour's keys only under that neighbour's enrolled identity, so the
coordinator cannot substitute keys, replay another job's or round's messages, or
run another query at one node (the signatures then disagree and the run aborts).
After the masked inputs, every survivor signs the survivor set (the consistency
round); a node unmasks only for the set it signed, with signatures on it from at
least ``t`` (a strict majority) of its group, so the coordinator cannot tell one
node that a peer dropped (getting its key shares) and another that it survived
(getting its self-mask shares). This assumes the coordinator does not also control
nodes of the group. Differential privacy of the sum itself is out of scope here.

The sum of ``m`` inputs reveals what the sum reveals: with
``m`` small it says much about each input, hence at least ``t >= 2`` contributors
and at least :data:`MIN_SLOTS` = 3 slots (with two, each node could subtract its
own input from the sum).

Dropout tolerance
-----------------
``k = max(20, 2 * ceil(1.5 * log2 n))`` neighbours (complete graph when
``n <= k + 1``), ``b = floor(delta * (k + 1))`` and ``t = k + 1 - b``, with the
dropout tolerance ``delta`` in ``[0, 0.45]`` (default
:data:`DEFAULT_DROPOUT_TOLERANCE` = 0.3). Examples with the default: n=10: complete,
t=7 of 10; n=100: k=20, t=15 of 21; n=1000: k=30, t=22 of 31. If no group loses more
than ``b`` members over the whole run, the exact sum of every node that uploaded a
masked input is returned. Otherwise :meth:`CoordinatorSecAgg.advance` raises
:class:`~federation.errors.TooFewParticipantsError` (how many remained, how many
were needed, at which stage), moves to ``ABORTED`` and reconstructs nothing.
Before that, nodes whose group has fallen below ``t`` at the key or share round are
left out of the run (they could not be unmasked), and the run needs ``t`` nodes left.

PRG and key derivation
----------------------
All keys are HKDF-SHA256 (empty salt; 16-byte output for mask keys, 32-byte for
transport keys) of a full-entropy secret with
``info = "federation/secagg+/v1/" || label || 0x00 || u32(len(job)) || job ||
u32(slot)...`` (big-endian u32; see :mod:`federation.crypto.prg`):

- ``self-mask`` of ``b_u`` with context ``(u,)``;
- ``pairwise-mask`` of the X25519 secret ``s_uv`` with ``(min(u, v), max(u, v))``;
- ``share-transport`` of the X25519 secret ``c_uv`` with ``(sender, recipient)``.

A mask is the AES-128-CTR keystream of its key (initial counter block zero), read as
little-endian uint64 words; known-answer vectors are in ``tests/vectors/``. AES-128,
not AES-256: the key is derived from the whole 256-bit seed or X25519 secret, 128
bits is X25519's own security level, and the keystream is the protocol's dominant
cost (about 15 % faster than AES-256 here); see :mod:`federation.crypto.prg`.
Seeds are never folded, and no statistical RNG is involved (unlike Flower's SecAgg+,
which folds seeds to 32 bits for ``numpy.random``).
"""

from federation.protocols.secagg.binding import keys_message, survivors_message
from federation.protocols.secagg.coordinator import CoordinatorSecAgg, SecAggResult
from federation.protocols.secagg.messages import (
    ConsistencyRequest,
    ConsistencySignature,
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    PublicKeys,
    SecAggParams,
    ShareBundle,
    ShareDelivery,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
)
from federation.protocols.secagg.node import NodeSecAgg
from federation.protocols.secagg.params import (
    DEFAULT_DROPOUT_TOLERANCE,
    MAX_DROPOUT_TOLERANCE,
    MAX_SLOTS,
    MAX_VECTOR_LENGTH,
    MIN_SLOTS,
    make_params,
    neighbour_count,
    threshold_for,
)

__all__ = [
    "DEFAULT_DROPOUT_TOLERANCE",
    "MAX_DROPOUT_TOLERANCE",
    "MAX_SLOTS",
    "MAX_VECTOR_LENGTH",
    "MIN_SLOTS",
    "ConsistencyRequest",
    "ConsistencySignature",
    "CoordinatorSecAgg",
    "KeyAdvertisement",
    "KeyRoster",
    "MaskedInput",
    "NodeSecAgg",
    "PublicKeys",
    "SecAggParams",
    "SecAggResult",
    "ShareBundle",
    "ShareDelivery",
    "Stage",
    "UnmaskRequest",
    "UnmaskResponse",
    "keys_message",
    "make_params",
    "neighbour_count",
    "survivors_message",
    "threshold_for",
]
