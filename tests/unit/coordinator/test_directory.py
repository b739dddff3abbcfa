"""The directory: liveness, logical datasets, schema conflicts, planning targets."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from coordinator.directory import Directory
from coordinator.store import Store
from federation.errors import (
    ConfigError,
    SchemaMismatchError,
    SessionReplacedError,
    TooFewParticipantsError,
    UnknownDatasetError,
    UnknownNodeError,
)
from federation.messages import DatasetStatus, Registration
from federation.schema import Column, ColumnType, DatasetSchema
from federation.transport.backend import OutboxClosed, QueueOutbox

A = DatasetSchema("t", (Column("x", ColumnType.DOUBLE),))
B = DatasetSchema("t", (Column("x", ColumnType.INTEGER),))


def _directory() -> Directory:
    return Directory(Store(":memory:"))


def test_same_name_on_several_nodes_is_one_logical_dataset() -> None:
    d = _directory()
    for name in ("n1", "n2", "n3"):
        d.attach(Registration(name, (A,)), QueueOutbox(), "peer")
    [info] = d.datasets()
    assert (info.schema, info.node_count, info.online_node_count) == (A, 3, 3)
    schema, sessions = d.plan_targets("t", minimum=2)
    assert schema == A
    assert [s.name for s in sessions] == ["n1", "n2", "n3"]


def test_offline_nodes_stay_in_the_directory_but_are_not_planned() -> None:
    d = _directory()
    lost = []
    d.on_detach(lambda s: lost.append(s.name))
    s1 = d.attach(Registration("n1", (A,)), QueueOutbox(), "p")
    d.attach(Registration("n2", (A,)), QueueOutbox(), "p")
    d.detach(s1)
    assert lost == ["n1"]
    [info] = d.datasets()
    assert (info.node_count, info.online_node_count) == (2, 1)
    with pytest.raises(TooFewParticipantsError, match="1 online node"):
        d.plan_targets("t", minimum=2)
    assert {n.name: n.online for n in d.nodes()} == {"n1": False, "n2": True}


def test_conflicting_schemas_are_reported_and_refused() -> None:
    d = _directory()
    d.attach(Registration("n1", (A,)), QueueOutbox(), "p")
    d.attach(Registration("n2", (B,)), QueueOutbox(), "p")
    [info] = d.datasets()
    assert info.status is DatasetStatus.CONFLICT
    assert "n1" in info.detail
    assert "n2" in info.detail
    with pytest.raises(SchemaMismatchError, match="different schemas"):
        d.plan_targets("t", minimum=1)


def test_unknown_dataset_names_the_known_ones() -> None:
    d = _directory()
    d.attach(Registration("n1", (A,)), QueueOutbox(), "p")
    with pytest.raises(UnknownDatasetError, match=r"'nope'.*\['t'\]"):
        d.plan_targets("nope", minimum=1)


def test_forgetting_an_offline_node_removes_it_and_survives_a_restart() -> None:
    store = Store(":memory:")
    d = Directory(store)
    s1 = d.attach(Registration("n1", (A,)), QueueOutbox(), "p")
    d.attach(Registration("n2", (B,)), QueueOutbox(), "p")
    with pytest.raises(ConfigError, match="'n1' is online"):
        d.forget("n1", "admin")
    d.detach(s1)
    with pytest.raises(UnknownNodeError, match="'n3'"):
        d.forget("n3", "admin")
    d.forget("n1", "admin")
    assert [n.name for n in d.nodes()] == ["n2"]
    [info] = d.datasets()  # n1 no longer counts
    assert (info.schema, info.node_count, info.status.value) == (B, 1, "ok")
    assert [n.name for n in Directory(store).nodes()] == ["n2"]  # as the store has it
    with pytest.raises(UnknownNodeError):
        d.forget("n1", "admin")


class _PausingStore(Store):
    """A store whose next registration write waits for ``release`` once it is made."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.paused = threading.Event()
        self.release = threading.Event()
        self.pause_next = False

    def record_registration(self, *args: Any, **kwargs: Any) -> None:
        super().record_registration(*args, **kwargs)
        if self.pause_next:
            self.pause_next = False
            self.paused.set()
            assert self.release.wait(10)


def test_a_removal_racing_a_registration_leaves_store_and_directory_agreeing() -> None:
    store = _PausingStore()
    d = Directory(store)
    d.detach(d.attach(Registration("n1", (A,)), QueueOutbox(), "p"))  # known, offline
    store.pause_next = True
    registering = threading.Thread(
        target=d.attach, args=(Registration("n1", (A,)), QueueOutbox(), "p")
    )
    registering.start()
    assert store.paused.wait(10)  # n1's row is written, its session not yet listed
    outcome: list[BaseException | None] = []

    def forget() -> None:
        try:
            d.forget("n1", "admin")
            outcome.append(None)
        except ConfigError as exc:
            outcome.append(exc)

    forgetting = threading.Thread(target=forget)
    forgetting.start()
    forgetting.join(0.3)
    assert forgetting.is_alive()  # waits for the registration to finish
    store.release.set()
    registering.join(10)
    forgetting.join(10)
    assert isinstance(outcome[0], ConfigError)  # by then n1 is online
    assert [n.name for n in d.nodes()] == ["n1"]
    assert [n.name for n in Directory(store).nodes()] == ["n1"]  # the store agrees


def test_reconnect_replaces_the_old_session_and_closes_it() -> None:
    d = _directory()
    old_box = QueueOutbox()
    old = d.attach(Registration("n1", (A,)), old_box, "p")
    new = d.attach(Registration("n1", (A,)), QueueOutbox(), "p")
    assert not old.online
    assert old_box.closed
    end = old_box.get(0)
    assert isinstance(end, OutboxClosed)
    assert isinstance(end.error, SessionReplacedError)  # the old stream is told why
    assert "registered again" in end.error.message
    assert d.online_sessions() == [new]
    d.detach(old)  # a late detach of the old stream does not remove the new one
    assert d.online_sessions() == [new]


def test_stale_sessions_expire() -> None:
    d = _directory()
    s = d.attach(Registration("n1", (A,)), QueueOutbox(), "p")
    s.last_seen -= 100
    assert d.expire_stale(10.0) == ["n1"]
    assert d.online_sessions() == []


@pytest.mark.parametrize(
    ("registration", "match"),
    [
        (Registration("bad name!", (A,)), "node name"),
        (Registration("n", (A, A)), "twice"),
        (Registration("n", (A,), protocol_version=99), "protocol version"),
    ],
)
def test_bad_registrations_are_refused(registration: Registration, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _directory().attach(registration, QueueOutbox(), "p")
