"""Drives one homomorphic sum over live node sessions.

Each node encrypts its zero-sum-masked vector under the analyst's public key and
uploads it once; the coordinator multiplies the ciphertexts together without any
secret and releases the combined ciphertext to the analyst. Because the masks
only cancel in the sum over *every* selected node, a job that loses a node before
its upload fails: nothing is combined or released.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from coordinator.directory import NodeSession
from coordinator.run import ProgressCallback, Run
from federation.dp.report import DPParams
from federation.encoding import DIGIT_BITS
from federation.errors import FederationError, ProtocolError, TooFewParticipantsError
from federation.messages import (
    HESetup,
    Protocol,
    TaskAssignment,
)
from federation.protocols.he import HEScheme, SumSpec

__all__ = ["HERun", "he_spec"]

log = logging.getLogger(__name__)


def he_spec(job_id: str, vector_length: int, parties: int) -> SumSpec:
    """The sum a query vector needs: balanced digits of DIGIT_BITS bits, summed exactly."""
    return SumSpec.for_signed_values(job_id, vector_length, DIGIT_BITS, parties)


class HERun(Run):
    """One homomorphic sum over the nodes of one job."""

    def __init__(
        self,
        protocol: Protocol,
        scheme: HEScheme,
        public_key: bytes,
        spec: SumSpec,
        sessions: Sequence[NodeSession],
        *,
        dataset: str,
        sql: str,
        fingerprint: str,
        round_timeout: float,
        on_progress: ProgressCallback | None = None,
        dp: DPParams | None = None,
    ) -> None:
        missing = [s.name for s in sessions if len(s.mask_public_key) != 32]
        if missing:
            raise ProtocolError(
                f"node(s) {missing} registered no mask key; they cannot take part in "
                "homomorphic jobs (upgrade their agents)"
            )
        super().__init__(
            spec.job_id, sessions, round_timeout=round_timeout, on_progress=on_progress
        )
        self.protocol = protocol
        self.spec = spec
        self._scheme = scheme
        self._public_key = public_key
        self._shares: dict[int, bytes] = {}
        self._task = (dataset, sql, fingerprint)
        self._dp = dp

    def deliver(self, session: NodeSession, ciphertext: bytes) -> None:
        """A node's encrypted share (the first one per node counts)."""
        slot = self._slot_of_participant(session, "a share")
        if slot is None:
            return
        with self._cond:
            self._shares.setdefault(slot, ciphertext)
            self._cond.notify_all()

    def run(self) -> bytes:
        """Assign tasks, collect every share, return the combined ciphertext."""
        try:
            self._assign_tasks()
            shares = self._collect()
            if self._on_progress is not None:
                self._on_progress("encrypted_upload", len(shares), len(self._sessions))
            started = time.perf_counter()
            try:
                combined = self._scheme.aggregate(self._public_key, shares, self.spec)
            except ProtocolError as exc:
                raise self._name_culprits(shares, exc) from None
            log.info(
                "job %s: combined %d ciphertexts in %.3f s",
                self.job_id,
                len(shares),
                time.perf_counter() - started,
            )
            return combined
        except FederationError as exc:
            self._cancel(exc)
            raise

    def _name_culprits(self, shares: Sequence[bytes], error: ProtocolError) -> ProtocolError:
        """Re-check each share alone (failure path only) to say which node sent a bad one."""
        culprits: list[str] = []
        problem = error.message
        for slot, share in enumerate(shares):
            try:
                self._scheme.aggregate(self._public_key, [share], self.spec)
            except ProtocolError as exc:
                culprits.append(self._sessions[slot].name)
                problem = exc.message
        if not culprits:
            return error
        log.warning("job %s: invalid encrypted share from %s", self.job_id, culprits)
        return ProtocolError(
            f"node(s) {culprits} sent an invalid encrypted share ({problem}); nothing was "
            "combined or released",
            job_id=self.job_id,
        )

    def _assign_tasks(self) -> None:
        dataset, sql, fingerprint = self._task
        keys = [s.mask_public_key for s in self._sessions]
        signed = all(s.certificate for s in self._sessions)
        certificates = tuple(s.certificate for s in self._sessions) if signed else ()
        for slot, session in enumerate(self._sessions):
            peers = tuple((j, k) for j, k in enumerate(keys) if j != slot)
            signatures = (
                tuple((j, s.mask_key_signature) for j, s in enumerate(self._sessions) if j != slot)
                if signed
                else ()
            )
            session.assign(
                TaskAssignment(
                    job_id=self.job_id,
                    dataset=dataset,
                    sql=sql,
                    fingerprint=fingerprint,
                    protocol=self.protocol,
                    round_timeout=self._round_timeout,
                    dp=self._dp,
                    he=HESetup(
                        public_key=self._public_key,
                        slot=slot,
                        parties=self.spec.parties,
                        ring_bits=self.spec.ring_bits,
                        length=self.spec.length,
                        peers=peers,
                        peer_signatures=signatures,
                        certificates=certificates,
                    ),
                )
            )

    def _collect(self) -> list[bytes]:
        deadline = time.monotonic() + self._round_timeout
        n = len(self._sessions)
        with self._cond:
            while True:
                if self._failure is not None:
                    raise self._failure
                if len(self._shares) == n:
                    return [self._shares[i] for i in range(n)]
                lost = sorted(self._lost - set(self._shares))
                if lost:
                    raise TooFewParticipantsError(self._dropout_message(lost))
                remaining = self._deadline(deadline, set(range(n)) - set(self._shares))
                remaining -= time.monotonic()
                if remaining <= 0:
                    silent = sorted(set(range(n)) - set(self._shares))
                    raise TooFewParticipantsError(self._dropout_message(silent))
                self._cond.wait(remaining)

    def _dropout_message(self, slots: list[int]) -> str:
        names = [self._sessions[i].name for i in slots]
        return (
            f"node(s) {names} did not upload their encrypted share; a {self.protocol.value} "
            "job needs every selected node (their zero-sum masks cancel only in the full "
            "sum), so nothing was combined or released; retry the query"
        )
