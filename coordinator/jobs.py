"""Jobs: plan a query, run its aggregation, record and release the outcome.

Each job runs in its own thread so that it finishes (and is recorded) even if
the analyst who submitted it disconnects; the analyst's call only consumes the
job's events.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from coordinator.directory import Directory, NodeSession
from coordinator.he_run import HERun, he_spec
from coordinator.secagg_run import SecAggRun
from coordinator.store import Store
from federation.dp.mechanism import dp_fields, project_consistent
from federation.dp.report import PrivacyReport, privacy_report
from federation.errors import (
    FederationError,
    NodeTaskError,
    ProtocolError,
    TooFewParticipantsError,
    error_class_for_code,
)
from federation.messages import (
    EncryptedJobResult,
    EncryptedShare,
    ErrorInfo,
    JobAccepted,
    JobCompleted,
    JobEvent,
    JobProgress,
    JobResult,
    QueryRequest,
    SecAggFromNode,
    TaskFailure,
    TaskStatus,
)
from federation.protocols.he.registry import scheme
from federation.protocols.secagg import make_params
from federation.query import BoundQuery, bind_sql, finalize, parse_sql

__all__ = ["JobManager", "JobSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSettings:
    """How the coordinator runs jobs."""

    round_timeout: float = 60.0
    """Seconds each protocol round waits for slow nodes before dropping them."""
    min_nodes: int = 3
    """Fewest nodes whose data may be combined into a released result (secure
    aggregation itself needs at least 3: with 2, each learns the other's input)."""
    dropout_tolerance: float = 0.4
    """Fraction of each node's neighbourhood that may drop out during a job (at most
    0.45: the Shamir threshold stays a strict majority of every neighbourhood)."""


class _Job:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.events: queue.Queue[JobEvent | FederationError] = queue.Queue()
        self.run: SecAggRun | HERun | None = None


class JobManager:
    """Starts jobs and routes node messages to the job they belong to."""

    def __init__(self, directory: Directory, store: Store, settings: JobSettings) -> None:
        self._directory = directory
        self._store = store
        self._settings = settings
        self._lock = threading.Lock()
        self._running: dict[str, _Job] = {}
        directory.on_detach(self._node_lost)

    def submit(self, request: QueryRequest) -> Iterator[JobEvent]:
        """Start a job and yield its events; raises the job's error if it fails."""
        job = _Job(uuid.uuid4().hex)
        submitted = time.time()
        dp = request.dp
        self._store.record_job_started(
            job.job_id,
            request.sql,
            request.protocol,
            "",
            submitted,
            analyst=request.analyst or (dp.analyst if dp is not None else None),
            epsilon=dp.epsilon if dp is not None else None,
        )
        with self._lock:
            self._running[job.job_id] = job
        thread = threading.Thread(
            target=self._execute,
            args=(job, request, submitted),
            name=f"job-{job.job_id[:8]}",
            daemon=True,
        )
        thread.start()
        while True:
            event = job.events.get()
            if isinstance(event, FederationError):
                raise event
            yield event
            if isinstance(event, JobCompleted):
                return

    def _execute(self, job: _Job, request: QueryRequest, submitted: float) -> None:
        try:
            self._run(job, request, submitted)
        except FederationError as exc:
            exc.job_id = job.job_id
            log.info("job %s failed: [%s] %s", job.job_id, exc.code, exc.message)
            self._store.record_job_failed(job.job_id, ErrorInfo(exc.code, exc.message), time.time())
            job.events.put(exc)
        except Exception:
            log.exception("job %s failed unexpectedly", job.job_id)
            error = FederationError(
                "internal error while running the job; see the coordinator log",
                job_id=job.job_id,
            )
            self._store.record_job_failed(
                job.job_id, ErrorInfo(error.code, error.message), time.time()
            )
            job.events.put(error)
        finally:
            with self._lock:
                self._running.pop(job.job_id, None)

    def _run(self, job: _Job, request: QueryRequest, submitted: float) -> None:
        parsed = parse_sql(request.sql)
        schema, sessions = self._directory.plan_targets(parsed.dataset, self._settings.min_nodes)
        bound = bind_sql(request.sql, schema)
        if request.dp is not None:
            dp_fields(bound)  # a query DP cannot answer fails before any node is asked
        if request.protocol.homomorphic:
            if not request.public_key:
                raise ProtocolError(
                    f"a {request.protocol.value} query needs the analyst's public key "
                    "(the SDK sends it; raw callers must set public_key)"
                )
            scheme(request.protocol.value).check_public_key(request.public_key)
        self._store.record_job_selected(
            job.job_id,
            bound.dataset,
            len(sessions),
            node_names=tuple(s.name for s in sessions),
            computation=bound.canonical_sql,
            fingerprint=bound.fingerprint,
        )
        job.events.put(
            JobAccepted(
                job_id=job.job_id,
                sql=request.sql,
                protocol=request.protocol,
                dataset=bound.dataset,
                selected_nodes=len(sessions),
                submitted_at=submitted,
            )
        )

        def progress(stage: str, done: int, total: int) -> None:
            job.events.put(JobProgress(job.job_id, stage, done, total))

        if request.protocol.homomorphic:
            self._run_homomorphic(job, request, bound, sessions, progress)
        else:
            self._run_secagg(job, request, bound, sessions, progress)

    def _run_secagg(
        self,
        job: _Job,
        request: QueryRequest,
        bound: BoundQuery,
        sessions: list[NodeSession],
        progress: Callable[[str, int, int], None],
    ) -> None:
        params = make_params(
            job.job_id,
            len(sessions),
            bound.vector_length,
            dropout_tolerance=self._settings.dropout_tolerance,
        )
        if all(s.certificate for s in sessions):
            # Every node has an identity: the actively secure variant (signed keys and
            # survivor set, bound to this job and computation).
            params = dataclasses.replace(params, signed=True, fingerprint=bound.fingerprint)
        run = SecAggRun(
            params,
            sessions,
            dataset=bound.dataset,
            sql=request.sql,
            fingerprint=bound.fingerprint,
            round_timeout=self._settings.round_timeout,
            on_progress=progress,
            min_cell_size=self._directory.min_cell_size(bound.dataset, sessions),
            dp=request.dp,
        )
        job.run = run
        result = run.run()
        contributors = len(result.contributors)
        if contributors < self._settings.min_nodes:
            raise TooFewParticipantsError(
                f"only {contributors} node(s) completed the protocol; at least "
                f"{self._settings.min_nodes} are required before a result is released"
            )
        vector = result.vector
        privacy: PrivacyReport | None = None
        if request.dp is not None:
            # Post-processing of the noisy sum (no privacy cost): consistent counts.
            vector = project_consistent(bound, vector, dp_fields(bound))
            privacy = privacy_report(
                bound, request.dp, params.threshold, params.slots, contributors
            )
        # Suppress small groups on the securely aggregated counts (noisy under DP), at
        # the threshold every node checked before computing (the largest of theirs).
        table = finalize(bound, vector, min_cell_size=run.min_cell_size)
        finished = time.time()
        self._store.record_job_succeeded(job.job_id, table, contributors, finished)
        log.info(
            "job %s released a %d-row result from %d node(s)",
            job.job_id,
            len(table.rows),
            contributors,
        )
        job.events.put(JobResult(job.job_id, table))
        self._completed(job, request, len(sessions), contributors, finished, privacy=privacy)

    def _run_homomorphic(
        self,
        job: _Job,
        request: QueryRequest,
        bound: BoundQuery,
        sessions: list[NodeSession],
        progress: Callable[[str, int, int], None],
    ) -> None:
        spec = he_spec(job.job_id, bound.vector_length, len(sessions))
        run = HERun(
            request.protocol,
            scheme(request.protocol.value),
            request.public_key,
            spec,
            sessions,
            dataset=bound.dataset,
            sql=request.sql,
            fingerprint=bound.fingerprint,
            round_timeout=self._settings.round_timeout,
            on_progress=progress,
            dp=request.dp,
        )
        job.run = run
        ciphertext = run.run()
        finished = time.time()
        digest = hashlib.sha256(ciphertext).hexdigest()
        self._store.record_job_released_encrypted(job.job_id, digest, len(sessions), finished)
        log.info(
            "job %s released a %s ciphertext (%d bytes, sha256 %s) from %d node(s)",
            job.job_id,
            request.protocol.value,
            len(ciphertext),
            digest[:16],
            len(sessions),
        )
        job.events.put(
            EncryptedJobResult(
                job_id=job.job_id,
                protocol=request.protocol,
                fingerprint=bound.fingerprint,
                schema=bound.schema,
                length=spec.length,
                ring_bits=spec.ring_bits,
                parties=spec.parties,
                ciphertext=ciphertext,
            )
        )
        privacy = None
        if request.dp is not None:
            n = len(sessions)
            privacy = privacy_report(bound, request.dp, n, n, n)
        self._completed(job, request, len(sessions), len(sessions), finished, privacy=privacy)

    @staticmethod
    def _completed(
        job: _Job,
        request: QueryRequest,
        selected: int,
        contributing: int,
        finished: float,
        *,
        privacy: PrivacyReport | None = None,
    ) -> None:
        job.events.put(
            JobCompleted(
                job_id=job.job_id,
                protocol=request.protocol,
                selected_nodes=selected,
                contributing_nodes=contributing,
                finished_at=finished,
                privacy=privacy,
            )
        )

    # --- node traffic ---------------------------------------------------------

    def route(
        self,
        session: NodeSession,
        message: SecAggFromNode | EncryptedShare | TaskFailure | TaskStatus,
    ) -> None:
        """Hand a node's job message to its job (late or unknown jobs are ignored)."""
        with self._lock:
            job = self._running.get(message.job_id)
        run = job.run if job is not None else None
        if run is None:
            log.debug("ignoring a message for job %s (not running)", message.job_id)
            return
        if isinstance(message, TaskFailure):
            if run.involves(session):
                cls = error_class_for_code(message.error.code)
                if cls is FederationError:
                    cls = NodeTaskError
                run.fail(cls(f"node {session.name!r} refused the task: {message.error.message}"))
            return
        if isinstance(message, TaskStatus):
            awaiting = run.status(session, message)
            self._store.record_task_status(message, session.name, awaiting=awaiting)
            return
        if isinstance(message, EncryptedShare) and isinstance(run, HERun):
            run.deliver(session, message.data)
        elif isinstance(message, SecAggFromNode) and isinstance(run, SecAggRun):
            run.deliver(session, message.message)
        else:
            log.warning(
                "job %s: ignoring a %s from %s (wrong protocol)",
                message.job_id,
                type(message).__name__,
                session.name,
            )

    def _node_lost(self, session: NodeSession) -> None:
        with self._lock:
            runs = [j.run for j in self._running.values() if j.run is not None]
        for run in runs:
            run.node_lost(session)

    def abort_all(self, reason: str) -> None:
        """Abort every running job (coordinator shutdown)."""
        with self._lock:
            runs = [j.run for j in self._running.values() if j.run is not None]
        for run in runs:
            run.fail(FederationError(reason))
