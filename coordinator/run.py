"""What every protocol run shares: its roster of node sessions, losses, failure, cancellation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from coordinator.directory import NodeSession
from federation.errors import FederationError
from federation.messages import ErrorInfo, TaskCancelled

__all__ = ["ProgressCallback", "Run"]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]


class Run:
    """The sessions of one job's protocol run, each in its slot, and how the run ends early.

    Node stream threads call :meth:`node_lost` and :meth:`fail`; the job thread waits
    on ``_cond`` and sees ``_lost`` and ``_failure``.
    """

    def __init__(self, job_id: str, sessions: Sequence[NodeSession]) -> None:
        self._run_job_id = job_id
        self._sessions = list(sessions)
        self._slot_of = {s.name: i for i, s in enumerate(self._sessions)}
        self._cond = threading.Condition()
        self._lost: set[int] = {i for i, s in enumerate(self._sessions) if not s.online}
        self._failure: FederationError | None = None

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
