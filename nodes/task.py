"""One task at a node: check it, compute locally, take part in secure aggregation.

Each task runs on its own thread with its own inbox, so a slow local
computation never blocks the node's stream. The node trusts nothing the
coordinator says about the computation: it parses and binds the SQL against its
own schema and refuses the task unless the fingerprint matches.

The steps every protocol's task shares (binding and checking the assignment,
approval, DP preparation, the checked local computation, reporting a failure) are in
:mod:`nodes.task_steps`; this module runs them for secure aggregation.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from federation.dp.mechanism import NoisePlan
from federation.errors import FederationError, ProtocolError
from federation.messages import (
    ErrorInfo,
    SecAggCoordinatorRound,
    SecAggFromNode,
    SecAggSetup,
    TaskAssignment,
)
from federation.pki import Credentials
from federation.policy import MAX_APPROVAL_WAIT
from federation.protocols.secagg import (
    ConsistencyRequest,
    KeyRoster,
    NodeSecAgg,
    SecAggParams,
    ShareDelivery,
    UnmaskRequest,
)
from federation.query import BoundQuery
from nodes.approvals import ApprovalBook
from nodes.budget import NodeBudgets
from nodes.datasets import LocalData
from nodes.roster import EnrolledRoster, signer_for
from nodes.task_steps import (
    Send,
    await_approval,
    bind_assignment,
    compute_checked,
    prepare_dp,
    report_failure,
)

__all__ = [
    "CANCELLED",
    "DropoutStage",
    "Finish",
    "SecAggTask",
    "await_approval",
    "bind_assignment",
    "compute_checked",
    "prepare_dp",
    "report_failure",
]

log = logging.getLogger(__name__)


class DropoutStage(enum.Enum):
    """Where a simulated node dies (fault injection for researchers).

    A node dies when the coordinator's next message arrives, so whatever it sent
    before is known to have been delivered: "after_upload" means the coordinator
    holds its masked input.
    """

    BEFORE_KEYS = "before_keys"
    """On receiving its task, before advertising keys."""
    AFTER_KEYS = "after_keys"
    """After advertising keys, before sending its shares."""
    AFTER_SHARES = "after_shares"
    """After sending its shares, before uploading its masked input."""
    AFTER_UPLOAD = "after_upload"
    """After uploading its masked input, before answering the unmasking round."""


Die = Callable[[], None]
Finish = Callable[[TaskAssignment, ErrorInfo | None, bool], None]
"""Called once when a task ends (not when the node died): the assignment, the error
it ended with (``None``: the node contributed) and whether a DP budget was charged."""

CANCELLED = ErrorInfo("cancelled", "the job was cancelled or the coordinator stopped answering")


class SecAggTask:
    """A node's part in one secure-aggregation job."""

    def __init__(
        self,
        assignment: TaskAssignment,
        data: LocalData,
        send: Send,
        *,
        compute_pool: ThreadPoolExecutor,
        die_at: DropoutStage | None = None,
        die: Die | None = None,
        budgets: NodeBudgets | None = None,
        approvals: ApprovalBook | None = None,
        on_finish: Finish | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.job_id = assignment.job_id
        self._credentials = credentials
        self._budgets = budgets
        self._approvals = approvals
        self._on_finish = on_finish
        self._charged = False
        self._cancelled = threading.Event()
        self._assignment = assignment
        self._data = data
        self._send = send
        self._pool = compute_pool
        self._die_at = die_at
        self._die = die
        self._inbox: queue.Queue[SecAggCoordinatorRound | FederationError | None] = queue.Queue()
        self._vector: Future[np.ndarray] | None = None
        self._machine: NodeSecAgg | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"task-{self.job_id[:8]}", daemon=True
        )

    def start(self) -> None:
        """Begin the task on its own thread."""
        self._thread.start()

    def deliver(self, message: SecAggCoordinatorRound) -> None:
        """A protocol message from the coordinator for this job."""
        self._inbox.put(message)

    def cancel(self) -> None:
        """Stop taking part; any state for the job is dropped."""
        self._cancelled.set()
        self._inbox.put(None)

    # --- the task thread --------------------------------------------------------

    def _run(self) -> None:
        outcome: ErrorInfo | None = CANCELLED
        died = False
        try:
            self._start_protocol()
            timeout = self._assignment.round_timeout * 2 + 5.0
            # The first round may wait for another node's manual approval: that long
            # too. A job that fails or a stream that ends cancels the task sooner.
            first = timeout + MAX_APPROVAL_WAIT
            while self._machine is not None:
                try:
                    message = self._inbox.get(timeout=first)
                    first = timeout
                except queue.Empty:
                    log.warning(
                        "job %s: no word from the coordinator for %.0f s; giving up",
                        self.job_id,
                        first,
                    )
                    return
                if message is None:
                    log.info("job %s: cancelled by the coordinator", self.job_id)
                    return
                if isinstance(message, FederationError):
                    raise message
                if self._handle(message):
                    outcome = None
                    return
        except _NodeDiedError:
            died = True
            return
        except Exception as exc:  # reported to the coordinator, never raised on this thread
            outcome = report_failure(self.job_id, self._send, exc)
        finally:
            self._machine = None  # drop key material as soon as the task ends
            self._vector = None
            if self._on_finish is not None and not died:
                self._on_finish(self._assignment, outcome, self._charged)
            self.finished.set()

    def _checkpoint(self, stage: DropoutStage) -> None:
        if self._die_at is stage and self._die is not None:
            log.warning("job %s: simulated dropout %s", self.job_id, stage.value)
            self._die()
            raise _NodeDiedError

    def _bind(self) -> BoundQuery:
        setup = self._assignment.secagg
        if setup is None:
            raise ProtocolError("a secure-aggregation task arrived without its setup")
        return bind_assignment(self._assignment, self._data, setup.vector_length)

    def _start_protocol(self) -> None:
        self._checkpoint(DropoutStage.BEFORE_KEYS)
        bound = self._bind()
        setup = self._assignment.secagg
        if setup is None:  # pragma: no cover - checked in _bind
            raise ProtocolError("a secure-aggregation task arrived without its setup")
        await_approval(
            self._assignment,
            bound,
            self._data,
            self._approvals,
            send=self._send,
            cancelled=self._cancelled,
        )
        params = SecAggParams(
            job_id=self.job_id,
            slots=setup.slots,
            vector_length=setup.vector_length,
            neighbours=setup.neighbours,
            threshold=setup.threshold,
            signed=setup.signed,
            # this node's own binding of the query, never the coordinator's word
            fingerprint=bound.fingerprint if setup.signed else "",
        )
        sign, verify = self._identity(setup)
        # t: fewer surviving nodes than the Shamir threshold cannot be unmasked.
        noise = prepare_dp(self._assignment, bound, self._budgets, setup.threshold, setup.slots)
        self._charged = noise is not None
        self._machine = NodeSecAgg(params, setup.slot, sign=sign, verify=verify)
        self._vector = self._pool.submit(self._compute, bound, noise)
        self._vector.add_done_callback(self._computed)
        self._send(SecAggFromNode(self.job_id, self._machine.advertise_keys()))

    def _identity(
        self, setup: SecAggSetup
    ) -> tuple[Callable[[bytes], bytes] | None, Callable[[int, bytes, bytes], bool] | None]:
        """Signing and verification for a signed run; a node with an identity takes
        part in nothing else (a coordinator may not downgrade it)."""
        credentials = self._credentials
        if credentials is None:
            if setup.signed:
                raise ProtocolError("a signed run needs node credentials; this node has none")
            return None, None
        if not setup.signed:
            raise ProtocolError(
                "this node has an identity and takes part only in signed (actively secure) "
                "runs; the coordinator asked for an unsigned one; refusing"
            )
        if len(setup.certificates) != setup.slots:
            raise ProtocolError("the roster must hold one certificate per slot; refusing")
        roster = EnrolledRoster(setup.certificates, credentials, setup.slot)
        return signer_for(credentials), roster.verify

    def _compute(self, bound: BoundQuery, noise: NoisePlan | None) -> np.ndarray:
        return compute_checked(bound, self._data, noise)

    def _computed(self, future: Future[np.ndarray]) -> None:
        """Report a failed local computation at once, not at the masking round."""
        error = future.exception()
        if isinstance(error, FederationError):
            self._inbox.put(error)
        elif error is not None:
            log.error("job %s: local computation failed (%s)", self.job_id, type(error).__name__)
            self._inbox.put(FederationError("the local computation failed at the node"))

    def _handle(self, message: SecAggCoordinatorRound) -> bool:
        """Process one round; True when the task is complete."""
        machine = self._machine
        if machine is None:  # pragma: no cover - guarded by the caller
            return True
        setup = self._assignment.secagg
        if setup is None:  # pragma: no cover - checked in _bind
            return True
        message = dataclasses.replace(message, recipient=setup.slot)
        if isinstance(message, KeyRoster):
            self._checkpoint(DropoutStage.AFTER_KEYS)
            self._send(SecAggFromNode(self.job_id, machine.share_keys(message)))
            return False
        if isinstance(message, ShareDelivery):
            self._checkpoint(DropoutStage.AFTER_SHARES)
            if self._vector is None:
                raise ProtocolError("masked input requested before the task started")
            vector = self._vector.result(timeout=self._assignment.round_timeout)
            self._send(SecAggFromNode(self.job_id, machine.mask_input(message, vector)))
            return False
        if isinstance(message, ConsistencyRequest):
            self._checkpoint(DropoutStage.AFTER_UPLOAD)
            self._send(SecAggFromNode(self.job_id, machine.consistency(message)))
            return False
        if isinstance(message, UnmaskRequest):
            self._checkpoint(DropoutStage.AFTER_UPLOAD)
            self._send(SecAggFromNode(self.job_id, machine.unmask(message)))
            log.info("job %s: done", self.job_id)
            return True
        raise ProtocolError(f"unexpected {type(message).__name__} for job {self.job_id}")


class _NodeDiedError(Exception):
    """Internal: unwinds a task whose node was killed by fault injection."""
