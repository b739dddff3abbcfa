"""One homomorphic task at a node: check it, compute, mask, encrypt once, upload.

The node re-derives the computation from the SQL and its own schema, checks that
the sum it is asked to join is the one the query needs (ring width, party count,
its peers), computes its vector in DuckDB, adds its zero-sum mask and encrypts the
result under the analyst's public key. Nothing else is sent.
"""

from __future__ import annotations

import logging
import threading
import time

from federation.crypto.keys import X25519KeyPair
from federation.encoding import DIGIT_BITS
from federation.errors import ProtocolError
from federation.messages import EncryptedShare, ErrorInfo, HESetup, TaskAssignment
from federation.pki import Credentials
from federation.protocols.he import SumSpec, mask_values
from federation.protocols.he.masks import mask_key_message
from federation.protocols.he.registry import scheme
from nodes.approvals import ApprovalBook
from nodes.budget import NodeBudgets
from nodes.datasets import LocalData
from nodes.roster import EnrolledRoster
from nodes.task import CANCELLED, Die, DropoutStage, Finish
from nodes.task_steps import (
    Send,
    await_approval,
    bind_assignment,
    compute_checked,
    prepare_dp,
    report_failure,
)

__all__ = ["HETask"]

log = logging.getLogger(__name__)


class HETask:
    """A node's part in one homomorphic (paillier or ckks) job."""

    def __init__(
        self,
        assignment: TaskAssignment,
        data: LocalData,
        send: Send,
        keys: X25519KeyPair,
        *,
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
        self._assignment = assignment
        self._data = data
        self._send = send
        self._keys = keys
        self._die_at = die_at
        self._die = die
        self._cancelled = threading.Event()
        self._spec: SumSpec | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"he-task-{self.job_id[:8]}", daemon=True
        )

    def start(self) -> None:
        """Begin the task on its own thread."""
        self._thread.start()

    def deliver(self, message: object) -> None:
        """Homomorphic tasks take no protocol messages after the assignment."""
        log.warning("job %s: ignoring an unexpected %s", self.job_id, type(message).__name__)

    def cancel(self) -> None:
        """Stop before uploading, if still possible."""
        self._cancelled.set()

    def _run(self) -> None:
        outcome: ErrorInfo | None = CANCELLED
        died = self._die_at is not None
        try:
            if self._die_at is not None and self._die_at is not DropoutStage.AFTER_UPLOAD:
                self._kill()
                return
            share = self._encrypted_share()
            if self._cancelled.is_set():
                log.info("job %s: cancelled before upload", self.job_id)
                return
            self._send(share)
            outcome = None
            setup = self._assignment.he
            if setup is not None and self._spec is not None:  # idle time: next job's work
                scheme(self._assignment.protocol.value).prepare(setup.public_key, self._spec)
            if self._die_at is DropoutStage.AFTER_UPLOAD:
                self._kill()
        except Exception as exc:  # reported to the coordinator, never raised on this thread
            outcome = report_failure(self.job_id, self._send, exc)
        finally:
            if self._on_finish is not None and not died:
                self._on_finish(self._assignment, outcome, self._charged)
            self.finished.set()

    def _check_peers(self, setup: HESetup, peers: dict[int, bytes]) -> None:
        """With identities: every peer's mask key must carry that peer's signature, under
        a certificate the node checks itself; otherwise (or if the coordinator drops the
        signatures) the node refuses."""
        credentials = self._credentials
        if credentials is None:
            return
        if len(setup.certificates) != setup.parties:
            raise ProtocolError(
                "this node has an identity and takes part only in jobs whose peers' mask "
                "keys are signed; the task carries no certificates; refusing"
            )
        roster = EnrolledRoster(setup.certificates, credentials, setup.slot)
        signatures = dict(setup.peer_signatures)
        for j, key in peers.items():
            signature = signatures.get(j, b"")
            if not signature or not roster.verify(j, mask_key_message(key), signature):
                raise ProtocolError(
                    f"the mask key of slot {j} does not carry that node's valid signature "
                    "(a substituted key); refusing"
                )

    def _kill(self) -> None:
        log.warning(
            "job %s: simulated dropout %s", self.job_id, self._die_at.value if self._die_at else ""
        )
        if self._die is not None:
            self._die()

    def _encrypted_share(self) -> EncryptedShare:
        a = self._assignment
        setup = a.he
        if setup is None:
            raise ProtocolError("a homomorphic task arrived without its setup")
        bound = bind_assignment(a, self._data, setup.length)
        expected = SumSpec.for_signed_values(a.job_id, setup.length, DIGIT_BITS, setup.parties)
        if setup.ring_bits != expected.ring_bits:
            raise ProtocolError(
                f"the task asks for a {setup.ring_bits}-bit ring; summing this query over "
                f"{setup.parties} nodes needs exactly {expected.ring_bits} bits"
            )
        peers = dict(setup.peers)
        if (
            len(peers) != setup.parties - 1
            or setup.slot in peers
            or not 0 <= setup.slot < setup.parties
        ):
            raise ProtocolError(
                "the task's roster is inconsistent: every other participant must be listed "
                "exactly once"
            )
        self._check_peers(setup, peers)
        he = scheme(a.protocol.value)
        he.check_public_key(setup.public_key)
        await_approval(
            a, bound, self._data, self._approvals, send=self._send, cancelled=self._cancelled
        )
        # Every node's zero-sum masks need all of them: the sum has all parties' noise.
        noise = prepare_dp(a, bound, self._budgets, setup.parties, setup.parties)
        self._charged = noise is not None
        started = time.perf_counter()
        vector = compute_checked(bound, self._data, noise)
        self._spec = expected
        masked = mask_values(vector.view("int64"), expected, setup.slot, self._keys, peers)
        ciphertext = he.encrypt(setup.public_key, masked, expected)
        log.info(
            "job %s: %s share of %d values, %d bytes, in %.3f s",
            self.job_id,
            a.protocol.value,
            setup.length,
            len(ciphertext),
            time.perf_counter() - started,
        )
        return EncryptedShare(self.job_id, ciphertext)
