"""The SecAgg+ neighbour graph (Bell et al. 2020) and the graph algorithms the protocol needs.

Each node shares its secrets with, and masks against, only its neighbours. For a
small job the graph is complete (plain SecAgg, Bonawitz et al. 2017). Otherwise it
is the Harary graph ``H(k, n)`` with randomly permuted labels: the slots are placed
on a ring in an order drawn from the operating system's CSPRNG, and each is joined
to the ``k / 2`` nearest ring positions on either side. The graph is ``k``-regular
and ``k``-connected, and with ``k`` even the survivors stay connected as long as no
survivor loses ``k / 2`` or more of its neighbours.

>>> graph = complete_graph(3)
>>> graph
((1, 2), (0, 2), (0, 1))
>>> components({0, 2}, graph)
[frozenset({0, 2})]
"""

from __future__ import annotations

import secrets
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import chain

import numpy as np

from federation.errors import ProtocolError

__all__ = [
    "Neighbours",
    "build_graph",
    "check_graph",
    "complete_graph",
    "components",
    "harary_graph",
    "prune",
    "share_point",
]

Neighbours = tuple[tuple[int, ...], ...]
"""``graph[u]`` is the sorted tuple of ``u``'s neighbour slots."""


def share_point(graph: Sequence[Sequence[int]], owner: int, holder: int) -> int:
    """Return the Shamir evaluation point of ``holder``'s share of ``owner``'s secrets.

    It is ``holder``'s 1-based rank in ``owner``'s group (``owner`` and its
    neighbours, sorted), so every secret is shared at points ``1 .. k + 1`` and the
    coordinator reuses one set of Lagrange coefficients for all secrets whose
    lowest-ranked holders answered. ``holder`` must be in the group.

    >>> share_point(((1, 2), (0, 2), (0, 1)), owner=1, holder=2)
    3
    """
    neighbours = graph[owner]
    return bisect_left(neighbours, holder) + (2 if owner < holder else 1)


def complete_graph(slots: int) -> Neighbours:
    """Return the complete graph on ``slots`` nodes."""
    return tuple(tuple(v for v in range(slots) if v != u) for u in range(slots))


def harary_graph(slots: int, degree: int) -> Neighbours:
    """Return the Harary graph ``H(degree, slots)`` on a ring order drawn from a CSPRNG.

    Args:
        slots: Number of nodes.
        degree: Even number of neighbours per node, ``2 <= degree < slots - 1``.

    Raises:
        ProtocolError: If ``degree`` is odd or out of range.
    """
    if degree % 2 or not 2 <= degree < slots - 1:
        raise ProtocolError(
            f"a Harary graph needs an even degree in [2, {slots - 2}] for {slots} slots, "
            f"got {degree}"
        )
    ring = list(range(slots))
    secrets.SystemRandom().shuffle(ring)
    neighbours: list[set[int]] = [set() for _ in range(slots)]
    for position, u in enumerate(ring):
        for step in range(1, degree // 2 + 1):
            v = ring[(position + step) % slots]
            neighbours[u].add(v)
            neighbours[v].add(u)
    return tuple(tuple(sorted(adjacent)) for adjacent in neighbours)


def build_graph(slots: int, degree: int) -> Neighbours:
    """Return the complete graph if ``degree >= slots - 1``, else a random Harary graph."""
    if degree >= slots - 1:
        return complete_graph(slots)
    return harary_graph(slots, degree)


def check_graph(graph: Sequence[Sequence[int]], slots: int) -> None:
    """Check that ``graph`` is a well-formed neighbour graph on ``slots`` nodes.

    Well formed: one sorted tuple of distinct ints per slot, in range, no self loops,
    symmetric, and connected. Every node checks the graph of each job it joins, so
    the common case (a well-formed graph) is checked with a few passes in C and
    numpy; any defect is then located, and named, by the element-wise checks.

    Raises:
        ProtocolError: Naming the first defect found.
    """
    if not isinstance(graph, tuple) or len(graph) != slots:
        raise ProtocolError(f"the neighbour graph must be a tuple of {slots} tuples")
    if not _looks_well_formed(graph, slots):
        _check_elementwise(graph, slots)
    if len(components(range(slots), graph)) != 1:
        raise ProtocolError("the neighbour graph is not connected")


_VECTORISE_FROM = 512
"""Graphs with fewer edges (both directions) are checked element-wise only."""


def _looks_well_formed(graph: tuple[Sequence[int], ...], slots: int) -> bool:
    """Every check of :func:`check_graph` but connectivity, vectorised (True if all pass)."""
    if set(map(type, graph)) != {tuple}:
        return False
    flat = list(chain.from_iterable(graph))
    if not set(map(type, flat)) <= {int}:
        return False
    if len(flat) < _VECTORISE_FROM:
        return False  # small: the element-wise checks are as fast
    try:
        heads = np.array(flat, dtype=np.int64)
    except OverflowError:
        return False
    tails = np.repeat(np.arange(slots, dtype=np.int64), [len(adjacent) for adjacent in graph])
    same_row = tails[1:] == tails[:-1]
    if (
        heads.min() < 0
        or heads.max() >= slots
        or (heads == tails).any()
        or (np.diff(heads)[same_row] <= 0).any()  # sorted and distinct within each row
    ):
        return False
    # Symmetric: the edges u -> v, keyed u * slots + v (sorted, as the rows are), are
    # exactly the reversed edges v -> u.
    return bool(np.array_equal(tails * slots + heads, np.sort(heads * slots + tails)))


def _check_elementwise(graph: tuple[Sequence[int], ...], slots: int) -> None:
    """Raise naming the first defect (the element-wise form of :func:`_looks_well_formed`)."""
    for u, adjacent in enumerate(graph):
        if not isinstance(adjacent, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in adjacent
        ):
            raise ProtocolError(f"neighbours of slot {u} must be a tuple of ints")
        if list(adjacent) != sorted(set(adjacent)):
            raise ProtocolError(f"neighbours of slot {u} must be sorted and distinct")
        if adjacent and (adjacent[0] < 0 or adjacent[-1] >= slots):
            raise ProtocolError(f"neighbours of slot {u} must lie in [0, {slots})")
        if u in adjacent:
            raise ProtocolError(f"slot {u} is listed as its own neighbour")
    sets = [frozenset(adjacent) for adjacent in graph]
    for u, adjacent in enumerate(graph):
        for v in adjacent:
            if u not in sets[v]:
                raise ProtocolError(f"the neighbour graph is not symmetric: {u} -> {v} only")


def components(alive: Iterable[int], graph: Sequence[Sequence[int]]) -> list[frozenset[int]]:
    """Return the connected components of the subgraph induced on ``alive``, largest first."""
    remaining = set(alive)
    found: list[frozenset[int]] = []
    while remaining:
        start = remaining.pop()
        component = {start}
        frontier = [start]
        while frontier:
            reached = remaining.intersection(graph[frontier.pop()])
            if reached:
                remaining -= reached
                component |= reached
                frontier.extend(reached)
        found.append(frozenset(component))
    found.sort(key=len, reverse=True)
    return found


def prune(alive: Iterable[int], graph: Sequence[Sequence[int]], threshold: int) -> frozenset[int]:
    """Drop, repeatedly, every node with fewer than ``threshold`` alive in its group.

    A node's group is itself plus its neighbours; its secrets are shared among its
    group, so a node whose group has fewer than ``threshold`` alive members could
    not have them recovered and must not take part.

    Returns:
        The largest subset of ``alive`` in which every node's group keeps
        ``threshold`` alive members (possibly empty).
    """
    kept = set(alive)
    queue = list(kept)
    while queue:
        u = queue.pop()
        if u not in kept:
            continue
        if 1 + sum(1 for v in graph[u] if v in kept) < threshold:
            kept.discard(u)
            queue.extend(v for v in graph[u] if v in kept)
    return frozenset(kept)
