"""Domain-level messages between analysts, the coordinator and nodes.

These are the types the coordinator, the node agent and the SDK speak. The
transport package converts them to and from the ``federation.v1`` wire
contract; nothing outside it sees protobuf.

Node <-> coordinator (one long-lived stream per node)::

    node                          coordinator
    Registration         ->
                         <-       Registered
    Heartbeat            ->       (every heartbeat_interval seconds)
                         <-       TaskAssignment
    SecAggFromNode       ->
                         <-       SecAggToNode
    TaskFailure          ->       (a node refuses or fails its task)
                         <-       TaskCancelled
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from federation.audit.witness import HeadProof
from federation.dp.report import BudgetSpend, DPParams, PrivacyReport
from federation.policy import DEFAULT_POLICY, Policy
from federation.protocols.secagg.messages import (
    ConsistencyRequest,
    ConsistencySignature,
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    ShareBundle,
    ShareDelivery,
    UnmaskRequest,
    UnmaskResponse,
)
from federation.schema import DatasetSchema
from federation.table import ResultTable

__all__ = [
    "PROTOCOL_VERSION",
    "AuditReceipt",
    "CoordinatorInfo",
    "CoordinatorToNode",
    "DatasetInfo",
    "DatasetStatus",
    "EncryptedJobResult",
    "EncryptedShare",
    "ErrorInfo",
    "HESetup",
    "Heartbeat",
    "JobAccepted",
    "JobCompleted",
    "JobEvent",
    "JobProgress",
    "JobRecord",
    "JobResult",
    "JobStatus",
    "NodeInfo",
    "NodeToCoordinator",
    "Protocol",
    "QueryRequest",
    "Registered",
    "Registration",
    "SecAggCoordinatorRound",
    "SecAggFromNode",
    "SecAggNodeRound",
    "SecAggSetup",
    "SecAggToNode",
    "TaskAssignment",
    "TaskCancelled",
    "TaskFailure",
    "TaskState",
    "TaskStatus",
]

PROTOCOL_VERSION = 1
"""Version of the node <-> coordinator conversation; bumped on incompatible change."""


class Protocol(enum.Enum):
    """Aggregation protocols an analyst can choose per query."""

    SECAGG = "secagg"
    """Pairwise-masked secure aggregation (SecAgg+); the default."""
    PAILLIER = "paillier"
    """Exact additively homomorphic encryption under the analyst's Paillier key."""
    CKKS = "ckks"
    """Lattice-based homomorphic encryption (CKKS) under the analyst's key."""

    @property
    def homomorphic(self) -> bool:
        """True for the protocols where the analyst holds a decryption key."""
        return self is not Protocol.SECAGG


class JobStatus(enum.Enum):
    """Lifecycle of a job as recorded by the coordinator."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    """A node's task waits for its operator's manual approval."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DatasetStatus(enum.Enum):
    """Whether the nodes serving a dataset agree on its schema."""

    OK = "ok"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class ErrorInfo:
    """A typed error as it travels: a stable code and a data-free message."""

    code: str
    message: str


# --- node <-> coordinator -------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """First message of a node's stream: who it is and which datasets it serves."""

    node_name: str
    datasets: tuple[DatasetSchema, ...]
    agent_version: str = ""
    protocol_version: int = PROTOCOL_VERSION
    mask_public_key: bytes = b""
    """X25519 session key from which the node's zero-sum masks are derived."""
    mask_key_signature: bytes = b""
    """With identities: the node's certificate-key signature over its mask key
    (:func:`federation.protocols.he.masking.mask_key_message`), so that no coordinator
    can substitute it."""
    policies: tuple[tuple[str, Policy], ...] = ()
    """(dataset name, policy) for each dataset; a dataset not listed has
    :data:`~federation.policy.DEFAULT_POLICY`."""
    audit_key: bytes = b""
    """The Ed25519 key that signs the node's receipts (:mod:`federation.audit.witness`)."""
    audit_size: int = 0
    """The size of the coordinator's log head the node last accepted."""
    audit_pending: tuple[bytes, ...] = ()
    """Receipts the node sent that no head has proven included yet (sent again)."""

    def policy(self, dataset: str) -> Policy:
        """The policy the node declares for ``dataset``."""
        return dict(self.policies).get(dataset, DEFAULT_POLICY)


@dataclass(frozen=True)
class Registered:
    """The coordinator accepted a registration."""

    node_name: str
    heartbeat_interval: float


@dataclass(frozen=True)
class Heartbeat:
    """Liveness signal from a node."""

    sent_at: float
    budgets: tuple[BudgetSpend, ...] = ()
    """The node's DP ledger (what each analyst spent of each dataset's budget), mirrored
    in the directory."""


@dataclass(frozen=True)
class SecAggSetup:
    """The node's place in one SecAgg+ run."""

    slots: int
    slot: int
    vector_length: int
    threshold: int
    neighbours: tuple[tuple[int, ...], ...]
    signed: bool = False
    """The actively secure variant (signed keys, a consistency round)."""
    certificates: tuple[bytes, ...] = ()
    """Signed runs: each slot's node certificate (PEM), for the node to verify."""


@dataclass(frozen=True)
class HESetup:
    """The node's place in one homomorphic sum."""

    public_key: bytes
    slot: int
    parties: int
    ring_bits: int
    length: int
    peers: tuple[tuple[int, bytes], ...]
    """Every other participant's slot and zero-sum mask public key."""
    peer_signatures: tuple[tuple[int, bytes], ...] = ()
    """With identities: each peer's certificate-key signature over its mask key."""
    certificates: tuple[bytes, ...] = ()
    """With identities: every slot's node certificate (PEM), for the node to check."""


@dataclass(frozen=True)
class TaskAssignment:
    """A job's task for one node: compute the query locally, then aggregate.

    Exactly one of ``secagg`` (protocol secagg) and ``he`` (paillier, ckks) is set.
    """

    job_id: str
    dataset: str
    sql: str
    fingerprint: str
    protocol: Protocol
    round_timeout: float
    secagg: SecAggSetup | None = None
    he: HESetup | None = None
    min_cell_size: int = 1
    """The coordinator suppresses released groups with ``0 < rows <`` this (the largest
    of the job's nodes' minimum cell sizes); a node refuses a smaller one than its own."""
    dp: DPParams | None = None
    """Set for a DP query: the node checks it against its policy, charges the analyst's
    budget and derives the noise itself (:mod:`federation.dp.mechanism`)."""
    audit: HeadProof | None = None
    """The coordinator's proof about its audit log, which the node checks first."""


@dataclass(frozen=True)
class EncryptedShare:
    """A node's homomorphically encrypted, zero-sum-masked contribution."""

    job_id: str
    data: bytes


@dataclass(frozen=True)
class AuditReceipt:
    """A node's signed record of what it did for a job, for the coordinator's log."""

    entry: bytes


@dataclass(frozen=True)
class TaskFailure:
    """A node refused or failed its task."""

    job_id: str
    error: ErrorInfo


@dataclass(frozen=True)
class TaskCancelled:
    """The coordinator aborted a job; the node drops its state for it."""

    job_id: str
    reason: ErrorInfo


SecAggNodeRound = (
    KeyAdvertisement | ShareBundle | MaskedInput | ConsistencySignature | UnmaskResponse
)
SecAggCoordinatorRound = KeyRoster | ShareDelivery | ConsistencyRequest | UnmaskRequest


@dataclass(frozen=True)
class SecAggFromNode:
    """A SecAgg+ message from a node, within a job.

    The ``sender`` slot inside ``message`` is filled in by the coordinator from
    the stream's identity, never trusted from the wire.
    """

    job_id: str
    message: SecAggNodeRound


@dataclass(frozen=True)
class SecAggToNode:
    """A SecAgg+ message for a node, within a job."""

    job_id: str
    message: SecAggCoordinatorRound


class TaskState(enum.Enum):
    """Where a node's task stands before the node takes part in the protocol."""

    AWAITING_APPROVAL = "awaiting_approval"
    """The dataset's policy wants a person's approval; the task waits at the node."""
    APPROVED = "approved"
    """The node's operator approved the task; the node now takes part."""


@dataclass(frozen=True)
class TaskStatus:
    """A node's word on its task before it takes part (manual approval)."""

    job_id: str
    state: TaskState
    request_id: str = ""
    """The node's approval request id, which its operator approves or denies."""
    expires_at: float = 0.0
    """When the request expires unanswered (Unix seconds, node clock)."""


NodeToCoordinator = (
    Registration
    | Heartbeat
    | TaskFailure
    | TaskStatus
    | SecAggFromNode
    | EncryptedShare
    | AuditReceipt
)
CoordinatorToNode = Registered | TaskAssignment | SecAggToNode | TaskCancelled


# --- analyst <-> coordinator ------------------------------------------------


@dataclass(frozen=True)
class CoordinatorInfo:
    """What a coordinator says about itself."""

    version: str
    protocol_version: int
    protocols: tuple[Protocol, ...]


@dataclass(frozen=True)
class DatasetInfo:
    """A directory entry: one logical (horizontally partitioned) dataset."""

    schema: DatasetSchema
    node_count: int
    online_node_count: int
    status: DatasetStatus = DatasetStatus.OK
    detail: str = ""
    policy: Policy = DEFAULT_POLICY
    """The strictest of its nodes' policies (:func:`~federation.policy.strictest`): what
    a job over them obeys. The approval mode is declared, not enforced yet."""
    budgets: tuple[BudgetSpend, ...] = ()
    """Per analyst who spent any: the budget of the node with the least left."""


@dataclass(frozen=True)
class NodeInfo:
    """A directory entry for one node."""

    name: str
    online: bool
    last_seen: float
    datasets: tuple[str, ...]


@dataclass(frozen=True)
class QueryRequest:
    """An analyst's query (with the analyst's public key for homomorphic protocols)."""

    sql: str
    protocol: Protocol = Protocol.SECAGG
    public_key: bytes = b""
    dp: DPParams | None = None
    """Differential privacy: epsilon, delta and the analyst whose budget pays (the
    certificate's identity under mutual TLS; self-declared on plaintext)."""
    analyst: str | None = None
    """Who asked, from the analyst's certificate (``None`` on a plaintext channel)."""


@dataclass(frozen=True)
class JobAccepted:
    """The query was planned; the job runs on ``selected_nodes`` nodes."""

    job_id: str
    sql: str
    protocol: Protocol
    dataset: str
    selected_nodes: int
    submitted_at: float


@dataclass(frozen=True)
class JobProgress:
    """A protocol stage finished for ``done`` of ``total`` nodes."""

    job_id: str
    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class JobResult:
    """The released aggregate."""

    job_id: str
    table: ResultTable


@dataclass(frozen=True)
class JobCompleted:
    """The job finished and its result was released."""

    job_id: str
    protocol: Protocol
    selected_nodes: int
    contributing_nodes: int
    finished_at: float
    privacy: PrivacyReport | None = None
    """How the result was noised (DP queries only)."""


@dataclass(frozen=True)
class EncryptedJobResult:
    """A homomorphic job's result: only the analyst's secret key opens it."""

    job_id: str
    protocol: Protocol
    fingerprint: str
    schema: DatasetSchema
    length: int
    ring_bits: int
    parties: int
    ciphertext: bytes


JobEvent = JobAccepted | JobProgress | JobResult | EncryptedJobResult | JobCompleted


@dataclass(frozen=True)
class JobRecord:
    """What the coordinator recorded about a job."""

    job_id: str
    sql: str
    protocol: Protocol
    dataset: str
    status: JobStatus
    submitted_at: float
    finished_at: float | None = None
    selected_nodes: int = 0
    contributing_nodes: int = 0
    error: ErrorInfo | None = None
    result: ResultTable | None = field(default=None)
