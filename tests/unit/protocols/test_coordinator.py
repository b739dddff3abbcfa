"""CoordinatorSecAgg: message validation, round bookkeeping, results and aborts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from federation.errors import ProtocolError, TooFewParticipantsError
from federation.protocols.secagg import (
    CoordinatorSecAgg,
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    NodeSecAgg,
    PublicKeys,
    ShareBundle,
    ShareDelivery,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
    make_params,
)

from .harness import run_protocol

N = 5
LENGTH = 6


def _stage(coordinator: CoordinatorSecAgg) -> Stage:
    return coordinator.stage


def _any(value: object) -> Any:
    """Pass a deliberately ill-typed value past the type checker."""
    return value


class World:
    def __init__(self) -> None:
        self.params = make_params("job-coord", N, LENGTH)
        self.nodes = [NodeSecAgg(self.params, i) for i in range(N)]
        self.coordinator = CoordinatorSecAgg(self.params)
        self.inputs = [np.arange(LENGTH, dtype=np.uint64) * (i + 1) for i in range(N)]
        self.adverts = [node.advertise_keys() for node in self.nodes]

    def to_shares(self) -> list[KeyRoster]:
        for advert in self.adverts:
            self.coordinator.receive(advert)
        return [r for r in self.coordinator.advance() if isinstance(r, KeyRoster)]

    def to_inputs(self) -> list[ShareDelivery]:
        self.bundles = [self.nodes[r.recipient].share_keys(r) for r in self.to_shares()]
        for bundle in self.bundles:
            self.coordinator.receive(bundle)
        return [d for d in self.coordinator.advance() if isinstance(d, ShareDelivery)]

    def to_unmask(self) -> list[UnmaskRequest]:
        self.masked = [
            self.nodes[d.recipient].mask_input(d, self.inputs[d.recipient])
            for d in self.to_inputs()
        ]
        for masked in self.masked:
            self.coordinator.receive(masked)
        return [r for r in self.coordinator.advance() if isinstance(r, UnmaskRequest)]

    def finish(self) -> None:
        for request in self.to_unmask():
            self.coordinator.receive(self.nodes[request.recipient].unmask(request))
        assert self.coordinator.advance() == []

    def total(self) -> np.ndarray[Any, np.dtype[np.uint64]]:
        out = np.zeros(LENGTH, dtype=np.uint64)
        for x in self.inputs:
            np.add(out, x, out=out)
        return out


def test_full_run_and_bookkeeping() -> None:
    world = World()
    coordinator = world.coordinator
    assert _stage(coordinator) is Stage.ADVERTISE_KEYS
    assert coordinator.expected() == frozenset(range(N))
    assert not coordinator.complete()
    coordinator.receive(world.adverts[3])
    assert coordinator.expected() == frozenset({0, 1, 2, 4})
    for advert in world.adverts[:3] + world.adverts[4:]:
        coordinator.receive(advert)
    assert coordinator.complete()
    rosters = coordinator.advance()
    assert [r.recipient for r in rosters] == list(range(N))
    assert all(
        isinstance(r, KeyRoster) and set(r.keys) == set(range(N)) - {r.recipient} for r in rosters
    )
    assert _stage(coordinator) is Stage.SHARE_KEYS
    assert coordinator.expected() == frozenset(range(N))
    world2 = World()
    world2.finish()
    result = world2.coordinator.result()
    assert world2.coordinator.stage is Stage.DONE
    assert np.array_equal(result.vector, world2.total())
    assert result.contributors == tuple(range(N))
    assert world2.coordinator.expected() == frozenset()
    assert not world2.coordinator.complete()


def test_result_before_done_and_advance_after_done() -> None:
    world = World()
    with pytest.raises(ProtocolError, match="not DONE"):
        world.coordinator.result()
    world.finish()
    with pytest.raises(ProtocolError, match="DONE"):
        world.coordinator.advance()
    with pytest.raises(ProtocolError):
        world.coordinator.receive(world.adverts[0])
    with pytest.raises(ProtocolError, match="already DONE"):
        world.coordinator.abort("late")


def test_wrong_stage_message_is_refused() -> None:
    world = World()
    with pytest.raises(ProtocolError, match="expects KeyAdvertisement"):
        world.coordinator.receive(ShareBundle(0, {}))
    with pytest.raises(ProtocolError, match="expects"):
        world.coordinator.receive(_any("hello"))


@pytest.mark.parametrize(
    ("make_bad", "needle"),
    [
        (lambda a: KeyAdvertisement(N, a.keys), "outside"),
        (lambda a: KeyAdvertisement(-1, a.keys), "outside"),
        (lambda a: KeyAdvertisement(_any("0"), a.keys), "int slot"),
        (lambda a: KeyAdvertisement(True, a.keys), "int slot"),
        (lambda a: KeyAdvertisement(0, PublicKeys(b"x" * 31, a.keys.masking_key)), "32 bytes"),
        (lambda a: KeyAdvertisement(0, PublicKeys(a.keys.encryption_key, _any("x" * 32))), "bytes"),
        (
            lambda a: KeyAdvertisement(0, _any((a.keys.encryption_key, a.keys.masking_key))),
            "PublicKeys",
        ),
        (
            lambda a: KeyAdvertisement(0, PublicKeys(a.keys.masking_key, a.keys.masking_key)),
            "identical",
        ),
    ],
)
def test_malformed_key_advertisement(make_bad: Any, needle: str) -> None:
    world = World()
    with pytest.raises(ProtocolError, match=needle):
        world.coordinator.receive(make_bad(world.adverts[0]))
    assert world.coordinator.expected() == frozenset(range(N))


def test_duplicate_sender_and_reused_keys() -> None:
    world = World()
    world.coordinator.receive(world.adverts[0])
    with pytest.raises(ProtocolError, match="already sent"):
        world.coordinator.receive(world.adverts[0])
    copycat = KeyAdvertisement(1, world.adverts[0].keys)
    with pytest.raises(ProtocolError, match="another slot"):
        world.coordinator.receive(copycat)
    assert world.coordinator.expected() == frozenset(range(1, N))


def test_rejected_advertisements_reserve_no_keys() -> None:
    # The used-key set grows only with accepted advertisements.
    world = World()
    world.coordinator.receive(world.adverts[0])
    mine = world.adverts[2].keys
    half_copy = KeyAdvertisement(
        1, PublicKeys(mine.encryption_key, world.adverts[0].keys.masking_key)
    )
    with pytest.raises(ProtocolError, match="another slot"):
        world.coordinator.receive(half_copy)  # slot 2's encryption key must stay free
    same_twice = KeyAdvertisement(3, PublicKeys(mine.masking_key, mine.masking_key))
    with pytest.raises(ProtocolError, match="identical"):
        world.coordinator.receive(same_twice)  # nor its masking key
    for advert in world.adverts[1:]:
        world.coordinator.receive(advert)
    assert world.coordinator.complete()


def test_dropped_node_cannot_rejoin() -> None:
    world = World()
    for advert in world.adverts[1:]:
        world.coordinator.receive(advert)
    world.coordinator.advance()
    with pytest.raises(ProtocolError, match="takes no part"):
        world.coordinator.receive(ShareBundle(0, {}))


@pytest.mark.parametrize(
    ("make_bad", "needle"),
    [
        (lambda b: ShareBundle(b.sender, {**b.ciphertexts, 1: b"x"}), "each of its"),
        (
            lambda b: ShareBundle(b.sender, {k: v for k, v in b.ciphertexts.items() if k != 2}),
            "each of its",
        ),
        (lambda b: ShareBundle(b.sender, {**b.ciphertexts, 2: b.ciphertexts[2][:-1]}), "bytes"),
        (lambda b: ShareBundle(b.sender, _any({**b.ciphertexts, 2: "text"})), "bytes"),
        (lambda b: ShareBundle(b.sender, _any([1, 2])), "mapping"),
    ],
)
def test_malformed_share_bundle_does_not_corrupt_state(make_bad: Any, needle: str) -> None:
    world = World()
    rosters = world.to_shares()
    bundles = [world.nodes[r.recipient].share_keys(r) for r in rosters]
    with pytest.raises(ProtocolError, match=needle):
        world.coordinator.receive(make_bad(bundles[1]))
    for bundle in bundles:
        world.coordinator.receive(bundle)
    deliveries = world.coordinator.advance()
    assert len(deliveries) == N


@pytest.mark.parametrize(
    ("vector", "needle"),
    [
        (np.zeros(LENGTH + 1, dtype=np.uint64), "shape"),
        (np.zeros(LENGTH - 1, dtype=np.uint64), "shape"),
        (np.zeros((1, LENGTH), dtype=np.uint64), "shape"),
        (np.zeros(LENGTH, dtype=np.int64), "uint64"),
        (np.zeros(LENGTH, dtype=np.float32), "uint64"),
        (list(range(LENGTH)), "numpy"),
    ],
)
def test_malformed_masked_input_does_not_corrupt_the_sum(vector: Any, needle: str) -> None:
    world = World()
    deliveries = world.to_inputs()
    with pytest.raises(ProtocolError, match=needle):
        world.coordinator.receive(MaskedInput(0, vector))
    for d in deliveries:
        world.coordinator.receive(world.nodes[d.recipient].mask_input(d, world.inputs[d.recipient]))
    for request in world.coordinator.advance():
        assert isinstance(request, UnmaskRequest)
        world.coordinator.receive(world.nodes[request.recipient].unmask(request))
    world.coordinator.advance()
    assert np.array_equal(world.coordinator.result().vector, world.total())


@pytest.mark.parametrize(
    ("make_bad", "needle"),
    [
        (lambda r, o: UnmaskResponse(r.sender, {**r.self_mask_shares, 9: b""}, {}), "exactly"),
        (
            lambda r, o: UnmaskResponse(r.sender, dict(list(r.self_mask_shares.items())[1:]), {}),
            "exactly",
        ),
        (
            lambda r, o: UnmaskResponse(r.sender, r.self_mask_shares, {3: r.self_mask_shares[3]}),
            "exactly",
        ),
        (
            lambda r, o: UnmaskResponse(
                r.sender, {**r.self_mask_shares, 3: r.self_mask_shares[3][:-1]}, {}
            ),
            "malformed",
        ),
        (
            lambda r, o: UnmaskResponse(r.sender, _any({**r.self_mask_shares, 3: "x" * 70}), {}),
            "malformed",
        ),
        # a share held by another node (wrong evaluation point)
        (
            lambda r, o: UnmaskResponse(
                r.sender, {**r.self_mask_shares, 3: o.self_mask_shares[3]}, {}
            ),
            "malformed",
        ),
        (lambda r, o: UnmaskResponse(r.sender, _any([]), {}), "mapping"),
    ],
)
def test_malformed_unmask_response(make_bad: Any, needle: str) -> None:
    world = World()
    requests = world.to_unmask()
    responses = [world.nodes[r.recipient].unmask(r) for r in requests]
    with pytest.raises(ProtocolError, match=needle) as raised:
        world.coordinator.receive(make_bad(responses[1], responses[2]))
    for share in responses[1].self_mask_shares.values():
        assert share.hex() not in str(raised.value)
    for response in responses:
        world.coordinator.receive(response)
    world.coordinator.advance()
    assert np.array_equal(world.coordinator.result().vector, world.total())


def test_inconsistent_shares_abort_without_release() -> None:
    world = World()
    requests = world.to_unmask()
    responses = [world.nodes[r.recipient].unmask(r) for r in requests]
    # Node 1 lies about node 4's seed share with a well-formed value.
    lie = dict(responses[1].self_mask_shares)
    lie[4] = lie[4][:4] + (12345).to_bytes(66, "big")
    responses[1] = UnmaskResponse(1, lie, {})
    for response in responses[:4]:  # exactly t = 4 shares, node 1's among them
        world.coordinator.receive(response)
    with pytest.raises(ProtocolError, match="inconsistent"):
        world.coordinator.advance()
    assert world.coordinator.stage is Stage.ABORTED
    with pytest.raises(ProtocolError):
        world.coordinator.result()


@pytest.mark.parametrize("slots", [5, 12])  # 12 survivors: seeds recovered as one group
def test_inconsistent_seed_share_names_its_owner(slots: int) -> None:
    def tamper(stage: str, message: Any) -> Any:
        if stage == "unmask" and message.sender == 1:
            shares = dict(message.self_mask_shares)
            shares[4] = shares[4][:4] + (2**520 + 12345).to_bytes(66, "big")
            return UnmaskResponse(1, shares, message.key_shares)
        return message

    with pytest.raises(ProtocolError, match="slot 4's self-mask seed are inconsistent"):
        run_protocol(slots, LENGTH, tamper=tamper)


def test_forged_key_share_is_caught_by_the_public_key_check() -> None:
    # Slot 4 drops after sharing; slot 0 sends a slightly altered (still in-range) share of
    # its masking key. The recovered key would not match slot 4's advertised public key.
    def tamper(stage: str, message: Any) -> Any:
        if stage == "unmask" and message.sender == 0:
            share = message.key_shares[4]
            altered = share[:-1] + bytes([share[-1] ^ 1])
            return UnmaskResponse(0, message.self_mask_shares, {4: altered})
        return message

    from .harness import Dropouts

    with pytest.raises(ProtocolError, match="does not match its advertised public key"):
        run_protocol(N, LENGTH, Dropouts(after_shares={4}), tamper=tamper)


def test_driver_abort() -> None:
    world = World()
    world.to_inputs()
    world.coordinator.abort("node 3 reported an error")
    assert world.coordinator.stage is Stage.ABORTED
    assert world.coordinator.abort_reason == "node 3 reported an error"
    assert world.coordinator.expected() == frozenset()
    with pytest.raises(ProtocolError):
        world.coordinator.advance()
    with pytest.raises(ProtocolError):
        world.coordinator.receive(MaskedInput(0, np.zeros(LENGTH, dtype=np.uint64)))
    world.coordinator.abort("again")  # idempotent, keeps the first reason
    assert world.coordinator.abort_reason == "node 3 reported an error"


def test_too_few_at_first_round_aborts_with_clear_message() -> None:
    world = World()
    for advert in world.adverts[:3]:
        world.coordinator.receive(advert)
    with pytest.raises(TooFewParticipantsError) as raised:
        world.coordinator.advance()
    text = str(raised.value)
    assert "ADVERTISE_KEYS" in text
    assert "3 nodes" in text
    assert "t=4" in text
    assert world.coordinator.stage is Stage.ABORTED


def test_repr_is_informative() -> None:
    world = World()
    assert "stage=ADVERTISE_KEYS" in repr(world.coordinator)
    assert "job-coord" in repr(world.coordinator)
