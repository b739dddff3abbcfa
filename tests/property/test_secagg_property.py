"""Property: for random n, vectors and dropouts, SecAgg+ returns the exact sum or aborts cleanly.

Success must happen whenever no group loses more than ``b = k + 1 - t`` members over
the run (the documented guarantee); when it happens, the contributors are exactly
the nodes that uploaded, and the vector is their inputs' sum modulo 2**64. An abort
is a TooFewParticipantsError with the coordinator ABORTED and no result.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from federation.errors import ProtocolError
from federation.protocols.secagg import Stage, make_params

_HARNESS = Path(__file__).resolve().parents[1] / "unit" / "protocols" / "harness.py"
_spec = importlib.util.spec_from_file_location("secagg_property_harness", _HARNESS)
assert _spec is not None
assert _spec.loader is not None
harness: Any = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness
_spec.loader.exec_module(harness)

ROUNDS = ("before_keys", "after_keys", "after_shares", "after_upload")


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=3, max_value=30))
    length = draw(st.integers(min_value=1, max_value=40))
    tolerance = draw(st.sampled_from([0.0, 0.2, 0.3, 0.45]))
    # Each node drops at one round or never; dropouts are rare enough to often succeed.
    fate = draw(st.lists(st.sampled_from([None] * 14 + list(ROUNDS)), min_size=n, max_size=n))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    extreme = draw(st.booleans())
    return {
        "n": n,
        "length": length,
        "tolerance": tolerance,
        "fate": fate,
        "seed": seed,
        "extreme": extreme,
    }


@settings(
    max_examples=int(os.environ.get("SECAGG_PROPERTY_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_sum_is_exact_or_run_aborts_cleanly(scenario: dict[str, Any]) -> None:
    n, length = scenario["n"], scenario["length"]
    params = make_params("job-prop", n, length, dropout_tolerance=scenario["tolerance"])
    rng = np.random.default_rng(scenario["seed"])
    if scenario["extreme"]:
        inputs = {i: np.full(length, 2**64 - 1 - i, dtype=np.uint64) for i in range(n)}
    else:
        inputs = {i: rng.integers(0, 2**64, size=length, dtype=np.uint64) for i in range(n)}
    drops = {r: {i for i, f in enumerate(scenario["fate"]) if f == r} for r in ROUNDS}
    run = harness.run_protocol(params, dropouts=harness.Dropouts(**drops), inputs=inputs)

    lost = {i for i, f in enumerate(scenario["fate"]) if f is not None}
    budget = len(params.neighbours[0]) + 1 - params.threshold
    within_tolerance = all(len(lost & {u, *params.neighbours[u]}) <= budget for u in range(n))
    event("sparse graph" if params.slots > len(params.neighbours[0]) + 1 else "complete graph")
    outcome = "aborted" if run.result is None else "summed"
    event(f"{outcome} ({'within' if within_tolerance else 'beyond'} tolerance)")
    if run.result is None:
        assert run.error is not None
        assert not within_tolerance, f"aborted although within tolerance: {run.error}"
        assert run.coordinator.stage is Stage.ABORTED
        with pytest.raises(ProtocolError):
            run.coordinator.result()
        return
    result = run.result
    assert run.coordinator.stage is Stage.DONE
    assert set(result.contributors) == run.uploaded
    assert list(result.contributors) == sorted(result.contributors)
    expected = np.zeros(length, dtype=np.uint64)
    for slot in result.contributors:
        np.add(expected, inputs[slot], out=expected)
    assert np.array_equal(result.vector, expected)
    if within_tolerance:
        # Nobody is left out beyond the nodes that dropped before uploading.
        early = drops["before_keys"] | drops["after_keys"] | drops["after_shares"]
        assert run.uploaded == set(range(n)) - early


@st.composite
def share_batches(draw: st.DrawFn) -> tuple[int, list[list[bytes]], list[bytes]]:
    from federation.crypto.shamir import split_secret

    t = draw(st.integers(min_value=2, max_value=8))
    holders = draw(st.integers(min_value=t, max_value=t + 4))
    xs = draw(
        st.lists(
            st.integers(min_value=1, max_value=2**32 - 1),
            min_size=holders,
            max_size=holders,
            unique=True,
        )
    )
    count = draw(st.integers(min_value=0, max_value=24))
    sets: list[list[bytes]] = []
    secrets: list[bytes] = []
    for _ in range(count):
        secret = draw(st.binary(min_size=32, max_size=32))
        shares = split_secret(secret, t, xs)
        # Mostly the same first t holders (one packed group), sometimes another subset.
        use = sorted(xs)[:t] if draw(st.booleans()) else draw(st.permutations(xs))[:t]
        sets.append([shares[x] for x in use])
        secrets.append(secret)
    return t, sets, secrets


@settings(max_examples=int(os.environ.get("SECAGG_PROPERTY_EXAMPLES", "30")), deadline=None)
@given(share_batches())
def test_batched_recovery_equals_set_by_set(
    batch: tuple[int, list[list[bytes]], list[bytes]],
) -> None:
    from federation.crypto.shamir import combine_shares
    from federation.crypto.shamir_batch import combine_batch

    t, sets, secrets = batch
    assert combine_batch(sets, t) == [combine_shares(s, t) for s in sets] == secrets
