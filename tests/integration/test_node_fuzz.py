"""A real node agent fed random and malformed coordinator messages.

A fake coordinator (a real gRPC server implementing ``NodeService.Connect`` through
the generated servicer base class) accepts a real :class:`~nodes.agent.NodeAgent`'s
stream, acknowledges its registration, and then sends it nonsense: tasks with garbage
SQL, unknown datasets, wrong protocol parameters, bogus SecAgg rounds, random bytes.
Whatever arrives, the node must not crash: it refuses a bad task with a TaskFailed,
ignores what it cannot use, or drops the stream and reconnects. After every example a
valid task still gets the node's first protocol message (its SecAgg keys).

Every task carries a valid proof about the fake coordinator's audit log: a node that
is handed a failing proof stops serving on purpose (it cannot trust that coordinator).
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import federation as fed
from coordinator.audit import AuditTrail
from federation.errors import FederationError
from federation.messages import Protocol, SecAggSetup, TaskAssignment
from federation.protocols.secagg import make_params
from federation.query import bind_query, parse_query
from federation.transport.serde_node import (
    coordinator_message_from_proto,
    coordinator_message_to_proto,
)
from federation.transport.status import STATUS_BY_CODE
from federation.v1 import common_pb2, node_pb2, node_pb2_grpc
from nodes.agent import NodeAgent
from nodes.config import DatasetConfig, NodeConfig, SourceFormat

SCHEMA = fed.DatasetSchema(
    "t",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b")),
        fed.Column("x", fed.ColumnType.DOUBLE),
    ),
)
NODE = "fuzz-target"
REPLY_TIMEOUT = 10.0  # a node silent for this long on a valid task has hung
PROBE_SQL = "SELECT g, COUNT(*), AVG(x) FROM t GROUP BY g"
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _fingerprint(sql: str) -> tuple[str, int]:
    bound = bind_query(parse_query(sql), SCHEMA)
    return bound.fingerprint, bound.vector_length


VALID_SQL = [PROBE_SQL, "SELECT COUNT(*) FROM t", "SELECT SUM(x) FROM t WHERE g = 'a'"]
PLANS = {sql: _fingerprint(sql) for sql in VALID_SQL}


# --- the fake coordinator -------------------------------------------------------------


class _Stream:
    """One node stream at the fake coordinator: what to send, what arrived."""

    def __init__(self, register: node_pb2.Register) -> None:
        self.register = register
        self.outbox: queue.Queue[node_pb2.CoordinatorMessage | bytes] = queue.Queue()
        self.received: list[node_pb2.NodeMessage] = []
        self.ended = threading.Event()
        self._cond = threading.Condition()

    def send(self, message: node_pb2.CoordinatorMessage | bytes) -> None:
        self.outbox.put(message)

    def read(self, requests: Iterator[node_pb2.NodeMessage]) -> None:
        try:
            for message in requests:
                with self._cond:
                    self.received.append(message)
                    self._cond.notify_all()
        except grpc.RpcError:
            pass  # the node dropped the stream
        finally:
            self.ended.set()
            with self._cond:
                self._cond.notify_all()

    def wait_for(
        self, wanted: Callable[[node_pb2.NodeMessage], bool], timeout: float, since: int = 0
    ) -> node_pb2.NodeMessage | None:
        """The first message from index ``since`` on that ``wanted`` accepts (None if the
        stream ended first)."""

        def found() -> node_pb2.NodeMessage | None:
            return next((m for m in self.received[since:] if wanted(m)), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None or self.ended.is_set(), timeout)
            return found()

    def messages(self) -> list[node_pb2.NodeMessage]:
        with self._cond:
            return list(self.received)


class FakeCoordinator(node_pb2_grpc.NodeServiceServicer):
    """Acknowledges every registration, then sends whatever the test queues."""

    def __init__(self) -> None:
        self.heartbeat_interval = 0.5
        self._streams: list[_Stream] = []
        self._cond = threading.Condition()

    def Connect(
        self, request_iterator: Iterator[node_pb2.NodeMessage], context: grpc.ServicerContext
    ) -> Iterator[node_pb2.CoordinatorMessage | bytes]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("body") != "register":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "register first")
        stream = _Stream(first.register)
        threading.Thread(target=stream.read, args=(request_iterator,), daemon=True).start()
        yield node_pb2.CoordinatorMessage(
            registered=node_pb2.Registered(
                node_name=first.register.node_name, heartbeat_interval=self.heartbeat_interval
            )
        )
        with self._cond:
            self._streams.append(stream)
            self._cond.notify_all()
        while not stream.ended.is_set() and context.is_active():
            with contextlib.suppress(queue.Empty):
                yield stream.outbox.get(timeout=0.05)

    def current(self, timeout: float = REPLY_TIMEOUT) -> _Stream:
        """The node's live stream (waiting while it reconnects)."""
        with self._cond:
            self._cond.wait_for(
                lambda: bool(self._streams) and not self._streams[-1].ended.is_set(), timeout
            )
            assert self._streams, "the node never connected"
            stream = self._streams[-1]
        assert not stream.ended.is_set(), "the node did not reconnect"
        return stream

    def connections(self) -> int:
        with self._cond:
            return len(self._streams)

    def reconnect(self, timeout: float = REPLY_TIMEOUT) -> _Stream:
        """Make the node drop its stream (bytes it cannot decode); its next stream."""
        before = self.connections()
        self.current().send(b"\xff")
        with self._cond:
            assert self._cond.wait_for(lambda: len(self._streams) > before, timeout)
        return self.current()


def _serialize(message: node_pb2.CoordinatorMessage | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeCoordinator, str]]:
    servicer = FakeCoordinator()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.method_handlers_generic_handler(
        "federation.v1.NodeService",
        {
            "Connect": grpc.stream_stream_rpc_method_handler(
                servicer.Connect,
                request_deserializer=node_pb2.NodeMessage.FromString,
                response_serializer=_serialize,  # raw bytes pass through unchanged
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0).wait()


# --- the real node agent -------------------------------------------------------------


class Node:
    """The agent under test, what it serves, and the audit proof its tasks carry."""

    def __init__(self, fake: FakeCoordinator, address: str, workdir: Path) -> None:
        gen = np.random.default_rng(3)
        path = workdir / "t.csv"
        pd.DataFrame(
            {"g": gen.choice(["a", "b"], 60).astype(object), "x": gen.normal(10.0, 2.0, 60)}
        ).to_csv(path, index=False)
        config = NodeConfig(
            NODE,
            address,
            (DatasetConfig(SCHEMA, path, SourceFormat.CSV),),
            state_dir=workdir / "state",
        )
        self.fake = fake
        self.agent = NodeAgent(config)
        self.trail = AuditTrail(":memory:")
        self.trail.record("fuzz_started")
        # The node pins the log on its first task; from then on the log never grows, so
        # one proof (consistent with what the node accepted) serves every later task.
        self.proof = self.trail.prove(0, {})

    def task(self, job_id: str, sql: str = PROBE_SQL) -> TaskAssignment:
        """A valid task for slot 0 of a 3-node SecAgg run (as the coordinator plans it)."""
        fingerprint, length = PLANS[sql]
        params = make_params(job_id or "job", 3, length)
        return TaskAssignment(
            job_id=job_id,
            dataset="t",
            sql=sql,
            fingerprint=fingerprint,
            protocol=Protocol.SECAGG,
            round_timeout=30.0,
            secagg=SecAggSetup(
                params.slots, 0, params.vector_length, params.threshold, params.neighbours
            ),
            audit=self.proof,
        )

    @property
    def valid_proof(self) -> st.SearchStrategy[node_pb2.AuditProof]:
        """The proof the node accepts, as the one value of a strategy."""
        return st.just(coordinator_message_to_proto(self.task("proof")).task.audit)

    def assert_serves(self) -> None:
        """A valid task gets the node's keys (after a reconnect, if it dropped the stream)."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            stream = self.fake.current(max(0.1, deadline - time.monotonic()))
            job = uuid.uuid4().hex
            stream.send(coordinator_message_to_proto(self.task(job)))
            reply = stream.wait_for(
                lambda m, job=job: (
                    m.WhichOneof("body") in ("secagg", "task_failed")
                    and (m.secagg.job_id == job or m.task_failed.job_id == job)
                ),
                max(0.1, deadline - time.monotonic()),
            )
            if reply is not None:
                assert reply.WhichOneof("body") == "secagg", reply
                assert reply.secagg.WhichOneof("round") == "advertise_keys"
                stream.send(node_pb2.CoordinatorMessage(cancel=node_pb2.CancelTask(job_id=job)))
                return
            assert stream.ended.is_set(), "the node is connected but no longer answers tasks"
            assert time.monotonic() < deadline, "the node did not come back"


@pytest.fixture(scope="module")
def node(
    fake: tuple[FakeCoordinator, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    servicer, address = fake
    target = Node(servicer, address, tmp_path_factory.mktemp("node"))
    target.agent.start()
    assert target.agent.registered.wait(REPLY_TIMEOUT)
    target.assert_serves()  # the node now holds the fake log's head
    target.proof = target.trail.prove(target.proof.head.size, {})
    yield target
    target.agent.stop()


def assert_no_unexpected_node_errors(caplog: pytest.LogCaptureFixture) -> None:
    """The node logged no unexpected error (what it reports as an internal failure)."""
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(("nodes", "federation"))
    ]
    assert not errors, errors


def failures(stream: _Stream) -> list[node_pb2.TaskFailed]:
    return [m.task_failed for m in stream.messages() if m.WhichOneof("body") == "task_failed"]


# --- strategies ----------------------------------------------------------------------

job_ids = st.one_of(st.text(max_size=40), st.binary(min_size=16, max_size=16).map(bytes.hex))
u32 = st.integers(0, 2**32 - 1)
u64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2, 3, 8, 1 << 26]))
small = st.one_of(st.integers(0, 8), u32)
slot_bytes = st.lists(st.builds(node_pb2.SlotBytes, slot=small, data=st.binary(max_size=64)))
secagg_setups = st.builds(
    node_pb2.SecAggSetup,
    slots=small,
    slot=small,
    vector_length=u64,
    threshold=small,
    neighbours=st.lists(
        st.builds(node_pb2.NeighbourList, slots=st.lists(small, max_size=6)), max_size=6
    ),
    signed=st.booleans(),
    certificates=st.lists(st.binary(max_size=64), max_size=3),
)
he_setups = st.builds(
    node_pb2.HESetup,
    scheme=st.sampled_from(["", "paillier", "ckks", "rot13"]),
    public_key=st.binary(max_size=300),
    slot=small,
    parties=small,
    ring_bits=st.one_of(small, st.sampled_from([64, 128, 4096])),
    length=u64,
    peers=slot_bytes,
)
dp_params = st.builds(
    common_pb2.DPParams,
    epsilon=st.one_of(st.floats(), st.sampled_from([0.0, -1.0, 0.25, 1e300])),
    delta=st.one_of(st.floats(), st.sampled_from([0.0, 1e-6, 1.0])),
    analyst=st.text(max_size=10),
)
sqls = st.one_of(
    st.sampled_from(VALID_SQL),
    st.sampled_from(
        [
            "",
            "SELECT",
            "SELECT COUNT(*) FROM nowhere",
            "SELECT x FROM t",
            "SELECT COUNT(*) FROM t; DROP TABLE t",
            "SELECT COUNT(*) FROM read_csv('/etc/passwd')",
            "SELECT COUNT(*) FROM t WHERE g = '",
            "COPY t TO '/tmp/leak.csv'",
        ]
    ),
    st.text(max_size=60),
)


@st.composite
def tasks(
    draw: st.DrawFn, audit: st.SearchStrategy[node_pb2.AuditProof]
) -> node_pb2.CoordinatorMessage:
    """A task with any field wrong, or none (then it starts a real SecAgg task)."""
    sql = draw(sqls)
    fingerprint, length = PLANS.get(sql, ("", 1))
    job = draw(job_ids)
    task = node_pb2.Task(
        job_id=job,
        dataset=draw(st.one_of(st.sampled_from(["t", "t", "u", "", "T"]), st.text(max_size=8))),
        sql=sql,
        fingerprint=draw(st.one_of(st.just(fingerprint), st.text(max_size=64))),
        protocol=draw(st.sampled_from(["secagg", "secagg", "paillier", "ckks", "", "rot13"])),
        round_timeout=draw(st.one_of(st.floats(), st.just(30.0))),
        min_cell_size=draw(small),
    )
    setup = draw(st.sampled_from(["secagg", "valid-secagg", "he", "both", "none"]))
    if setup in ("secagg", "both"):
        task.secagg.CopyFrom(draw(secagg_setups))
    if setup == "valid-secagg":
        params = make_params(job or "job", 3, length)
        task.secagg.CopyFrom(
            node_pb2.SecAggSetup(
                slots=3,
                slot=draw(st.integers(0, 2)),
                vector_length=length,
                threshold=params.threshold,
                neighbours=[node_pb2.NeighbourList(slots=list(n)) for n in params.neighbours],
            )
        )
    if setup in ("he", "both"):
        task.he.CopyFrom(draw(he_setups))
    if draw(st.booleans()):
        task.dp.CopyFrom(draw(dp_params))
    task.audit.CopyFrom(draw(audit))
    return node_pb2.CoordinatorMessage(task=task)


TASK_FIELDS = [
    *("none", "dataset", "sql", "fingerprint", "protocol", "round_timeout", "secagg"),
    *("slot", "threshold", "neighbours", "vector_length", "min_cell_size", "dp", "he"),
]


@st.composite
def one_field_off(draw: st.DrawFn, node: Node, job_id: str) -> node_pb2.CoordinatorMessage:
    """A valid task with one field replaced by nonsense (or none: then it starts)."""
    message = coordinator_message_to_proto(node.task(job_id, draw(st.sampled_from(VALID_SQL))))
    task = message.task
    field = draw(st.sampled_from(TASK_FIELDS))
    if field == "dataset":
        task.dataset = draw(st.one_of(st.sampled_from(["u", "", "T"]), st.text(max_size=8)))
    elif field == "sql":
        task.sql = draw(sqls)
    elif field == "fingerprint":
        task.fingerprint = draw(st.text(max_size=64))
    elif field == "protocol":
        task.protocol = draw(st.sampled_from(["paillier", "ckks", "", "rot13", "SECAGG"]))
    elif field == "round_timeout":
        task.round_timeout = draw(st.floats())
    elif field == "secagg":
        task.secagg.CopyFrom(draw(secagg_setups))
    elif field == "slot":
        task.secagg.slot = draw(small)
    elif field == "threshold":
        task.secagg.threshold = draw(small)
    elif field == "neighbours":
        del task.secagg.neighbours[:]
        task.secagg.neighbours.extend(
            node_pb2.NeighbourList(slots=s) for s in draw(st.lists(st.lists(small, max_size=4)))
        )
    elif field == "vector_length":
        task.secagg.vector_length = draw(u64)
    elif field == "min_cell_size":
        task.min_cell_size = draw(small)
    elif field == "dp":
        task.dp.CopyFrom(draw(dp_params))
    elif field == "he":
        task.he.CopyFrom(draw(he_setups))
    return message


def rounds(job_id: st.SearchStrategy[str]) -> st.SearchStrategy[node_pb2.CoordinatorMessage]:
    """SecAgg rounds with nonsense in them, for ``job_id``."""
    keys = st.builds(
        node_pb2.PublicKeys,
        encryption_key=st.binary(max_size=40),
        masking_key=st.binary(max_size=40),
        signature=st.binary(max_size=70),
    )
    body = st.one_of(
        st.builds(
            lambda k: {"key_roster": node_pb2.KeyRoster(keys=k)},
            st.lists(st.builds(node_pb2.SlotKeys, slot=small, keys=keys), max_size=5),
        ),
        st.builds(lambda c: {"share_delivery": node_pb2.ShareDelivery(ciphertexts=c)}, slot_bytes),
        st.builds(
            lambda s, d, g: {
                "unmask_request": node_pb2.UnmaskRequest(survivors=s, dropped=d, signatures=g)
            },
            st.lists(small, max_size=5),
            st.lists(small, max_size=5),
            slot_bytes,
        ),
        st.builds(
            lambda s: {"consistency_request": node_pb2.ConsistencyRequest(survivors=s)},
            st.lists(small, max_size=5),
        ),
        st.just({}),  # no round set
    )
    return st.builds(
        lambda j, b: node_pb2.CoordinatorMessage(
            secagg=node_pb2.SecAggCoordinatorMessage(job_id=j, **b)
        ),
        job_id,
        body,
    )


def other_messages(
    job_id: st.SearchStrategy[str],
) -> st.SearchStrategy[node_pb2.CoordinatorMessage]:
    return st.one_of(
        st.just(node_pb2.CoordinatorMessage()),  # no body
        st.builds(
            lambda j, c, m: node_pb2.CoordinatorMessage(
                cancel=node_pb2.CancelTask(job_id=j, reason=common_pb2.Error(code=c, message=m))
            ),
            job_id,
            st.text(max_size=10),
            st.text(max_size=20),
        ),
        st.builds(
            lambda n, i: node_pb2.CoordinatorMessage(
                registered=node_pb2.Registered(node_name=n, heartbeat_interval=i)
            ),
            st.text(max_size=10),
            st.floats(),
        ),
    )


# --- the tests -----------------------------------------------------------------------


audit_proofs = st.builds(
    node_pb2.AuditProof,
    head=st.builds(
        common_pb2.SignedHead,
        size=u64,
        timestamp_ms=u64,
        root=st.binary(max_size=40),
        signature=st.binary(max_size=70),
    ),
    public_key=st.binary(max_size=40),
    from_size=u64,
    consistency=st.lists(st.binary(max_size=40), max_size=4),
    inclusions=st.lists(
        st.builds(
            node_pb2.AuditInclusion,
            leaf=st.binary(max_size=40),
            index=u64,
            path=st.lists(st.binary(max_size=40), max_size=3),
        ),
        max_size=3,
    ),
)


def _decodes(raw: bytes) -> node_pb2.CoordinatorMessage | None:
    try:
        return node_pb2.CoordinatorMessage.FromString(raw)
    except DecodeError:  # gRPC ends such a call: the node reconnects
        return None


def test_decoding_any_coordinator_message_raises_only_our_errors() -> None:
    # The node's stream reader survives a FederationError (it logs and ignores the
    # message); anything else would kill the reader and leave the node deaf.
    messages = st.one_of(
        st.binary(max_size=300).map(_decodes),
        tasks(audit_proofs),
        rounds(job_ids),
        other_messages(job_ids),
    )

    @settings(FUZZ, max_examples=400)
    @given(message=messages)
    def fuzz(message: node_pb2.CoordinatorMessage | None) -> None:
        if message is not None:
            with contextlib.suppress(FederationError):
                coordinator_message_from_proto(message)

    fuzz()


def test_fuzzed_coordinator_messages_leave_the_node_serving(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    @settings(FUZZ, max_examples=150)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        live = data.draw(job_ids, label="job with a live task")
        jobs = st.one_of(st.just(live), job_ids)
        messages = data.draw(
            st.lists(
                st.one_of(tasks(node.valid_proof), rounds(jobs), other_messages(jobs)),
                min_size=1,
                max_size=5,
            ),
            label="messages",
        )
        # Often a task that really starts first, so that the rounds reach its state.
        first = data.draw(
            st.one_of(
                st.none(),
                st.just(coordinator_message_to_proto(node.task(live or "job"))),
                one_field_off(node, live),
            ),
            label="first",
        )
        if first is not None:
            messages.insert(0, first)
        stream = node.fake.current()
        for message in messages:
            stream.send(message)
        task_ids = {m.task.job_id for m in messages if m.WhichOneof("body") == "task"}
        for job in task_ids:  # leave no task behind
            stream.send(node_pb2.CoordinatorMessage(cancel=node_pb2.CancelTask(job_id=job)))
        node.assert_serves()
        for failure in failures(stream):
            assert failure.error.code in STATUS_BY_CODE, failure
            assert failure.error.message, failure

    before = node.fake.connections()
    fuzz()
    assert node.fake.connections() == before  # nothing above needed a reconnect
    assert_no_unexpected_node_errors(caplog)


def test_every_task_gets_an_answer_its_keys_or_a_task_failed(node: Node) -> None:
    # Regression: a task that did not decode (no setup, an unknown protocol, a bad
    # round timeout) was only logged at the node: its job waited out the round deadline.
    @settings(FUZZ, max_examples=100)
    @given(
        task=st.one_of(
            tasks(node.valid_proof).filter(lambda m: m.task.job_id != ""),
            st.builds(
                lambda p, j: node_pb2.CoordinatorMessage(
                    task=node_pb2.Task(job_id=j, dataset="t", sql=PROBE_SQL, protocol=p)
                ),
                st.sampled_from(["rot13", "", "secagg"]),
                st.binary(min_size=16, max_size=16).map(bytes.hex),
            ),
        )
    )
    @example(
        task=node_pb2.CoordinatorMessage(
            task=node_pb2.Task(job_id="no-setup", dataset="t", sql=PROBE_SQL, protocol="secagg")
        )
    )
    def fuzz(task: node_pb2.CoordinatorMessage) -> None:
        job = task.task.job_id
        stream = node.fake.current()
        since = len(stream.messages())
        stream.send(task)
        reply = stream.wait_for(
            lambda m: (
                (m.WhichOneof("body") == "task_failed" and m.task_failed.job_id == job)
                or (m.WhichOneof("body") == "secagg" and m.secagg.job_id == job)
            ),
            REPLY_TIMEOUT,
            since,
        )
        stream.send(node_pb2.CoordinatorMessage(cancel=node_pb2.CancelTask(job_id=job)))
        assert reply is not None, f"the node said nothing about task {job!r}"

    fuzz()
    node.assert_serves()


def test_random_bytes_from_the_coordinator_make_the_node_reconnect(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    before = node.fake.connections()

    @settings(FUZZ, max_examples=6)
    @given(blobs=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=3))
    @example(blobs=[b"\xff"])  # undecodable: the node must drop the stream and come back
    def fuzz(blobs: list[bytes]) -> None:
        stream = node.fake.current()
        for blob in blobs:
            stream.send(blob)
        node.assert_serves()

    fuzz()
    assert node.fake.connections() > before  # at least the undecodable example reconnected
    assert_no_unexpected_node_errors(caplog)


def test_a_nonsense_heartbeat_interval_does_not_silence_the_node(node: Node) -> None:
    # Regression: a NaN or infinite interval made the node send one heartbeat, then
    # none: the coordinator would soon have marked it offline.
    try:
        for interval in (math.nan, math.inf):
            node.fake.heartbeat_interval = interval
            stream = node.fake.reconnect()
            deadline = time.monotonic() + 5.0
            while sum(m.WhichOneof("body") == "heartbeat" for m in stream.messages()) < 2:
                assert time.monotonic() < deadline, f"no heartbeats after interval {interval}"
                time.sleep(0.05)
    finally:
        node.fake.heartbeat_interval = 0.5
    node.fake.reconnect()
    node.assert_serves()
