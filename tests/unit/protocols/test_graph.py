"""check_graph on graphs large enough for its vectorised path: same verdicts, same messages."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import pytest

from federation.errors import ProtocolError
from federation.protocols.secagg import graph as graph_module
from federation.protocols.secagg.graph import check_graph, components, harary_graph

N = 120
GOOD = harary_graph(N, 20)  # 2400 directed edges: the vectorised path


def _row(graph: tuple[Any, ...], u: int, row: Any) -> tuple[Any, ...]:
    return (*graph[:u], row, *graph[u + 1 :])


class Slot(enum.IntEnum):
    """An int subclass (not bool): accepted, as by the element-wise check."""

    FIVE = 5


def _drop_edge(g: Any) -> Any:
    return _row(g, 7, g[7][1:])


def _self_loop(g: Any) -> Any:
    return _row(g, 7, tuple(sorted((*g[7], 7))))


def _unsorted(g: Any) -> Any:
    return _row(g, 7, tuple(reversed(g[7])))


def _duplicate(g: Any) -> Any:
    return _row(g, 7, (g[7][0], *g[7]))


def _too_high(g: Any) -> Any:
    return _row(g, 7, (*g[7][:-1], N))


def _negative(g: Any) -> Any:
    return _row(g, 7, (-1, *g[7][1:]))


def _huge(g: Any) -> Any:
    return _row(g, 7, (*g[7][:-1], 2**70))


def _boolean(g: Any) -> Any:
    return _row(g, 0, (True, *g[0][1:])) if g[0][0] == 1 else _row(g, 1, (True, *g[1]))


def _float(g: Any) -> Any:
    return _row(g, 7, (float(g[7][0]), *g[7][1:]))


def _list_row(g: Any) -> Any:
    return _row(g, 7, list(g[7]))


def _disconnected(_: Any) -> Any:
    half = N // 2
    first = [tuple(v for v in range(half) if v != u) for u in range(half)]
    second = [tuple(v for v in range(half, N) if v != u) for u in range(half, N)]
    return tuple(first + second)


DEFECTS: list[Callable[[Any], Any]] = [
    _drop_edge,
    _self_loop,
    _unsorted,
    _duplicate,
    _too_high,
    _negative,
    _huge,
    _boolean,
    _float,
    _list_row,
    _disconnected,
]


def _elementwise_message(graph: Any) -> str:
    try:
        graph_module._check_elementwise(graph, N)
    except ProtocolError as error:
        return str(error)
    assert len(components(range(N), graph)) != 1
    return "the neighbour graph is not connected"


def test_good_graph_passes_the_vectorised_check() -> None:
    assert graph_module._looks_well_formed(GOOD, N)
    check_graph(GOOD, N)


@pytest.mark.parametrize("defect", DEFECTS, ids=lambda f: f.__name__.strip("_"))
def test_defects_are_refused_with_the_elementwise_message(defect: Callable[[Any], Any]) -> None:
    bad = defect(GOOD)
    with pytest.raises(ProtocolError) as raised:
        check_graph(bad, N)
    assert str(raised.value) == _elementwise_message(bad)


def test_int_subclass_entries_are_accepted_like_before() -> None:
    u = GOOD[5][0]  # a neighbour of slot 5
    row = tuple(Slot.FIVE if v == 5 else v for v in GOOD[u])
    assert any(type(v) is Slot for v in row)
    assert not graph_module._looks_well_formed(_row(GOOD, u, row), N)  # element-wise path
    check_graph(_row(GOOD, u, row), N)


def test_components_of_large_graph() -> None:
    alive = set(range(N)) - set(GOOD[0]) - {0}
    parts = components(alive, GOOD)
    assert sorted(v for part in parts for v in part) == sorted(alive)
    assert components(range(N), GOOD) == [frozenset(range(N))]
