"""Parameter choice (k, t) and the SecAgg+ neighbour graph."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from federation.errors import ProtocolError
from federation.protocols.secagg import (
    DEFAULT_DROPOUT_TOLERANCE,
    MAX_DROPOUT_TOLERANCE,
    MAX_SLOTS,
    MAX_VECTOR_LENGTH,
    MIN_SLOTS,
    SecAggParams,
    make_params,
    neighbour_count,
    threshold_for,
)
from federation.protocols.secagg.graph import (
    build_graph,
    check_graph,
    complete_graph,
    components,
    harary_graph,
    prune,
    share_point,
)
from federation.protocols.secagg.params import validate_params


@pytest.mark.parametrize(
    ("n", "k"), [(3, 2), (10, 9), (21, 20), (22, 20), (100, 20), (1000, 30), (10**4, 40)]
)
def test_neighbour_count(n: int, k: int) -> None:
    assert neighbour_count(n) == k


def test_neighbour_count_grows_logarithmically() -> None:
    assert neighbour_count(MAX_SLOTS) == 46
    for n in (64, 512, 4096, MAX_SLOTS):
        assert neighbour_count(n) <= 3 * math.log2(n) + 2


@pytest.mark.parametrize(
    ("group", "tolerance", "t"),
    [
        (10, 0.3, 7),
        (21, 0.3, 15),
        (31, 0.3, 22),
        (3, 0.3, 3),
        (3, 0.45, 2),
        (21, 0.0, 21),
        (21, 0.45, 12),
    ],
)
def test_threshold_rule(group: int, tolerance: float, t: int) -> None:
    assert threshold_for(group, tolerance) == t
    assert t > group / 2
    assert group - t == min(math.floor(tolerance * group), group - group // 2 - 1)


def test_make_params_small_job_is_complete() -> None:
    params = make_params("j", 10, 4)
    assert params.neighbours == complete_graph(10)
    assert params.threshold == 7
    assert (params.job_id, params.slots, params.vector_length) == ("j", 10, 4)


@pytest.mark.parametrize("n", [22, 57, 300])
def test_make_params_large_job_is_sparse_regular_connected(n: int) -> None:
    params = make_params("j", n, 4)
    k = neighbour_count(n)
    assert all(len(adjacent) == k for adjacent in params.neighbours)
    check_graph(params.neighbours, n)  # symmetric, sorted, connected
    assert params.threshold == threshold_for(k + 1, DEFAULT_DROPOUT_TOLERANCE)


def test_sparse_graph_is_random() -> None:
    assert make_params("j", 200, 4).neighbours != make_params("j", 200, 4).neighbours


def test_harary_graph_stays_connected_when_fewer_than_k_drop() -> None:
    graph = harary_graph(40, 6)
    # Remove the ring's worst case: 5 (< k) nodes that are consecutive on the ring.
    for start in range(40):
        ring_order = _ring_order(graph)
        removed = {ring_order[(start + i) % 40] for i in range(5)}
        assert len(components(set(range(40)) - removed, graph)) == 1


def _ring_order(graph: tuple[tuple[int, ...], ...]) -> list[int]:
    # In H(6, n) each node's two nearest ring neighbours are the ones sharing 4 neighbours.
    order = [0]
    previous = None
    while len(order) < len(graph):
        u = order[-1]
        candidates = [
            v
            for v in graph[u]
            if v != previous and v not in order and len(set(graph[u]) & set(graph[v])) == 4
        ]
        previous = u
        order.append(candidates[0])
    return order


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("j", 2, 4), {}),
        (("j", 1, 4), {}),
        (("j", MAX_SLOTS + 1, 4), {}),
        (("j", 3.0, 4), {}),
        (("j", True, 4), {}),
        (("j", 5, 0), {}),
        (("j", 5, MAX_VECTOR_LENGTH + 1), {}),
        (("j", 5, 2.0), {}),
        (("", 5, 4), {}),
        ((b"j", 5, 4), {}),
        (("j" * 257, 5, 4), {}),
        (("j", 5, 4), {"dropout_tolerance": -0.1}),
        (("j", 5, 4), {"dropout_tolerance": MAX_DROPOUT_TOLERANCE + 0.01}),
        (("j", 5, 4), {"dropout_tolerance": 0.5}),
        (("j", 5, 4), {"dropout_tolerance": "0.3"}),
        (("j", 5, 4), {"dropout_tolerance": True}),
    ],
)
def test_make_params_rejects_nonsense(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        make_params(*args, **kwargs)


def test_minimum_slots_is_three() -> None:
    assert MIN_SLOTS == 3
    assert make_params("j", 3, 1).threshold == 3
    assert make_params("j", 3, 1, dropout_tolerance=0.45).threshold == 2


def _ring(n: int) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(sorted({(u - 1) % n, (u + 1) % n})) for u in range(n))


@pytest.mark.parametrize(
    "change",
    [
        {"threshold": 1},
        {"threshold": 4},  # larger than a group of 3
        {"threshold": "2"},
        {"slots": 7},
        {"vector_length": 0},
        {"job_id": ""},
        {"neighbours": ((1,), (0,), (0,), (0,), (0,), (0,), (0,), (0,))},  # asymmetric
        {"neighbours": tuple((u,) for u in range(8))},  # self loops
        {"neighbours": tuple(tuple(reversed(a)) for a in _ring(8))},  # unsorted
        {"neighbours": ((1, 9), *_ring(8)[1:])},  # out of range
        {"neighbours": ((1,), (0,), (3,), (2,), (5,), (4,), (7,), (6,))},  # disconnected
        {"neighbours": [list(a) for a in _ring(8)]},  # mutable, unhashable
    ],
)
def test_validate_params_rejects_tampered(change: dict[str, Any]) -> None:
    good = SecAggParams("j", 8, 4, _ring(8), 2)
    validate_params(good)
    with pytest.raises(ProtocolError):
        validate_params(replace(good, **change))


def test_validate_params_rejects_minority_threshold() -> None:
    params = make_params("j", 10, 4)
    with pytest.raises(ProtocolError, match="majority"):
        validate_params(replace(params, threshold=5))


def test_validate_params_rejects_non_params() -> None:
    with pytest.raises(ProtocolError):
        validate_params("params")  # type: ignore[arg-type]


def test_harary_graph_rejects_bad_degree() -> None:
    for degree in (3, 0, 19, 20):
        with pytest.raises(ProtocolError):
            harary_graph(20, degree)
    assert build_graph(5, 10) == complete_graph(5)


def test_components_and_prune() -> None:
    ring = _ring(8)
    assert components({0, 1, 2, 4, 5}, ring) == [frozenset({0, 1, 2}), frozenset({4, 5})]
    assert components(set(), ring) == []
    # Threshold 3 of groups of 3: removing one node removes its neighbours, and so on.
    assert prune(set(range(8)) - {0}, ring, 3) == frozenset()
    assert prune(set(range(8)), ring, 3) == frozenset(range(8))
    assert prune(set(range(8)) - {0}, ring, 2) == frozenset(range(1, 8))


def test_share_point_is_rank_in_group() -> None:
    graph = make_params("j", 50, 4).neighbours
    for owner in (0, 17, 49):
        group = sorted((owner, *graph[owner]))
        assert [share_point(graph, owner, h) for h in group] == list(range(1, len(group) + 1))
