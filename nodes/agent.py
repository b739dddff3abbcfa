"""The node agent: dials the coordinator, registers, serves tasks, reconnects.

Data holders open no inbound port. The agent keeps one stream to the
coordinator, sends heartbeats on it, and runs each task on its own thread.
If the stream breaks it reconnects with exponential backoff.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from federation.crypto.keys import X25519KeyPair
from federation.errors import (
    AuditIntegrityError,
    ConfigError,
    CoordinatorUnavailableError,
    FederationError,
    RateLimitError,
    SessionReplacedError,
)
from federation.messages import (
    AuditReceipt,
    ErrorInfo,
    Heartbeat,
    NodeToCoordinator,
    Registered,
    Registration,
    SecAggToNode,
    TaskAssignment,
    TaskCancelled,
    TaskFailure,
)
from federation.protocols.he.masks import mask_key_message
from federation.transport.node_link import GrpcNodeLink, LinkClosed, NodeLink
from federation.transport.security import TransportSecurity
from nodes.approvals import APPROVALS_FILE, ApprovalBook
from nodes.audit import NodeAudit, describe_failure
from nodes.budget import LEDGER_FILE, BudgetLedger, NodeBudgets
from nodes.config import NodeConfig
from nodes.datasets import LocalData
from nodes.he_task import HETask
from nodes.roster import signer_for
from nodes.task import DropoutStage, SecAggTask

__all__ = ["AGENT_VERSION", "NodeAgent"]

log = logging.getLogger(__name__)

AGENT_VERSION = "federation-node/0.1"

_FALLBACK_HEARTBEAT = 1.0
"""Seconds between heartbeats when the coordinator asks for a nonsense interval."""


class NodeAgent:
    """A node agent serving the datasets of one NodeConfig."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        data: LocalData | None = None,
        die_at: DropoutStage | None = None,
        reconnect: bool = True,
        link_factory: Callable[[str], NodeLink] | None = None,
    ) -> None:
        self.config = config
        self.data = data or LocalData(config.datasets, threads=config.duckdb_threads)
        self._die_at = die_at
        self._link_factory = link_factory or self._grpc_link
        self._security = (
            TransportSecurity.mutual_tls(config.credentials, server_name=config.server_name)
            if config.credentials is not None
            else TransportSecurity.insecure(f"node {config.name}")
        )
        credentials = self._security.credentials
        if credentials is not None and credentials.identity.name != config.name:
            raise ConfigError(
                f"node {config.name!r} was given the credentials of "
                f"{credentials.identity.role.value} {credentials.identity.name!r}; a node "
                "serves only under its own identity"
            )
        self._reconnect = reconnect and die_at is None
        self._stop = threading.Event()
        self.registered = threading.Event()
        self.dead = threading.Event()
        self._link: NodeLink | None = None
        self._tasks: dict[str, SecAggTask | HETask] = {}
        # Session key for zero-sum masks in homomorphic jobs; never leaves this process.
        self._mask_keys = X25519KeyPair.generate()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{config.name}-compute")
        self._thread: threading.Thread | None = None
        self.budgets: NodeBudgets | None = None
        """The DP ledger (None without a state_dir: DP queries are refused)."""
        if config.state_dir is not None:
            self.budgets = NodeBudgets(
                BudgetLedger(config.state_dir / LEDGER_FILE),
                self.data.policy,
                lambda: tuple(s.name for s in self.data.schemas),
                on_charge=self._report_budgets,
            )
        self.approvals: ApprovalBook | None = None
        """Tasks awaiting the operator's approval (None without a state_dir: a dataset
        with manual approval then refuses every task)."""
        if config.state_dir is not None:
            self.approvals = ApprovalBook(config.state_dir / APPROVALS_FILE)
        self.audit = NodeAudit(config.name, config.state_dir)
        """The node's own audit log and its check of the coordinator's."""

    def _mask_key_signature(self) -> bytes:
        """This node's certificate-key signature over its mask session key (none on
        plaintext)."""
        credentials = self._security.credentials
        if credentials is None:
            return b""
        return signer_for(credentials)(mask_key_message(self._mask_keys.public_bytes))

    def _grpc_link(self, address: str) -> NodeLink:
        return GrpcNodeLink(address, self._security)

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Run the agent on a background thread."""
        self._thread = threading.Thread(
            target=self.run, name=f"node-{self.config.name}", daemon=True
        )
        self._thread.start()

    def run(self) -> None:
        """Connect and serve until stopped, reconnecting with backoff."""
        delay = 0.5
        while not self._stop.is_set():
            link = self._link_factory(self.config.coordinator)
            audit_key, audit_size, audit_pending = self.audit.registration()
            try:
                registered = link.open(
                    Registration(
                        node_name=self.config.name,
                        datasets=self.data.schemas,
                        agent_version=AGENT_VERSION,
                        mask_public_key=self._mask_keys.public_bytes,
                        mask_key_signature=self._mask_key_signature(),
                        policies=self.data.policies,
                        audit_key=audit_key,
                        audit_size=audit_size,
                        audit_pending=audit_pending,
                    )
                )
            except (CoordinatorUnavailableError, RateLimitError) as exc:
                # Both pass: the coordinator comes back, the rate limit refills. Any other
                # refusal (identity, schema conflict) needs the operator: give up.
                log.warning("node %s: %s; retrying in %.1f s", self.config.name, exc.message, delay)
                link.close()
                if not self._reconnect or self._stop.wait(delay):
                    break
                delay = min(delay * 2, 30.0)
                continue
            except FederationError as exc:
                log.error(
                    "node %s: registration refused: [%s] %s",
                    self.config.name,
                    exc.code,
                    exc.message,
                )
                link.close()
                break
            delay = 0.5
            self._link = link
            self.registered.set()
            log.info("node %s: registered with %s", self.config.name, self.config.coordinator)
            self._serve(link, registered)
            self.registered.clear()
            self._cancel_tasks()
            link.close()
            if not self._reconnect or self._stop.is_set():
                break
            self._stop.wait(delay)
        self.dead.set()

    def stop(self) -> None:
        """Stop serving and close the connection."""
        self._stop.set()
        if self._link is not None:
            self._link.close()
        self._cancel_tasks()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        # A computation still running reads the data: let it end before closing the data
        # (DuckDB refuses to close a connection that is busy).
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.data.close()
        self.audit.close()

    def kill(self) -> None:
        """Die abruptly, as a crashed machine would (fault injection)."""
        self._stop.set()
        if self._link is not None:
            self._link.kill()
        self._cancel_tasks()

    # --- serving ----------------------------------------------------------------------

    def _serve(self, link: NodeLink, registered: Registered) -> None:
        interval = _heartbeat_interval(registered.heartbeat_interval)
        next_beat = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                link.send(self._heartbeat())
                next_beat = now + interval
            message = link.receive(timeout=min(0.5, interval))
            if message is None:
                continue
            if isinstance(message, LinkClosed):
                if isinstance(message.error, SessionReplacedError):
                    # Another agent serves under this name now: reconnecting would
                    # only take the name back and forth. The newer one stays.
                    log.error("node %s: %s; stopping", self.config.name, message.error.message)
                    self._stop.set()
                elif not self._stop.is_set():
                    log.warning(
                        "node %s: stream ended: %s", self.config.name, message.error.message
                    )
                return
            self._dispatch(message)

    def _heartbeat(self) -> Heartbeat:
        budgets = self.budgets.snapshot() if self.budgets is not None else ()
        return Heartbeat(sent_at=time.time(), budgets=budgets)

    def _report_budgets(self) -> None:
        """Mirror the ledger in the directory at once after a charge (on the task's
        stream, so it arrives before the task's contribution)."""
        self._send(self._heartbeat())

    def _send(self, message: NodeToCoordinator) -> None:
        link = self._link
        if link is not None:
            link.send(message)

    def _dispatch(self, message: object) -> None:
        if isinstance(message, TaskAssignment):
            self._start_task(message)
        elif isinstance(message, SecAggToNode):
            with self._lock:
                task = self._tasks.get(message.job_id)
            if isinstance(task, SecAggTask):
                task.deliver(message.message)
            else:
                log.debug(
                    "node %s: secagg message for job %s ignored", self.config.name, message.job_id
                )
        elif isinstance(message, TaskCancelled):
            with self._lock:
                task = self._tasks.pop(message.job_id, None)
            if task is not None:
                log.info(
                    "node %s: job %s cancelled: %s",
                    self.config.name,
                    message.job_id,
                    message.reason.message,
                )
                task.cancel()
        else:
            log.debug("node %s: ignoring %s", self.config.name, type(message).__name__)

    def _start_task(self, assignment: TaskAssignment) -> None:
        try:
            self.audit.check(assignment)
        except AuditIntegrityError as exc:
            log.critical(describe_failure(self.config.name, exc))
            self._send(TaskFailure(assignment.job_id, ErrorInfo(exc.code, exc.message)))
            self._stop.set()  # stop serving: run() ends and sets ``dead``
            if self._link is not None:
                self._link.close(flush=2.0)  # the refusal reaches the coordinator first
            return
        with self._lock:
            for job_id in [j for j, t in self._tasks.items() if t.finished.is_set()]:
                del self._tasks[job_id]
            if assignment.job_id in self._tasks:
                self._send(
                    TaskFailure(
                        assignment.job_id,
                        ErrorInfo("protocol_error", "this job was already assigned to this node"),
                    )
                )
                return
            task: SecAggTask | HETask
            if assignment.he is not None:
                task = HETask(
                    assignment,
                    self.data,
                    self._send,
                    self._mask_keys,
                    die_at=self._die_at,
                    die=self.kill,
                    budgets=self.budgets,
                    approvals=self.approvals,
                    on_finish=self._finished,
                    credentials=self._security.credentials,
                )
            else:
                task = SecAggTask(
                    assignment,
                    self.data,
                    self._send,
                    compute_pool=self._pool,
                    die_at=self._die_at,
                    die=self.kill,
                    budgets=self.budgets,
                    approvals=self.approvals,
                    on_finish=self._finished,
                    credentials=self._security.credentials,
                )
            self._tasks[assignment.job_id] = task
        log.info(
            "node %s: task for job %s on dataset %s",
            self.config.name,
            assignment.job_id,
            assignment.dataset,
        )
        task.start()

    def _finished(self, assignment: TaskAssignment, error: ErrorInfo | None, charged: bool) -> None:
        """Record how a task ended in the node's log; send the signed receipt."""
        try:
            entry = self.audit.receipt(
                assignment,
                dataset_version=self.data.version(assignment.dataset),
                policy=self.data.policy(assignment.dataset),
                charged=charged,
                error=error,
            )
        except Exception:  # the log is the node's own disk: report, keep serving
            log.exception("node %s: could not record job %s", self.config.name, assignment.job_id)
            return
        self._send(AuditReceipt(entry))

    def _cancel_tasks(self) -> None:
        with self._lock:
            tasks = list(self._tasks.values())
            self._tasks.clear()
        for task in tasks:
            task.cancel()


def _heartbeat_interval(asked: float) -> float:
    """The coordinator's heartbeat interval, within [0.1, 60] seconds; a NaN, infinite or
    non-positive one (which would silence the node) falls back to one second."""
    if not math.isfinite(asked) or asked <= 0:
        return _FALLBACK_HEARTBEAT
    return min(max(asked, 0.1), 60.0)
