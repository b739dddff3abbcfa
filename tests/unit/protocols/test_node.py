"""NodeSecAgg: round order, validation of every incoming message, secrecy of its state."""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from federation.crypto.keys import AEAD_OVERHEAD
from federation.errors import ProtocolError, TooFewParticipantsError
from federation.protocols.secagg import (
    CoordinatorSecAgg,
    KeyRoster,
    NodeSecAgg,
    PublicKeys,
    SecAggParams,
    ShareDelivery,
    Stage,
    UnmaskRequest,
    make_params,
)

N = 5  # complete graph, t = 4 (one dropout tolerated)
LENGTH = 6


class World:
    """Five nodes and a coordinator driven up to a chosen round."""

    def __init__(self, n: int = N) -> None:
        self.params = make_params("job-node", n, LENGTH)
        self.nodes = [NodeSecAgg(self.params, i) for i in range(n)]
        self.coordinator = CoordinatorSecAgg(self.params)
        self.inputs = [np.full(LENGTH, 10 + i, dtype=np.uint64) for i in range(n)]

    def rosters(self) -> dict[int, KeyRoster]:
        for node in self.nodes:
            self.coordinator.receive(node.advertise_keys())
        return {r.recipient: r for r in self.coordinator.advance() if isinstance(r, KeyRoster)}

    def deliveries(self) -> dict[int, ShareDelivery]:
        for slot, roster in self.rosters().items():
            self.coordinator.receive(self.nodes[slot].share_keys(roster))
        return {d.recipient: d for d in self.coordinator.advance() if isinstance(d, ShareDelivery)}

    def requests(self) -> dict[int, UnmaskRequest]:
        for slot, delivery in self.deliveries().items():
            masked = self.nodes[slot].mask_input(delivery, self.inputs[slot])
            self.coordinator.receive(masked)
        return {r.recipient: r for r in self.coordinator.advance() if isinstance(r, UnmaskRequest)}


def _stage(node: NodeSecAgg) -> Stage:
    return node.stage


def _any(value: object) -> Any:
    """Pass a deliberately ill-typed value past the type checker."""
    return value


def test_constructor_validates() -> None:
    params = make_params("j", N, LENGTH)
    for slot in (-1, N, "0", 1.0, True):
        with pytest.raises(ProtocolError):
            NodeSecAgg(params, slot)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        NodeSecAgg(replace(params, threshold=1), 0)
    with pytest.raises(ProtocolError):
        NodeSecAgg("params", 0)  # type: ignore[arg-type]


def test_rounds_must_come_in_order() -> None:
    world = World()
    node = world.nodes[0]
    assert _stage(node) is Stage.ADVERTISE_KEYS
    with pytest.raises(ProtocolError, match="ADVERTISE_KEYS"):
        node.share_keys(KeyRoster(0, {}))
    with pytest.raises(ProtocolError):
        node.mask_input(ShareDelivery(0, {}), world.inputs[0])
    with pytest.raises(ProtocolError):
        node.unmask(UnmaskRequest(0, (0,), ()))
    advert = node.advertise_keys()
    assert _stage(node) is Stage.SHARE_KEYS
    with pytest.raises(ProtocolError):
        node.advertise_keys()
    assert advert.sender == 0
    assert len(advert.keys.encryption_key) == len(advert.keys.masking_key) == 32
    assert advert.keys.encryption_key != advert.keys.masking_key


def test_keys_are_fresh_per_node() -> None:
    world = World()
    keys = [n.advertise_keys().keys for n in world.nodes]
    flat = [k for pk in keys for k in (pk.encryption_key, pk.masking_key)]
    assert len(set(flat)) == len(flat)


def test_share_bundle_has_one_sealed_pair_per_neighbour() -> None:
    world = World()
    rosters = world.rosters()
    bundle = world.nodes[2].share_keys(rosters[2])
    assert bundle.sender == 2
    assert set(bundle.ciphertexts) == {0, 1, 3, 4}
    assert {len(c) for c in bundle.ciphertexts.values()} == {140 + AEAD_OVERHEAD}
    assert world.nodes[2].stage is Stage.MASKED_INPUT


def _roster_with(roster: KeyRoster, **entries: Any) -> KeyRoster:
    keys = dict(roster.keys)
    keys.update({int(k[1:]): v for k, v in entries.items()})
    return KeyRoster(roster.recipient, keys)


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda r: "not a roster",
        lambda r: KeyRoster(1, r.keys),  # addressed to another slot
        lambda r: KeyRoster(0, _any([("x", 1)])),  # not a mapping
        lambda r: KeyRoster(0, {**r.keys, 0: r.keys[1]}),  # itself listed (and duplicate keys)
        lambda r: KeyRoster(0, {**r.keys, 7: r.keys[1]}),  # unknown slot
        lambda r: KeyRoster(0, _any({**r.keys, "1": r.keys[1]})),  # slot not an int
        lambda r: KeyRoster(0, {**r.keys, 1: PublicKeys(b"short", r.keys[1].masking_key)}),
        lambda r: KeyRoster(0, {**r.keys, 1: PublicKeys(r.keys[1].encryption_key, bytes(33))}),
        lambda r: KeyRoster(0, _any({**r.keys, 1: (b"a" * 32, b"b" * 32)})),
        lambda r: KeyRoster(0, {**r.keys, 1: r.keys[2]}),  # duplicate keys
        lambda r: KeyRoster(
            0, {**r.keys, 1: PublicKeys(r.keys[1].encryption_key, r.keys[1].encryption_key)}
        ),
        lambda r: KeyRoster(0, {**r.keys, 1: PublicKeys(bytes(32), r.keys[1].masking_key)}),
    ],
)
def test_share_keys_rejects_bad_rosters_and_keeps_state(make_bad: Any) -> None:
    world = World()
    roster = world.rosters()[0]
    node = world.nodes[0]
    with pytest.raises(ProtocolError):
        node.share_keys(make_bad(roster))
    assert node.stage is Stage.SHARE_KEYS
    assert set(node.share_keys(roster).ciphertexts) == {1, 2, 3, 4}


def test_share_keys_rejects_too_few_neighbours() -> None:
    world = World()
    roster = world.rosters()[0]
    thin = KeyRoster(0, {v: roster.keys[v] for v in (1, 2)})  # 3 of t = 4
    with pytest.raises(TooFewParticipantsError, match="threshold=4"):
        world.nodes[0].share_keys(thin)
    assert world.nodes[0].stage is Stage.SHARE_KEYS


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x80]) + data[index + 1 :]


@pytest.mark.parametrize(
    ("make_bad", "needle"),
    [
        (lambda d, o: ShareDelivery(1, d.ciphertexts), "another slot"),
        (lambda d, o: "delivery", "ShareDelivery"),
        (
            lambda d, o: ShareDelivery(0, {**d.ciphertexts, 3: _flip(d.ciphertexts[3], 20)}),
            "slot 3",
        ),
        (lambda d, o: ShareDelivery(0, {**d.ciphertexts, 3: _flip(d.ciphertexts[3], 0)}), "slot 3"),
        (
            lambda d, o: ShareDelivery(0, {**d.ciphertexts, 3: _flip(d.ciphertexts[3], -1)}),
            "slot 3",
        ),
        (lambda d, o: ShareDelivery(0, {**d.ciphertexts, 3: d.ciphertexts[3][:-1]}), "slot 3"),
        (lambda d, o: ShareDelivery(0, {**d.ciphertexts, 3: d.ciphertexts[3] + b"\0"}), "slot 3"),
        (lambda d, o: ShareDelivery(0, _any({**d.ciphertexts, 3: "text"})), "slot 3"),
        # a ciphertext from slot 2 presented as if from slot 3
        (lambda d, o: ShareDelivery(0, {**d.ciphertexts, 3: d.ciphertexts[2]}), "slot 3"),
        # a ciphertext addressed to node 1 replayed to node 0
        (lambda d, o: ShareDelivery(0, {**d.ciphertexts, 3: o.ciphertexts[3]}), "slot 3"),
        (lambda d, o: ShareDelivery(0, {**d.ciphertexts, 9: d.ciphertexts[3]}), "slot 9"),
        (lambda d, o: ShareDelivery(0, {**d.ciphertexts, 0: d.ciphertexts[3]}), "slot 0"),
    ],
)
def test_mask_input_rejects_bad_deliveries_and_keeps_state(make_bad: Any, needle: str) -> None:
    world = World()
    deliveries = world.deliveries()
    node = world.nodes[0]
    with pytest.raises(ProtocolError, match=needle) as raised:
        node.mask_input(make_bad(deliveries[0], deliveries[1]), world.inputs[0])
    for value in deliveries[0].ciphertexts.values():
        assert value.hex() not in str(raised.value)
    assert node.stage is Stage.MASKED_INPUT
    masked = node.mask_input(deliveries[0], world.inputs[0])
    assert masked.sender == 0


def test_mask_input_rejects_too_few_shares() -> None:
    world = World()
    delivery = world.deliveries()[0]
    thin = ShareDelivery(0, {v: delivery.ciphertexts[v] for v in (1, 2)})
    with pytest.raises(TooFewParticipantsError):
        world.nodes[0].mask_input(thin, world.inputs[0])


@pytest.mark.parametrize(
    ("vector", "needle"),
    [
        (np.zeros(LENGTH, dtype=np.int64), "dtype uint64"),
        (np.zeros(LENGTH, dtype=np.float64), "dtype uint64"),
        (np.zeros(LENGTH, dtype=np.uint32), "dtype uint64"),
        (np.zeros(LENGTH + 1, dtype=np.uint64), "shape"),
        (np.zeros(LENGTH - 1, dtype=np.uint64), "shape"),
        (np.zeros((2, LENGTH), dtype=np.uint64), "shape"),
        (np.zeros((), dtype=np.uint64), "shape"),
        ([0] * LENGTH, "numpy array"),
    ],
)
def test_mask_input_rejects_malformed_vectors(vector: Any, needle: str) -> None:
    world = World()
    delivery = world.deliveries()[0]
    with pytest.raises(ProtocolError, match=needle):
        world.nodes[0].mask_input(delivery, vector)
    assert world.nodes[0].stage is Stage.MASKED_INPUT


def test_masked_input_hides_the_input_and_leaves_it_unchanged() -> None:
    world = World()
    delivery = world.deliveries()[0]
    x = world.inputs[0]
    before = x.copy()
    masked = world.nodes[0].mask_input(delivery, x)
    assert np.array_equal(x, before)
    assert masked.vector.dtype == np.uint64
    assert masked.vector.shape == (LENGTH,)
    assert not np.any(masked.vector == x)
    assert masked.vector is not x


def test_strided_input_is_accepted() -> None:
    world = World()
    delivery = world.deliveries()[0]
    wide = np.zeros(2 * LENGTH, dtype=np.uint64)
    assert world.nodes[0].mask_input(delivery, wide[::2]).vector.shape == (LENGTH,)


@pytest.mark.parametrize(
    ("make_bad", "error", "needle"),
    [
        (lambda r: UnmaskRequest(0, (0, 1, 2), (2,)), ProtocolError, "both shares"),
        (lambda r: UnmaskRequest(0, (0, 1, 2, 3), (3, 4)), ProtocolError, "both shares"),
        (lambda r: UnmaskRequest(0, (1, 2, 3, 4), ()), ProtocolError, "not listed"),
        (lambda r: UnmaskRequest(0, (0, 1, 2, 3), ()), ProtocolError, "exactly"),
        (lambda r: UnmaskRequest(0, (0, 1, 2, 3, 4, 5), ()), ProtocolError, "outside"),
        (lambda r: UnmaskRequest(0, (0, 1, 2, 3, 3), (4,)), ProtocolError, "twice"),
        (lambda r: UnmaskRequest(0, (0, 1, 2, 3, 9), ()), ProtocolError, "outside"),
        (lambda r: UnmaskRequest(0, _any((0, 1, "2", 3, 4)), ()), ProtocolError, "int"),
        (lambda r: UnmaskRequest(0, _any("01234"), ()), ProtocolError, "tuple"),
        (lambda r: UnmaskRequest(1, r.survivors, r.dropped), ProtocolError, "another slot"),
        (lambda r: "request", ProtocolError, "UnmaskRequest"),
        (lambda r: UnmaskRequest(0, (0, 1, 2), (3, 4)), TooFewParticipantsError, "threshold"),
    ],
)
def test_unmask_refuses_bad_requests(make_bad: Any, error: type[Exception], needle: str) -> None:
    world = World()
    request = world.requests()[0]
    node = world.nodes[0]
    with pytest.raises(error, match=needle):
        node.unmask(make_bad(request))
    assert node.stage is Stage.UNMASK
    response = node.unmask(request)
    assert set(response.self_mask_shares) == set(range(N))
    assert response.key_shares == {}


def test_unmask_answers_once_and_never_both_kinds() -> None:
    world = World()
    request = world.requests()[0]
    dropped_view = UnmaskRequest(0, (0, 1, 2, 3), (4,))
    response = world.nodes[0].unmask(dropped_view)
    assert set(response.self_mask_shares) == {0, 1, 2, 3}
    assert set(response.key_shares) == {4}
    assert not set(response.self_mask_shares) & set(response.key_shares)
    assert world.nodes[0].stage is Stage.DONE
    # Asking again, now for slot 4's seed, is refused: the node has answered.
    with pytest.raises(ProtocolError):
        world.nodes[0].unmask(request)


def test_node_secrets_do_not_print_or_pickle() -> None:
    world = World()
    world.requests()
    node = world.nodes[0]
    text = repr(node)
    assert "slot=0" in text
    assert "stage=UNMASK" in text
    private = node._masking_key.export_private_bytes(unprotected=True)
    assert private.hex() not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(node)
    with pytest.raises(TypeError):
        copy.deepcopy(node)


def test_abort_erases_secrets() -> None:
    world = World()
    world.deliveries()
    node = world.nodes[0]
    node.abort("coordinator said so")
    assert node.stage is Stage.ABORTED
    assert node._mask_keys == {}
    assert node._self_mask_key is None
    with pytest.raises(ProtocolError):
        node.mask_input(ShareDelivery(0, {}), world.inputs[0])


def test_params_with_lists_are_refused() -> None:
    params = make_params("j", N, LENGTH)
    bad = SecAggParams(params.job_id, N, LENGTH, _any([list(a) for a in params.neighbours]), 4)
    with pytest.raises(ProtocolError, match="immutable"):
        NodeSecAgg(bad, 0)
