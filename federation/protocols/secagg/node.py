"""The node's side of SecAgg+: an I/O-free state machine, one method per round.

In signed runs the node checks its peers' signatures with
:mod:`federation.protocols.secagg.signed_checks`.

>>> from federation.protocols.secagg.params import make_params
>>> node = NodeSecAgg(make_params("job", 3, 4), slot=0)
>>> node.stage.name
'ADVERTISE_KEYS'
>>> node.advertise_keys().sender
0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import numpy as np

from federation.crypto.keys import (
    SecretBytes,
    X25519KeyPair,
    open_sealed,
    seal,
    transport_keys,
)
from federation.crypto.prg import Label, MaskApplier, derive_key
from federation.crypto.shamir import SHARE_SIZE, is_share_at, split_secret
from federation.errors import ProtocolError, TooFewParticipantsError
from federation.protocols.secagg.binding import keys_message, survivors_message
from federation.protocols.secagg.graph import share_point
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
    Vector,
)
from federation.protocols.secagg.params import validate_params
from federation.protocols.secagg.signed_checks import check_consistency, check_key_signature
from federation.protocols.secagg.validation import (
    SEALED_SHARES_SIZE,
    check_bytes,
    check_mapping,
    check_public_keys,
    check_slot,
    check_stage,
    check_vector,
)

__all__ = ["NodeSecAgg"]


class NodeSecAgg:
    """One node's run of SecAgg+ (Bonawitz et al. 2017 with the graph of Bell et al. 2020).

    Call :meth:`advertise_keys`, :meth:`share_keys`, :meth:`mask_input` and
    :meth:`unmask` in order, each with the coordinator's message for that round. A
    method that rejects its message raises :class:`ProtocolError` and leaves the
    node in the stage it was in. The node holds secret keys: it cannot be pickled
    and its ``repr`` shows no secret.

    Signed runs (``params.signed``, the actively secure variant) also sign: the node
    signs its keys and, in :meth:`consistency`, the survivor set; it accepts a
    neighbour's keys only under that neighbour's valid signature, and unmasks only
    for the survivor set it signed itself, countersigned by at least ``threshold``
    of its group.

    Args:
        params: The run's public parameters (validated here).
        slot: This node's slot.
        sign: Signed runs: signs bytes with this node's identity key.
        verify: Signed runs: ``verify(slot, message, signature)`` checks a signature
            against the identity enrolled in ``slot``.
    """

    def __init__(
        self,
        params: SecAggParams,
        slot: int,
        *,
        sign: Callable[[bytes], bytes] | None = None,
        verify: Callable[[int, bytes, bytes], bool] | None = None,
    ) -> None:
        validate_params(params)
        if params.signed and (sign is None or verify is None):
            raise ProtocolError("a signed run needs this node's signing key and the roster")
        self._sign = sign
        self._verify = verify
        self._signed_survivors: frozenset[int] | None = None
        self._params = params
        self._slot = check_slot(slot, params.slots, "slot")
        self._name = f"node in slot {slot}"
        self._neighbours = frozenset(params.neighbours[slot])
        self._encryption_key = X25519KeyPair.generate()
        self._masking_key = X25519KeyPair.generate()
        self._stage = Stage.ADVERTISE_KEYS
        self._roster: dict[int, PublicKeys] = {}
        self._mask_keys: dict[int, SecretBytes] = {}
        self._receive_keys: dict[int, SecretBytes] = {}
        self._own_shares: tuple[bytes, bytes] = (b"", b"")
        self._shares: dict[int, tuple[bytes, bytes]] = {}
        self._self_mask_key: SecretBytes | None = None
        self._abort_reason: str | None = None

    @property
    def stage(self) -> Stage:
        """The stage the node is in: the name of the round whose message it expects."""
        return self._stage

    @property
    def slot(self) -> int:
        """This node's slot."""
        return self._slot

    def advertise_keys(self) -> KeyAdvertisement:
        """Round 1: publish the node's two X25519 public keys."""
        check_stage(self._name, self._stage, Stage.ADVERTISE_KEYS, "advertise keys")
        self._stage = Stage.SHARE_KEYS
        keys = PublicKeys(
            encryption_key=self._encryption_key.public_bytes,
            masking_key=self._masking_key.public_bytes,
        )
        signature = b""
        if self._sign is not None and self._params.signed:
            signature = self._sign(keys_message(self._params, self._slot, keys))
        return KeyAdvertisement(sender=self._slot, keys=keys, signature=signature)

    def share_keys(self, roster: KeyRoster) -> ShareBundle:
        """Round 2: Shamir-share the self-mask seed and masking key among the group.

        The roster must list only neighbours of this node, with well-formed and
        pairwise distinct keys, and at least ``threshold - 1`` of them.

        Raises:
            ProtocolError: If the roster is malformed (naming the slot at fault).
            TooFewParticipantsError: If too few neighbours remain.
        """
        check_stage(self._name, self._stage, Stage.SHARE_KEYS, "share keys")
        neighbours = self._check_roster(roster)
        params, slot = self._params, self._slot
        seed = SecretBytes.generate()
        graph = params.neighbours
        point = {h: share_point(graph, slot, h) for h in (slot, *neighbours)}
        xs = point.values()
        seed_shares = split_secret(seed.export(unprotected=True), params.threshold, xs)
        key_shares = split_secret(
            self._masking_key.export_private_bytes(unprotected=True), params.threshold, xs
        )
        job = params.job_id
        ciphertexts: dict[int, bytes] = {}
        mask_keys: dict[int, SecretBytes] = {}
        receive_keys: dict[int, SecretBytes] = {}
        for v, keys in neighbours.items():
            try:
                transport = self._encryption_key.exchange(keys.encryption_key)
                masking = self._masking_key.exchange(keys.masking_key)
            except ValueError:
                raise ProtocolError(
                    f"{self._name}: the public key of slot {v} is unusable (low-order point)"
                ) from None
            send, receive = transport_keys(transport, job_id=job, local=slot, peer=v)
            x = point[v]
            ciphertexts[v] = seal(
                send, seed_shares[x] + key_shares[x], job_id=job, sender=slot, recipient=v
            )
            receive_keys[v] = SecretBytes(receive)
            low, high = (slot, v) if slot < v else (v, slot)
            mask_keys[v] = SecretBytes(derive_key(masking, Label.PAIRWISE_MASK, job, low, high))
        self._roster = neighbours
        self._receive_keys = receive_keys
        self._mask_keys = mask_keys
        self._own_shares = (seed_shares[point[slot]], key_shares[point[slot]])
        self._self_mask_key = SecretBytes(
            derive_key(seed.export(unprotected=True), Label.SELF_MASK, params.job_id, slot)
        )
        self._stage = Stage.MASKED_INPUT
        return ShareBundle(sender=slot, ciphertexts=ciphertexts)

    def mask_input(self, delivery: ShareDelivery, vector: Vector) -> MaskedInput:
        """Round 3: store the neighbours' shares and upload the masked input.

        ``y = x + PRG(b_u) + sum(+-PRG(s_uv))`` modulo 2**64, with a pairwise mask for
        each neighbour ``v`` whose shares arrived (``+`` if ``u < v``, ``-`` otherwise).

        Args:
            delivery: The neighbours' sealed shares addressed to this node.
            vector: The input, a uint64 array of length ``params.vector_length``
                (not modified).

        Raises:
            ProtocolError: If the vector is malformed, or a ciphertext is malformed,
                from an unexpected slot, or fails authentication (naming the sender).
            TooFewParticipantsError: If shares arrived from too few neighbours.
        """
        check_stage(self._name, self._stage, Stage.MASKED_INPUT, "mask its input")
        params, slot = self._params, self._slot
        x = check_vector(vector, params.vector_length, f"input vector of slot {slot}")
        shares = self._open_delivery(delivery)
        self_mask_key = self._self_mask_key
        if self_mask_key is None:  # unreachable after share_keys; keeps the type precise
            raise ProtocolError(f"{self._name} has no self-mask seed")
        add = [self_mask_key.export(unprotected=True)]
        subtract: list[bytes] = []
        for v in sorted(shares):
            key = self._mask_keys[v].export(unprotected=True)
            (add if slot < v else subtract).append(key)
        masked = np.empty(params.vector_length, dtype=np.uint64)
        MaskApplier(params.vector_length).apply(masked, add=add, subtract=subtract, source=x)
        self._shares = shares
        self._mask_keys = {}
        self._receive_keys = {}
        self._self_mask_key = None
        self._stage = Stage.CONSISTENCY if params.signed else Stage.UNMASK
        return MaskedInput(sender=slot, vector=masked)

    def consistency(self, request: ConsistencyRequest) -> ConsistencySignature:
        """Signed runs, round 3b: sign the coordinator's survivor set, once.

        Raises:
            ProtocolError: If the request is malformed or does not list this node.
        """
        check_stage(self._name, self._stage, Stage.CONSISTENCY, "sign the survivors")
        if not isinstance(request, ConsistencyRequest):
            raise ProtocolError(
                f"{self._name} expected a ConsistencyRequest, got {type(request).__name__}"
            )
        if request.recipient != self._slot:
            raise ProtocolError(f"{self._name} received a survivor set for another slot")
        if not isinstance(request.survivors, tuple | list):
            raise ProtocolError("survivors must be a tuple of slots")
        survivors = [check_slot(u, self._params.slots, "survivor") for u in request.survivors]
        if len(set(survivors)) != len(survivors) or self._slot not in survivors:
            raise ProtocolError(
                f"{self._name}: the survivor set must list distinct slots, this one included"
            )
        sign = self._sign
        if sign is None:  # pragma: no cover - checked in __init__
            raise ProtocolError(f"{self._name} cannot sign")
        self._signed_survivors = frozenset(survivors)
        self._stage = Stage.UNMASK
        return ConsistencySignature(
            sender=self._slot, signature=sign(survivors_message(self._params, survivors))
        )

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Round 4: reveal seed shares of survivors and key shares of dropped neighbours.

        The request must list exactly this node's group members whose shares it holds
        (itself among the survivors), in two disjoint sets, with at least
        ``threshold`` survivors. A node never reveals both shares of one slot.

        Raises:
            ProtocolError: If the request is malformed, overlapping, or incomplete.
            TooFewParticipantsError: If fewer than ``threshold`` survivors are listed.
        """
        check_stage(self._name, self._stage, Stage.UNMASK, "unmask")
        survivors, dropped = self._check_request(request)
        own_seed_share, _ = self._own_shares
        seed_shares = {
            u: own_seed_share if u == self._slot else self._shares[u][0] for u in survivors
        }
        key_shares = {v: self._shares[v][1] for v in dropped}
        self._forget()
        self._stage = Stage.DONE
        return UnmaskResponse(
            sender=self._slot, self_mask_shares=seed_shares, key_shares=key_shares
        )

    def abort(self, reason: str) -> None:
        """Stop taking part: erase the secrets and move to ``ABORTED`` (``reason`` is for logs)."""
        self._abort_reason = reason
        self._forget()
        self._stage = Stage.ABORTED

    def _forget(self) -> None:
        self._shares = {}
        self._own_shares = (b"", b"")
        self._mask_keys = {}
        self._receive_keys = {}
        self._self_mask_key = None

    def _check_roster(self, roster: KeyRoster) -> dict[int, PublicKeys]:
        if not isinstance(roster, KeyRoster):
            raise ProtocolError(f"{self._name} expected a KeyRoster, got {type(roster).__name__}")
        if roster.recipient != self._slot:
            raise ProtocolError(f"{self._name} received a roster addressed to another slot")
        entries = check_mapping(roster.keys, "roster keys")
        checked: dict[int, PublicKeys] = {}
        seen = {self._encryption_key.public_bytes, self._masking_key.public_bytes}
        for entry, value in entries.items():
            v = check_slot(entry, self._params.slots, "roster entry")
            if v not in self._neighbours:
                raise ProtocolError(f"{self._name}: roster lists slot {v}, not a neighbour")
            keys = check_public_keys(value, f"public keys of slot {v}")
            if self._params.signed:
                check_key_signature(
                    roster, v, keys, name=self._name, params=self._params, verify=self._verify
                )
            if keys.encryption_key in seen or keys.masking_key in seen:
                raise ProtocolError(f"{self._name}: slot {v} advertised a key already in use")
            seen.update((keys.encryption_key, keys.masking_key))
            checked[v] = keys
        self._check_enough(len(checked) + 1, "keys")
        return dict(sorted(checked.items()))

    def _open_delivery(self, delivery: ShareDelivery) -> dict[int, tuple[bytes, bytes]]:
        if not isinstance(delivery, ShareDelivery):
            raise ProtocolError(
                f"{self._name} expected a ShareDelivery, got {type(delivery).__name__}"
            )
        if delivery.recipient != self._slot:
            raise ProtocolError(f"{self._name} received shares addressed to another slot")
        entries = check_mapping(delivery.ciphertexts, "delivered ciphertexts")
        shares: dict[int, tuple[bytes, bytes]] = {}
        params, slot, roster = self._params, self._slot, self._roster
        for entry, value in entries.items():
            v = check_slot(entry, params.slots, "share sender")
            if v not in roster:
                raise ProtocolError(
                    f"{self._name}: shares from slot {v}, which is not in its roster"
                )
            sealed = (
                value
                if type(value) is bytes and len(value) == SEALED_SHARES_SIZE
                else check_bytes(value, SEALED_SHARES_SIZE, f"ciphertext from slot {v}")
            )
            try:
                plaintext = open_sealed(
                    self._receive_keys[v].export(unprotected=True),
                    sealed,
                    job_id=params.job_id,
                    sender=v,
                    recipient=slot,
                )
                pair = (plaintext[:SHARE_SIZE], plaintext[SHARE_SIZE:])
                own_x = share_point(params.neighbours, v, slot)
                if len(plaintext) != 2 * SHARE_SIZE or not (
                    is_share_at(pair[0], own_x) and is_share_at(pair[1], own_x)
                ):
                    raise ValueError("shares are not for this slot")
            except ValueError:
                raise ProtocolError(
                    f"{self._name}: the ciphertext from slot {v} failed authentication or "
                    "does not hold shares for this slot"
                ) from None
            shares[v] = pair
        self._check_enough(len(shares) + 1, "shares")
        return shares

    def _check_request(self, request: UnmaskRequest) -> tuple[list[int], list[int]]:
        if not isinstance(request, UnmaskRequest):
            raise ProtocolError(
                f"{self._name} expected an UnmaskRequest, got {type(request).__name__}"
            )
        if request.recipient != self._slot:
            raise ProtocolError(f"{self._name} received an unmask request for another slot")
        lists: list[list[int]] = []
        for name, slots in (("survivors", request.survivors), ("dropped", request.dropped)):
            if not isinstance(slots, tuple | list):
                raise ProtocolError(f"{name} must be a tuple of slots")
            checked = [check_slot(u, self._params.slots, f"{name} entry") for u in slots]
            if len(set(checked)) != len(checked):
                raise ProtocolError(f"{self._name}: {name} lists a slot twice")
            lists.append(checked)
        survivors, dropped = lists
        both = set(survivors) & set(dropped)
        if both:
            raise ProtocolError(
                f"{self._name} refuses to reveal both shares of slots {sorted(both)}: "
                "listed as survivor and as dropped"
            )
        holders = set(self._shares) | {self._slot}
        if self._slot not in survivors:
            raise ProtocolError(f"{self._name} uploaded its input but is not listed as survivor")
        if set(survivors) | set(dropped) != holders:
            raise ProtocolError(
                f"{self._name}: the request must list exactly the {len(holders)} group members "
                f"whose shares it holds, got {len(survivors) + len(dropped)}"
            )
        self._check_enough(len(survivors), "surviving group members")
        if self._params.signed:
            check_consistency(
                request,
                holders,
                set(survivors),
                set(dropped),
                name=self._name,
                params=self._params,
                verify=self._verify,
                slot=self._slot,
                signed=self._signed_survivors,
            )
        return survivors, dropped

    def _check_enough(self, present: int, what: str) -> None:
        if present < self._params.threshold:
            raise TooFewParticipantsError(
                f"{self._name} at stage {self._stage.name}: {present} {what} of its group "
                f"present (itself included), at least threshold={self._params.threshold} needed"
            )

    def __repr__(self) -> str:
        return (
            f"NodeSecAgg(job_id={self._params.job_id!r}, slot={self._slot}, "
            f"stage={self._stage.name})"
        )

    def __getstate__(self) -> NoReturn:
        raise TypeError(
            "NodeSecAgg holds secret keys and cannot be pickled or copied; run it in one process"
        )

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        self.__getstate__()
