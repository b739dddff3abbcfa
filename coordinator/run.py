"""What every protocol run shares: its roster of node sessions, losses, failure, cancellation."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from coordinator.directory import NodeSession
from federation.errors import FederationError
from federation.messages import ErrorInfo, TaskCancelled, TaskState, TaskStatus
from federation.policy import MAX_APPROVAL_WAIT

__all__ = ["ProgressCallback", "Run"]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]


class Run:
    """The sessions of one job's protocol run, each in its slot, and how the run ends early.

    Node stream threads call :meth:`node_lost` and :meth:`fail`; the job thread waits
    on ``_cond`` and sees ``_lost`` and ``_failure``.
    """

    def __init__(
        self,
        job_id: str,
        sessions: Sequence[NodeSession],
        *,
        round_timeout: float,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self._run_job_id = job_id
        self._round_timeout = round_timeout
        self._on_progress = on_progress
        self._sessions = list(sessions)
        self._slot_of = {s.name: i for i, s in enumerate(self._sessions)}
        self._cond = threading.Condition()
        self._lost: set[int] = {i for i, s in enumerate(self._sessions) if not s.online}
        self._failure: FederationError | None = None
        self._held: dict[int, float] = {}
        """Slot -> monotonic time its task may take until (manual approval at the node)."""
        self._approved: set[int] = set()

    @property
    def job_id(self) -> str:
        """The job this run belongs to."""
        return self._run_job_id

    def involves(self, session: NodeSession) -> bool:
        """True if ``session`` holds a slot in this run."""
        slot = self._slot_of.get(session.name)
        return slot is not None and self._sessions[slot] is session

    def _slot_of_participant(self, session: NodeSession, what: str) -> int | None:
        """The sender's slot, or ``None`` (logged) when it is not a participant."""
        if not self.involves(session):
            log.warning(
                "job %s: ignoring %s from %s (not a participant)", self.job_id, what, session.name
            )
            return None
        return self._slot_of[session.name]

    def node_lost(self, session: NodeSession) -> None:
        """A participant disconnected; the run stops waiting for it."""
        if self.involves(session):
            with self._cond:
                self._lost.add(self._slot_of[session.name])
                self._cond.notify_all()

    def status(self, session: NodeSession, status: TaskStatus) -> bool:
        """A node's task awaits its operator's approval, or was approved: the current
        round waits for that node until the request expires (at most
        :data:`MAX_APPROVAL_WAIT`), then the round timeout more once approved.

        Returns:
            True while some node's task of this run still awaits approval.
        """
        slot = self._slot_of_participant(session, "a task status")
        if slot is None:
            with self._cond:
                return self._awaiting() > 0
        now = time.monotonic()
        with self._cond:
            if status.state is TaskState.AWAITING_APPROVAL:
                wait = min(max(status.expires_at - time.time(), 0.0), MAX_APPROVAL_WAIT)
                self._held[slot] = now + wait + self._round_timeout
            else:
                self._approved.add(slot)
                self._held[slot] = now + self._round_timeout
            awaiting = self._awaiting()
            approved = len(self._approved)
            self._cond.notify_all()
        log.info(
            "job %s: node %s %s",
            self.job_id,
            session.name,
            "awaits its operator's approval"
            if status.state is TaskState.AWAITING_APPROVAL
            else "approved its task",
        )
        if self._on_progress is not None:
            self._on_progress(
                "approved" if awaiting == 0 else "awaiting_approval",
                approved,
                approved + awaiting,
            )
        return awaiting > 0

    def _awaiting(self) -> int:
        """How many slots' tasks await approval (call holding ``_cond``)."""
        return len(self._held.keys() - self._approved)

    def _deadline(self, deadline: float, waiting: Iterable[int]) -> float:
        """``deadline``, pushed back for the awaited slots whose tasks await approval."""
        return max([deadline, *(self._held.get(s, deadline) for s in waiting)])

    def fail(self, error: FederationError) -> None:
        """Abort the run (e.g. a node refused its task); the first error wins."""
        with self._cond:
            if self._failure is None:
                self._failure = error
            self._cond.notify_all()

    def _cancel(self, error: FederationError) -> None:
        info = ErrorInfo(error.code, error.message)
        for session in self._sessions:
            session.outbox.put(TaskCancelled(self.job_id, info))
