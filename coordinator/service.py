"""The coordinator: directory, jobs and persistence behind one backend object.

:class:`Coordinator` implements :class:`~federation.transport.backend.CoordinatorBackend`;
``serve()`` puts it behind the gRPC server. It holds the directory ("logically
centralized") but never data: it sees dataset schemas, masked vectors and the
released aggregates only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.directory import Directory, NodeSession
from coordinator.jobs import JobManager, JobSettings
from coordinator.store import Store
from federation._version import __version__
from federation.errors import ProtocolError
from federation.messages import (
    PROTOCOL_VERSION,
    AuditReceipt,
    CoordinatorInfo,
    DatasetInfo,
    EncryptedShare,
    Heartbeat,
    JobEvent,
    JobRecord,
    NodeInfo,
    NodeToCoordinator,
    Protocol,
    QueryRequest,
    Registered,
    Registration,
    SecAggFromNode,
    TaskFailure,
    TaskStatus,
)
from federation.transport.access import RateLimit
from federation.transport.backend import Outbox
from federation.transport.security import TransportSecurity
from federation.transport.server import (
    DEFAULT_MAX_CALLS,
    CoordinatorServer,
    start_coordinator_server,
)

__all__ = ["MIN_SILENCE", "Coordinator", "CoordinatorSettings"]

MIN_SILENCE = 15.0
"""Seconds of silence, at least, before a node that is still connected is taken offline."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoordinatorSettings:
    """Everything a coordinator needs to start."""

    database: str | Path = "federation-coordinator.db"
    """SQLite file for the directory and job records (``:memory:`` keeps nothing)."""
    heartbeat_interval: float = 5.0
    """Seconds between node heartbeats; a node silent for 3 intervals is offline."""
    jobs: JobSettings = field(default_factory=JobSettings)


class Coordinator:
    """The coordinator service (transport-independent)."""

    def __init__(self, settings: CoordinatorSettings | None = None) -> None:
        self.settings = settings or CoordinatorSettings()
        self.store = Store(self.settings.database)
        interrupted = self.store.fail_interrupted_jobs(
            "the coordinator restarted while this job was running; nothing was released"
        )
        if interrupted:
            log.warning("marked %d interrupted job(s) as failed", interrupted)
        self.directory = Directory(self.store)
        self.jobs = JobManager(self.directory, self.store, self.settings.jobs)
        self._server: CoordinatorServer | None = None
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    # --- CoordinatorBackend ---------------------------------------------------

    def info(self) -> CoordinatorInfo:
        """Version and the protocols this coordinator runs."""
        return CoordinatorInfo(
            version=f"federation/{__version__}",
            protocol_version=PROTOCOL_VERSION,
            protocols=tuple(Protocol),
        )

    def list_datasets(self) -> list[DatasetInfo]:
        """The directory of logical datasets."""
        return self.directory.datasets()

    def list_nodes(self) -> list[NodeInfo]:
        """Known nodes and their liveness."""
        return self.directory.nodes()

    def run_query(self, request: QueryRequest) -> Iterator[JobEvent]:
        """Run a query as a job."""
        return self.jobs.submit(request)

    def forget_node(self, name: str, by: str) -> None:
        """Remove an offline node from the directory (``by``: who asked)."""
        self.directory.forget(name, by)

    def get_job(self, job_id: str) -> JobRecord:
        """A recorded job."""
        return self.store.job(job_id)

    def attach_node(
        self, registration: Registration, outbox: Outbox, peer: str, certificate: bytes = b""
    ) -> object:
        """Register a node and acknowledge it."""
        session = self.directory.attach(registration, outbox, peer, certificate)
        outbox.put(Registered(session.name, self.settings.heartbeat_interval))
        return session

    def node_message(self, session: object, message: NodeToCoordinator) -> None:
        """Dispatch a node's message."""
        if not isinstance(session, NodeSession):
            raise TypeError("not a session of this coordinator")
        now = time.time()  # our clock
        session.last_seen = now  # any message shows the node alive, not only heartbeats
        if isinstance(message, Heartbeat):
            self.directory.heartbeat(session, now, message.budgets)
        elif isinstance(message, (SecAggFromNode, EncryptedShare, TaskFailure, TaskStatus)):
            self.jobs.route(session, message)
        elif isinstance(message, AuditReceipt):
            session.receipt(message.entry)
        else:
            raise ProtocolError(f"unexpected {type(message).__name__} on a registered stream")

    def detach_node(self, session: object) -> None:
        """A node's stream ended."""
        if isinstance(session, NodeSession):
            self.directory.detach(session)

    # --- lifecycle ----------------------------------------------------------------

    def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        security: TransportSecurity | None = None,
        rate: RateLimit | None = None,
        max_calls: int = DEFAULT_MAX_CALLS,
    ) -> CoordinatorServer:
        """Start the gRPC server and the liveness watchdog; returns at once.

        ``security``: mutual TLS from the federation's PKI; ``None`` serves plaintext
        (with a warning), for local tests and simulations only. ``max_calls``: calls
        served at once; every connected node holds one.
        """
        if security is None:
            security = TransportSecurity.insecure("the coordinator")
        self._server = start_coordinator_server(
            self,
            host,
            port,
            security=security,
            rate=rate,
            audit=self.store.audit.log,
            max_calls=max_calls,
        )
        self._watchdog = threading.Thread(
            target=self._watch, name="coordinator-watchdog", daemon=True
        )
        self._watchdog.start()
        return self._server

    @property
    def address(self) -> str:
        """``host:port`` of the running server."""
        if self._server is None:
            raise RuntimeError("the coordinator is not serving; call serve() first")
        return self._server.address

    def _watch(self) -> None:
        interval = self.settings.heartbeat_interval
        # A node that dies closes its stream (noticed at once); silence only reveals a
        # half-open connection, and a saturated machine can hold a heartbeat back for
        # seconds: three intervals, but never less than MIN_SILENCE.
        silence = max(3 * interval, MIN_SILENCE)
        while not self._stop.wait(interval):
            self.directory.expire_stale(silence)

    def close(self) -> None:
        """Stop serving, abort running jobs, close the database."""
        self._stop.set()
        self.jobs.abort_all("the coordinator is shutting down; nothing was released")
        for session in self.directory.online_sessions():
            self.directory.detach(session)
        if self._server is not None:
            self._server.stop(grace=1.0)
            self._server = None
        self.store.close()
