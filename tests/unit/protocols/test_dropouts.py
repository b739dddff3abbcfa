"""Whole runs with dropouts at every round: exact sums, honest contributor lists, clean aborts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from federation.errors import TooFewParticipantsError
from federation.protocols.secagg import SecAggParams, Stage, make_params

from .harness import Dropouts, Run, random_inputs, run_protocol

N = 10  # complete graph, t = 7: three of ten may drop
LENGTH = 33


def _assert_sum(run: Run, contributors: set[int]) -> None:
    assert run.error is None, run.error
    assert run.result is not None
    assert run.result.contributors == tuple(sorted(contributors))
    assert np.array_equal(run.result.vector, run.expected_sum(contributors))
    assert run.coordinator.stage is Stage.DONE


def test_no_dropouts() -> None:
    run = run_protocol(N, LENGTH)
    _assert_sum(run, set(range(N)))


def test_sum_wraps_modulo_2_64() -> None:
    big = {i: np.full(LENGTH, 2**64 - 1 - i, dtype=np.uint64) for i in range(N)}
    run = run_protocol(N, LENGTH, inputs=big)
    _assert_sum(run, set(range(N)))
    assert run.result is not None
    assert int(run.result.vector[0]) == (sum(2**64 - 1 - i for i in range(N))) % 2**64


@pytest.mark.parametrize(
    ("dropouts", "contributors"),
    [
        (Dropouts(before_keys={3}), set(range(N)) - {3}),
        (Dropouts(after_keys={3}), set(range(N)) - {3}),
        (Dropouts(after_shares={3}), set(range(N)) - {3}),
        (Dropouts(after_upload={3}), set(range(N))),  # counted: its seed is recovered
        (Dropouts(before_keys={0}, after_keys={5}, after_shares={9}), set(range(1, 9)) - {5}),
        (Dropouts(after_shares={1, 2, 3}), set(range(4, N)) | {0}),
        (Dropouts(after_upload={1, 2, 3}), set(range(N))),
        (Dropouts(after_shares={1}, after_upload={2, 3}), set(range(N)) - {1}),
    ],
    ids=[
        "before-keys",
        "after-keys",
        "after-shares",
        "after-upload",
        "one-per-round",
        "three-after-shares",
        "three-after-upload",
        "mixed",
    ],
)
def test_dropouts_within_tolerance(dropouts: Dropouts, contributors: set[int]) -> None:
    run = run_protocol(N, LENGTH, dropouts)
    _assert_sum(run, contributors)


@pytest.mark.parametrize(
    ("dropouts", "stage"),
    [
        (Dropouts(before_keys={0, 1, 2, 3}), "ADVERTISE_KEYS"),
        (Dropouts(after_keys={0, 1, 2, 3}), "SHARE_KEYS"),
        (Dropouts(after_shares={0, 1, 2, 3}), "MASKED_INPUT"),
        (Dropouts(after_upload={0, 1, 2, 3}), "UNMASK"),
        (Dropouts(before_keys={0}, after_keys={1}, after_shares={2}, after_upload={3}), "UNMASK"),
        (Dropouts(after_shares={0, 1}, after_upload={2, 3}), "UNMASK"),
    ],
)
def test_too_many_dropouts_abort_cleanly(dropouts: Dropouts, stage: str) -> None:
    run = run_protocol(N, LENGTH, dropouts)
    assert run.result is None
    assert isinstance(run.error, TooFewParticipantsError)
    assert f"stage {stage}" in str(run.error)
    assert "at least t=7" in str(run.error) or "of 7 shares" in str(run.error)
    assert run.coordinator.stage is Stage.ABORTED
    with pytest.raises(TooFewParticipantsError.__mro__[1]):  # ProtocolError
        run.coordinator.result()


def test_sparse_graph_with_dropouts_in_every_round() -> None:
    n = 40  # k = 20, t = 15 of 21: a random Harary graph
    params = make_params("job-sparse", n, LENGTH)
    assert len(params.neighbours[0]) == 20
    dropouts = Dropouts(before_keys={0}, after_keys={7}, after_shares={13, 21}, after_upload={30})
    run = run_protocol(params, dropouts=dropouts)
    _assert_sum(run, set(range(n)) - {0, 7, 13, 21})


def test_sparse_graph_too_many_dropouts_in_one_neighbourhood() -> None:
    n = 40
    params = make_params("job-sparse", n, LENGTH)
    victim = 5
    # Seven of slot 5's neighbours drop before uploading: its group keeps 14 < t = 15.
    dropped = set(params.neighbours[victim][:7])
    run = run_protocol(params, dropouts=Dropouts(after_shares=dropped))
    assert isinstance(run.error, TooFewParticipantsError)
    assert run.coordinator.stage is Stage.ABORTED


def test_thin_neighbourhood_is_pruned_and_cascades_at_key_round() -> None:
    n = 40
    params = make_params("job-sparse", n, LENGTH)
    victim = 11
    # Seven of slot 11's neighbours never advertise: slot 11 cannot share among t = 15,
    # so it is left out, which thins its neighbours' groups in turn; on a ring lattice
    # the loss spreads to every node and the run aborts at the first round.
    gone = set(params.neighbours[victim][:7])
    run = run_protocol(params, dropouts=Dropouts(before_keys=gone))
    assert isinstance(run.error, TooFewParticipantsError)
    assert "stage ADVERTISE_KEYS" in str(run.error)
    assert "33 nodes advertised keys (0 with enough of their group)" in str(run.error)
    # Six such dropouts are within the tolerance (b = 6 of 21): everyone else sums.
    fewer = set(params.neighbours[victim][:6])
    run = run_protocol(params, dropouts=Dropouts(before_keys=fewer))
    _assert_sum(run, set(range(n)) - fewer)


def _ring_params(n: int = 8) -> SecAggParams:
    ring = tuple(tuple(sorted({(u - 1) % n, (u + 1) % n})) for u in range(n))
    return SecAggParams("job-ring", n, LENGTH, ring, 2)


def test_disconnected_survivors_abort_instead_of_revealing_partial_sums() -> None:
    # On a ring, losing slots 0 and 4 splits the survivors into {1, 2, 3} and {5, 6, 7}:
    # unmasking would give the coordinator each half's sum.
    run = run_protocol(_ring_params(), dropouts=Dropouts(after_shares={0, 4}))
    assert isinstance(run.error, TooFewParticipantsError)
    assert "split into 2 groups" in str(run.error)
    assert run.coordinator.stage is Stage.ABORTED


def test_ring_with_one_dropout_still_sums() -> None:
    run = run_protocol(_ring_params(), dropouts=Dropouts(after_shares={0}))
    _assert_sum(run, set(range(1, 8)))


def test_tolerance_zero_requires_everyone() -> None:
    assert run_protocol(6, LENGTH, tolerance=0.0).result is not None
    run = run_protocol(6, LENGTH, Dropouts(after_upload={2}), tolerance=0.0)
    assert isinstance(run.error, TooFewParticipantsError)


def test_three_nodes_is_the_minimum_and_works() -> None:
    run = run_protocol(3, LENGTH, tolerance=0.45)
    _assert_sum(run, {0, 1, 2})
    run = run_protocol(3, LENGTH, Dropouts(after_upload={1}), tolerance=0.45)
    _assert_sum(run, {0, 1, 2})


def test_same_inputs_different_runs_mask_differently() -> None:
    inputs = random_inputs(N, LENGTH, seed=7)
    masked: list[np.ndarray[Any, np.dtype[np.uint64]]] = []

    def spy(stage: str, message: Any) -> Any:
        if stage == "input" and message.sender == 0:
            masked.append(message.vector.copy())
        return message

    a = run_protocol(N, LENGTH, inputs=inputs, tamper=spy)
    b = run_protocol(N, LENGTH, inputs=inputs, tamper=spy)
    assert a.result is not None
    assert b.result is not None
    assert np.array_equal(a.result.vector, b.result.vector)
    assert not np.array_equal(masked[0], masked[1])
