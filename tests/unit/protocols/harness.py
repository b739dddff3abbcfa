"""An in-memory driver for SecAgg+ runs with scripted dropouts (test helper, not a test)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from federation.errors import TooFewParticipantsError
from federation.protocols.secagg import (
    CoordinatorSecAgg,
    NodeSecAgg,
    SecAggParams,
    SecAggResult,
    make_params,
)

Vector = np.ndarray[Any, np.dtype[np.uint64]]


@dataclass
class Dropouts:
    """Slots that go silent before sending the message of each round."""

    before_keys: Collection[int] = ()
    after_keys: Collection[int] = ()  # advertised keys, never shared
    after_shares: Collection[int] = ()  # shared, never uploaded
    after_upload: Collection[int] = ()  # uploaded, never answered the unmask request


@dataclass
class Run:
    """The parties and inputs of one run, and how it ended."""

    params: SecAggParams
    nodes: dict[int, NodeSecAgg]
    coordinator: CoordinatorSecAgg
    inputs: dict[int, Vector]
    uploaded: set[int] = field(default_factory=set)
    result: SecAggResult | None = None
    error: TooFewParticipantsError | None = None

    def expected_sum(self, slots: Collection[int]) -> Vector:
        total = np.zeros(self.params.vector_length, dtype=np.uint64)
        for slot in slots:
            np.add(total, self.inputs[slot], out=total)
        return total


def random_inputs(n: int, length: int, seed: int = 0) -> dict[int, Vector]:
    rng = np.random.default_rng(seed)
    return {i: rng.integers(0, 2**64, size=length, dtype=np.uint64) for i in range(n)}


def run_protocol(
    n: int | SecAggParams,
    length: int = 8,
    dropouts: Dropouts | None = None,
    *,
    inputs: Mapping[int, Vector] | None = None,
    tolerance: float | None = None,
    tamper: Callable[[str, Any], Any] | None = None,
    observe: Callable[[CoordinatorSecAgg], None] | None = None,
) -> Run:
    """Drive a run to its end; record the result or the TooFewParticipantsError.

    ``tamper(stage_name, message)`` may replace any node message before the
    coordinator sees it (identity if it returns the message unchanged);
    ``observe(coordinator)`` is called after every message the coordinator receives
    and every round it closes.
    """
    if isinstance(n, SecAggParams):
        params = n
    elif tolerance is None:
        params = make_params("job-test", n, length)
    else:
        params = make_params("job-test", n, length, dropout_tolerance=tolerance)
    drops = dropouts or Dropouts()
    slots = params.slots
    data = dict(inputs) if inputs is not None else random_inputs(slots, params.vector_length)
    nodes = {i: NodeSecAgg(params, i) for i in range(slots)}
    coordinator = CoordinatorSecAgg(params)
    run = Run(params, nodes, coordinator, data)
    touch = tamper or (lambda _stage, message: message)
    look = observe or (lambda _coordinator: None)

    def deliver(stage: str, message: Any) -> None:
        coordinator.receive(touch(stage, message))
        look(coordinator)

    def advance() -> list[Any]:
        try:
            return coordinator.advance()
        finally:
            look(coordinator)

    try:
        for i in range(slots):
            if i not in drops.before_keys:
                deliver("keys", nodes[i].advertise_keys())
        for roster in advance():
            if roster.recipient not in drops.after_keys:
                deliver("shares", nodes[roster.recipient].share_keys(roster))
        for delivery in advance():
            u = delivery.recipient
            if u not in drops.after_shares:
                deliver("input", nodes[u].mask_input(delivery, data[u]))
                run.uploaded.add(u)
        for request in advance():
            if request.recipient not in drops.after_upload:
                deliver("unmask", nodes[request.recipient].unmask(request))
        assert advance() == []
        run.result = coordinator.result()
    except TooFewParticipantsError as error:
        run.error = error
    return run
