"""Privacy: the coordinator holds no individual input, and reconstructs nothing on abort."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from federation.crypto.shamir_batch import combine_batch
from federation.protocols.secagg import NodeSecAgg, Stage, recovery

from .harness import Dropouts, run_protocol

N = 6
LENGTH = 16


def _walk(obj: Any, seen: set[int] | None = None) -> Iterator[Any]:
    """Yield every object reachable from ``obj`` through attributes and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, (str, bytes, int, float, bool, type(None), np.ndarray)):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _walk(key, seen)
            yield from _walk(value, seen)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            yield from _walk(item, seen)
        return
    attributes = getattr(obj, "__dict__", {})
    for value in attributes.values():
        yield from _walk(value, seen)
    for name in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, name):
            yield from _walk(getattr(obj, name), seen)


def _node_secrets(node: NodeSecAgg) -> list[bytes]:
    return [node._masking_key.export_private_bytes(unprotected=True)]


def test_walker_finds_planted_values() -> None:
    # The walker itself must be able to fail.
    run = run_protocol(N, LENGTH)
    planted = run.inputs[2].copy()
    run.coordinator._planted = {"x": [planted]}  # type: ignore[attr-defined]
    assert any(
        isinstance(o, np.ndarray) and np.array_equal(o, planted) for o in _walk(run.coordinator)
    )


@pytest.mark.parametrize(
    "dropouts",
    [Dropouts(), Dropouts(after_shares={1}), Dropouts(after_upload={2}), Dropouts(after_keys={3})],
    ids=["none", "after-shares", "after-upload", "after-keys"],
)
def test_coordinator_never_holds_an_individual_input(dropouts: Dropouts) -> None:
    # Inputs of distinct magnitudes, so that no single input equals a partial sum by chance.
    inputs = {i: np.full(LENGTH, 1 << (8 * i), dtype=np.uint64) for i in range(N)}
    checks = {"states": 0, "arrays": 0}

    def inspect(coordinator: Any) -> None:
        checks["states"] += 1
        for obj in _walk(coordinator):
            if isinstance(obj, np.ndarray):
                checks["arrays"] += 1
                for x in inputs.values():
                    assert not (obj.shape == x.shape and np.array_equal(obj, x))

    run = run_protocol(N, LENGTH, dropouts, inputs=inputs, observe=inspect)
    assert run.result is not None
    assert checks["states"] > 4 * N - 4
    assert checks["arrays"] > 0, "the walk must see the coordinator's running sum"


def test_coordinator_holds_no_node_secret_after_a_successful_run() -> None:
    run = run_protocol(N, LENGTH, Dropouts(after_shares={1}))
    assert run.result is not None
    secrets = {s for node in run.nodes.values() for s in _node_secrets(node)}
    held = {o for o in _walk(run.coordinator) if isinstance(o, bytes)}
    assert not secrets & held


@pytest.mark.parametrize(
    "dropouts",
    [
        Dropouts(after_upload={0, 1, 2}),  # t = 5 of 6: seeds lack shares
        Dropouts(after_shares={0}, after_upload={1, 2}),  # a dropped key lacks shares too
    ],
)
def test_abort_reconstructs_nothing(dropouts: Dropouts, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def spy(share_sets: Any, threshold: int) -> list[bytes]:
        calls.extend(share_sets)  # one entry per secret
        return combine_batch(share_sets, threshold)

    monkeypatch.setattr(recovery, "combine_batch", spy)
    run = run_protocol(N, LENGTH, dropouts)
    assert run.error is not None
    assert run.coordinator.stage is Stage.ABORTED
    assert calls == []
    # Nothing secret, nor the masked sum, stays in the coordinator.
    held = list(_walk(run.coordinator))
    assert not any(isinstance(o, np.ndarray) for o in held)
    node_secrets = {s for node in run.nodes.values() for s in _node_secrets(node)}
    assert not node_secrets & {o for o in held if isinstance(o, bytes)}


def test_successful_run_does_reconstruct_through_the_spy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Control for the test above: the spy does see reconstructions when the run succeeds.
    calls: list[Any] = []

    def spy(share_sets: Any, threshold: int) -> list[bytes]:
        calls.extend(share_sets)  # one entry per secret
        return combine_batch(share_sets, threshold)

    monkeypatch.setattr(recovery, "combine_batch", spy)
    run = run_protocol(N, LENGTH, Dropouts(after_shares={0}))
    assert run.result is not None
    assert len(calls) == N - 1 + 1  # five seeds and one masking key


def test_error_messages_contain_no_secret_material() -> None:
    run = run_protocol(N, LENGTH, Dropouts(after_upload={0, 1, 2}))
    text = str(run.error)
    for node in run.nodes.values():
        for secret in _node_secrets(node):
            assert secret.hex() not in text
