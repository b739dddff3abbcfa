"""Drives the pure SecAgg+ coordinator state machine over live node sessions.

The state machine (:mod:`federation.protocols.secagg`) decides; this module only
moves messages and keeps time: every round ends when all expected messages
arrived, when every node still awaited has disconnected, or at its deadline.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

from coordinator.directory import NodeSession
from coordinator.run import ProgressCallback, Run
from federation.dp.report import DPParams
from federation.errors import FederationError, ProtocolError
from federation.messages import (
    Protocol,
    SecAggCoordinatorRound,
    SecAggNodeRound,
    SecAggSetup,
    SecAggToNode,
    TaskAssignment,
)
from federation.protocols.secagg import CoordinatorSecAgg, SecAggParams, SecAggResult, Stage

__all__ = ["SecAggRun"]

log = logging.getLogger(__name__)


class SecAggRun(Run):
    """One secure aggregation over the nodes of one job."""

    def __init__(
        self,
        params: SecAggParams,
        sessions: Sequence[NodeSession],
        *,
        dataset: str,
        sql: str,
        fingerprint: str,
        round_timeout: float,
        on_progress: ProgressCallback | None = None,
        min_cell_size: int = 1,
        dp: DPParams | None = None,
    ) -> None:
        if len(sessions) != params.slots:
            raise ValueError("one session per slot is required")
        super().__init__(
            params.job_id, sessions, round_timeout=round_timeout, on_progress=on_progress
        )
        self.params = params
        self._machine = CoordinatorSecAgg(params)
        self._task = {"dataset": dataset, "sql": sql, "fingerprint": fingerprint}
        self.min_cell_size = min_cell_size
        """Announced to every node; the job's result suppresses groups below it."""
        self._dp = dp

    # --- called from node stream threads ------------------------------------

    def deliver(self, session: NodeSession, message: SecAggNodeRound) -> None:
        """A node's protocol message; its sender slot comes from the session, not the wire."""
        slot = self._slot_of_participant(session, "a message")
        if slot is None:
            return
        with self._cond:
            try:
                self._machine.receive(dataclasses.replace(message, sender=slot))
            except ProtocolError as exc:
                log.warning(
                    "job %s: ignoring a message from node %s: %s",
                    self.job_id,
                    session.name,
                    exc.message,
                )
                return
            self._cond.notify_all()

    # --- the job thread ---------------------------------------------------------

    def run(self) -> SecAggResult:
        """Run every round; returns the unmasked sum or raises (nothing released)."""
        try:
            self._assign_tasks()
            while True:
                outgoing = self._close_round()
                for message in outgoing:
                    self._sessions[message.recipient].outbox.put(SecAggToNode(self.job_id, message))
                if self._machine.stage is Stage.DONE:
                    return self._machine.result()
        except FederationError as exc:
            self._cancel(exc)
            raise

    def _assign_tasks(self) -> None:
        p = self.params
        for slot, session in enumerate(self._sessions):
            session.assign(
                TaskAssignment(
                    job_id=p.job_id,
                    dataset=self._task["dataset"],
                    sql=self._task["sql"],
                    fingerprint=self._task["fingerprint"],
                    protocol=Protocol.SECAGG,
                    round_timeout=self._round_timeout,
                    min_cell_size=self.min_cell_size,
                    dp=self._dp,
                    secagg=SecAggSetup(
                        slots=p.slots,
                        slot=slot,
                        vector_length=p.vector_length,
                        threshold=p.threshold,
                        neighbours=p.neighbours,
                        signed=p.signed,
                        certificates=(
                            tuple(s.certificate for s in self._sessions) if p.signed else ()
                        ),
                    ),
                )
            )

    def _close_round(self) -> list[SecAggCoordinatorRound]:
        deadline = time.monotonic() + self._round_timeout
        with self._cond:
            stage = self._machine.stage
            awaited_at_start = len(self._machine.expected())
            while True:
                if self._failure is not None:
                    self._machine.abort(self._failure.message)
                    raise self._failure
                waiting = self._machine.expected() - self._lost
                if self._machine.complete() or not waiting:
                    break
                remaining = self._deadline(deadline, waiting) - time.monotonic()
                if remaining <= 0:
                    log.warning(
                        "job %s: %s round deadline passed; %d node(s) silent",
                        self.job_id,
                        stage.name,
                        len(waiting),
                    )
                    break
                self._cond.wait(remaining)
            received = awaited_at_start - len(self._machine.expected())
            outgoing = self._machine.advance()
        if self._on_progress is not None:
            self._on_progress(stage.name.lower(), received, awaited_at_start)
        return outgoing
