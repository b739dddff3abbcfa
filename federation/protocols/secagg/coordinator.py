"""The coordinator's side of SecAgg+: an I/O-free state machine that relays and unmasks.

The driver feeds each node message to :meth:`CoordinatorSecAgg.receive` and calls
:meth:`~CoordinatorSecAgg.advance` when :meth:`~CoordinatorSecAgg.complete` or the
round's deadline passes; ``advance`` returns the messages of the next round, one
per node still taking part. Masked inputs are summed as they arrive, so the
coordinator never stores an individual (masked) input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from federation.crypto.shamir import SHARE_SIZE, encode_points, shares_at
from federation.errors import ProtocolError, TooFewParticipantsError
from federation.protocols.secagg.binding import MAX_SIGNATURE_BYTES
from federation.protocols.secagg.graph import components, prune, share_point
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
from federation.protocols.secagg.recovery import recover_sum, shortfall
from federation.protocols.secagg.validation import (
    SEALED_SHARES_SIZE,
    check_bytes,
    check_mapping,
    check_public_keys,
    check_slot,
    check_vector,
)

__all__ = ["CoordinatorSecAgg", "IncomingMessage", "OutgoingMessage", "SecAggResult"]

IncomingMessage = (
    KeyAdvertisement | ShareBundle | MaskedInput | ConsistencySignature | UnmaskResponse
)
_Expected = tuple[frozenset[int], bytes]
"""Slots whose shares a response must hold, and those shares' points (:func:`encode_points`)."""
OutgoingMessage = KeyRoster | ShareDelivery | ConsistencyRequest | UnmaskRequest

_INCOMING: dict[Stage, type[IncomingMessage]] = {
    Stage.ADVERTISE_KEYS: KeyAdvertisement,
    Stage.SHARE_KEYS: ShareBundle,
    Stage.MASKED_INPUT: MaskedInput,
    Stage.CONSISTENCY: ConsistencySignature,
    Stage.UNMASK: UnmaskResponse,
}


@dataclass(frozen=True)
class SecAggResult:
    """The outcome of a successful run.

    Attributes:
        vector: Sum modulo 2**64 of the contributors' input vectors.
        contributors: Sorted slots whose inputs are in the sum: every node that
            uploaded a masked input, including those that dropped afterwards.
    """

    vector: Vector
    contributors: tuple[int, ...]


class CoordinatorSecAgg:
    """The coordinator's run of SecAgg+; it learns the sum of the inputs and nothing else.

    A rejected message raises :class:`ProtocolError` and leaves the state unchanged.

    Args:
        params: The run's public parameters (validated here).
    """

    def __init__(self, params: SecAggParams) -> None:
        validate_params(params)
        self._params = params
        self._stage = Stage.ADVERTISE_KEYS
        self._awaited: frozenset[int] = frozenset(range(params.slots))
        self._arrived: set[int] = set()
        self._keys: dict[int, PublicKeys] = {}
        self._key_signatures: dict[int, bytes] = {}
        self._consistency: dict[int, bytes] = {}
        self._used_keys: set[bytes] = set()  # every public key advertised so far
        self._rosters: dict[int, frozenset[int]] = {}
        self._bundles: dict[int, dict[int, bytes]] = {}
        self._shared: frozenset[int] = frozenset()
        self._masked_sum: Vector | None = None
        self._requests: dict[int, UnmaskRequest] = {}
        # Per responder: the owners it must send seed / key shares of, with their points.
        self._share_points: dict[int, tuple[_Expected, _Expected]] = {}
        self._responses: dict[int, UnmaskResponse] = {}
        self._result: SecAggResult | None = None
        self._abort_reason: str | None = None

    @property
    def stage(self) -> Stage:
        """The current stage: the round whose messages the coordinator collects."""
        return self._stage

    @property
    def abort_reason(self) -> str | None:
        """Why the run was aborted, or ``None``."""
        return self._abort_reason

    def expected(self) -> frozenset[int]:
        """Slots whose message the current round still awaits."""
        if self._stage in (Stage.DONE, Stage.ABORTED):
            return frozenset()
        return self._awaited - self._arrived

    def complete(self) -> bool:
        """Whether every awaited message of the current round has arrived."""
        return self._stage not in (Stage.DONE, Stage.ABORTED) and not self.expected()

    def receive(self, message: IncomingMessage) -> None:
        """Validate and record one node message of the current round.

        Raises:
            ProtocolError: If the message is of the wrong round, from an unknown or
                dropped slot, a duplicate, or malformed (the message names the slot).
        """
        expected_type = _INCOMING.get(self._stage)
        if expected_type is None:
            raise ProtocolError(f"the coordinator accepts no messages in stage {self._stage.name}")
        if not isinstance(message, expected_type):
            raise ProtocolError(
                f"the coordinator expects {expected_type.__name__} in stage {self._stage.name}, "
                f"got {type(message).__name__}"
            )
        sender = check_slot(message.sender, self._params.slots, "sender")
        if sender not in self._awaited:
            raise ProtocolError(f"slot {sender} takes no part in stage {self._stage.name}")
        if sender in self._arrived:
            raise ProtocolError(f"slot {sender} already sent its {expected_type.__name__}")
        if isinstance(message, KeyAdvertisement):
            self._receive_keys(sender, message)
        elif isinstance(message, ShareBundle):
            self._receive_bundle(sender, message)
        elif isinstance(message, MaskedInput):
            self._receive_masked_input(sender, message)
        elif isinstance(message, ConsistencySignature):
            self._consistency[sender] = _signature(message.signature, f"slot {sender}")
        else:
            self._receive_response(sender, message)
        self._arrived.add(sender)

    def advance(self) -> list[OutgoingMessage]:
        """Close the current round; whoever has not sent is dropped.

        Returns:
            The next round's messages, one per remaining node (``[]`` once DONE).

        Raises:
            TooFewParticipantsError: If too few nodes remain (the run is then ABORTED
                and nothing is reconstructed or released).
            ProtocolError: If the run is already DONE or ABORTED, or shares are inconsistent.
        """
        if self._stage is Stage.ADVERTISE_KEYS:
            return list(self._close_keys())
        if self._stage is Stage.SHARE_KEYS:
            return list(self._close_shares())
        if self._stage is Stage.MASKED_INPUT:
            return list(self._close_masked_inputs())
        if self._stage is Stage.CONSISTENCY:
            return list(self._close_consistency())
        if self._stage is Stage.UNMASK:
            self._close_unmask()
            return []
        raise ProtocolError(f"the run is {self._stage.name}; nothing to advance")

    def result(self) -> SecAggResult:
        """The sum and its contributors.

        Raises:
            ProtocolError: If the run is not DONE.
        """
        if self._result is None:
            raise ProtocolError(f"no result: the run is in stage {self._stage.name}, not DONE")
        return self._result

    def abort(self, reason: str) -> None:
        """Abort the run (driver-initiated); nothing is reconstructed or released.

        Raises:
            ProtocolError: If the run is already DONE.
        """
        if self._stage is Stage.DONE:
            raise ProtocolError("the run is already DONE; it cannot be aborted")
        if self._stage is not Stage.ABORTED:
            self._abort_reason = str(reason)
            self._stage = Stage.ABORTED
            self._wipe()

    # Receiving ---------------------------------------------------------------------

    def _receive_keys(self, sender: int, message: KeyAdvertisement) -> None:
        keys = check_public_keys(message.keys, f"public keys of slot {sender}")
        used = self._used_keys
        if keys.encryption_key in used or keys.masking_key in used:
            raise ProtocolError(f"slot {sender} advertised a public key another slot already uses")
        if self._params.signed:
            self._key_signatures[sender] = _signature(message.signature, f"slot {sender}")
        self._keys[sender] = keys
        used.update((keys.encryption_key, keys.masking_key))

    def _receive_bundle(self, sender: int, message: ShareBundle) -> None:
        entries = check_mapping(message.ciphertexts, f"ciphertexts of slot {sender}")
        roster = self._rosters[sender]
        if set(entries) != roster:
            raise ProtocolError(
                f"slot {sender} must send one ciphertext to each of its {len(roster)} roster "
                f"neighbours, got {len(entries)} addressed to a different set of slots"
            )
        bundle: dict[int, bytes] = {}
        for v, ct in entries.items():
            if not isinstance(v, int):  # unreachable: the keys equal the roster's int slots
                continue
            if type(ct) is bytes and len(ct) == SEALED_SHARES_SIZE:
                bundle[v] = ct
            else:
                what = f"ciphertext from slot {sender} to slot {v}"
                bundle[v] = check_bytes(ct, SEALED_SHARES_SIZE, what)
        self._bundles[sender] = bundle

    def _receive_masked_input(self, sender: int, message: MaskedInput) -> None:
        vector = check_vector(
            message.vector, self._params.vector_length, f"masked input of slot {sender}"
        )
        if self._masked_sum is None:  # allocated when the share round closes
            raise ProtocolError("the coordinator has no accumulator")
        np.add(self._masked_sum, vector, out=self._masked_sum)

    def _receive_response(self, sender: int, message: UnmaskResponse) -> None:
        request = self._requests[sender]
        points = self._share_points[sender]
        for name, entries, wanted, (owners, expected) in (
            ("self_mask_shares", message.self_mask_shares, request.survivors, points[0]),
            ("key_shares", message.key_shares, request.dropped, points[1]),
        ):
            shares = (
                entries
                if type(entries) is dict
                else check_mapping(entries, f"{name} of slot {sender}")
            )
            if shares.keys() != owners:
                raise ProtocolError(
                    f"slot {sender} must send {name} for exactly the {len(wanted)} slots asked"
                )
            if not shares_at([shares[owner] for owner in wanted], expected):
                raise ProtocolError(
                    f"slot {sender} sent a malformed share in {name}: each must have "
                    f"{SHARE_SIZE} bytes, at this slot's evaluation point, below the prime"
                )
        self._responses[sender] = message

    # Closing rounds ----------------------------------------------------------------

    def _close_keys(self) -> list[KeyRoster]:
        alive = self._require(frozenset(self._arrived), "advertised keys")
        graph = self._params.neighbours
        self._rosters = {u: frozenset(v for v in graph[u] if v in alive) for u in alive}
        self._keys = {u: self._keys[u] for u in alive}
        self._used_keys = set()
        self._next(Stage.SHARE_KEYS, alive)
        signatures = self._key_signatures
        return [
            KeyRoster(
                recipient=u,
                keys={v: self._keys[v] for v in sorted(self._rosters[u])},
                signatures={v: signatures[v] for v in sorted(self._rosters[u]) if v in signatures},
            )
            for u in sorted(alive)
        ]

    def _close_shares(self) -> list[ShareDelivery]:
        alive = self._require(frozenset(self._arrived), "sent their shares")
        graph = self._params.neighbours
        deliveries = [
            ShareDelivery(
                recipient=u,
                ciphertexts={v: self._bundles[v][u] for v in graph[u] if v in alive},
            )
            for u in sorted(alive)
        ]
        self._bundles = {}
        self._shared = alive
        self._masked_sum = np.zeros(self._params.vector_length, dtype=np.uint64)
        self._next(Stage.MASKED_INPUT, alive)
        return deliveries

    def _close_masked_inputs(self) -> list[UnmaskRequest] | list[ConsistencyRequest]:
        survivors = frozenset(self._arrived)
        dropped = self._shared - survivors
        t = self._params.threshold
        if len(survivors) < t:
            self._fail(f"{len(survivors)} nodes uploaded masked inputs, at least t={t} needed")
        problem = shortfall(self._params, survivors, dropped, survivors)
        if problem is not None:
            self._fail(problem)
        parts = components(survivors, self._params.neighbours)
        if len(parts) > 1:
            self._fail(
                f"the {len(survivors)} surviving nodes split into {len(parts)} groups that share "
                "no masks; unmasking would reveal each group's sum"
            )
        graph = self._params.neighbours
        self._requests = {
            u: UnmaskRequest(
                recipient=u,
                survivors=tuple(sorted(v for v in (u, *graph[u]) if v in survivors)),
                dropped=tuple(sorted(v for v in graph[u] if v in dropped)),
            )
            for u in sorted(survivors)
        }
        # Evaluation point of each responder's share of each owner's secrets.
        self._share_points = {
            u: (
                (
                    frozenset(r.survivors),
                    encode_points([share_point(graph, v, u) for v in r.survivors]),
                ),
                (
                    frozenset(r.dropped),
                    encode_points([share_point(graph, v, u) for v in r.dropped]),
                ),
            )
            for u, r in self._requests.items()
        }
        if self._params.signed:
            self._next(Stage.CONSISTENCY, survivors)
            ordered = tuple(sorted(survivors))
            return [ConsistencyRequest(recipient=u, survivors=ordered) for u in ordered]
        self._next(Stage.UNMASK, survivors)
        return list(self._requests.values())

    def _close_consistency(self) -> list[UnmaskRequest]:
        """Forward to each survivor the signatures of its group (the nodes check them);
        a survivor that did not sign is not asked to unmask."""
        signers = frozenset(self._arrived)
        if len(signers) < self._params.threshold:
            self._fail(
                f"{len(signers)} nodes signed the survivor set, at least "
                f"t={self._params.threshold} needed"
            )
        graph = self._params.neighbours
        requests = {
            u: dataclasses.replace(
                self._requests[u],
                signatures={
                    v: self._consistency[v] for v in (u, *graph[u]) if v in self._consistency
                },
            )
            for u in sorted(signers)
        }
        self._requests.update(requests)  # non-signers' inputs still count: others unmask them
        self._next(Stage.UNMASK, signers)
        return list(requests.values())

    def _close_unmask(self) -> None:
        survivors = frozenset(self._requests)
        dropped = self._shared - survivors
        masked_sum = self._masked_sum
        if masked_sum is None:
            raise ProtocolError("the coordinator has no accumulator")
        masking_keys = {u: keys.masking_key for u, keys in self._keys.items()}
        try:
            total = recover_sum(
                self._params,
                masked_sum,
                survivors=survivors,
                dropped=dropped,
                responses=self._responses,
                masking_keys=masking_keys,
            )
        except TooFewParticipantsError as error:
            self._fail(f"{len(self._responses)} nodes sent shares; {error}")
        except ProtocolError as error:
            self.abort(str(error))
            raise
        self._wipe()
        self._result = SecAggResult(vector=total, contributors=tuple(sorted(survivors)))
        self._stage = Stage.DONE

    def _require(self, arrived: frozenset[int], what: str) -> frozenset[int]:
        """Prune nodes whose group is too thin; abort unless ``threshold`` nodes remain."""
        t = self._params.threshold
        alive = prune(arrived, self._params.neighbours, t)
        if len(alive) < t:
            usable = "" if alive == arrived else f" ({len(alive)} with enough of their group)"
            self._fail(f"{len(arrived)} nodes {what}{usable}, at least t={t} needed")
        return alive

    def _next(self, stage: Stage, participants: frozenset[int]) -> None:
        self._stage = stage
        self._awaited = participants
        self._arrived = set()

    def _fail(self, detail: str) -> NoReturn:
        stage = self._stage.name
        message = (
            f"secure aggregation aborted at stage {stage}: {detail}; "
            "nothing was reconstructed or released"
        )
        self.abort(message)
        raise TooFewParticipantsError(message)

    def _wipe(self) -> None:
        self._bundles = {}
        self._masked_sum = None
        self._requests = {}
        self._share_points = {}
        self._responses = {}

    def __repr__(self) -> str:
        return (
            f"CoordinatorSecAgg(job_id={self._params.job_id!r}, slots={self._params.slots}, "
            f"stage={self._stage.name}, awaiting={len(self.expected())})"
        )


def _signature(value: object, whose: str) -> bytes:
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_SIGNATURE_BYTES:
        raise ProtocolError(f"{whose} sent a missing or malformed signature")
    return value
