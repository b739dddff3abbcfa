"""The directory: which nodes are connected and which datasets they serve.

"Logically centralized": the same dataset name on several nodes is one
horizontally partitioned logical dataset. Registrations are persisted in the
store; live sessions exist only in memory.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from coordinator.audit import AuditTrail
from coordinator.store import NodeRow, Store
from federation.dp.report import BudgetSpend
from federation.errors import (
    ConfigError,
    FederationError,
    SchemaMismatchError,
    SessionReplacedError,
    TooFewParticipantsError,
    UnknownDatasetError,
    UnknownNodeError,
)
from federation.messages import (
    PROTOCOL_VERSION,
    DatasetInfo,
    DatasetStatus,
    NodeInfo,
    Registration,
    TaskAssignment,
)
from federation.policy import DEFAULT_POLICY, Policy, strictest
from federation.schema import DatasetSchema
from federation.transport.backend import Outbox

__all__ = ["Directory", "NodeSession"]

log = logging.getLogger(__name__)

_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_session_ids = itertools.count(1)


@dataclass(eq=False)
class NodeSession:
    """One connected node (one live stream)."""

    name: str
    outbox: Outbox
    datasets: dict[str, DatasetSchema]
    peer: str
    last_seen: float
    mask_public_key: bytes = b""
    policies: dict[str, Policy] = field(default_factory=dict)
    """The node's declared policy per dataset (absent: the default policy)."""
    session_id: int = field(default_factory=lambda: next(_session_ids))
    online: bool = True
    certificate: bytes = b""
    """The node's TLS client certificate (PEM), forwarded to its peers in signed runs."""
    mask_key_signature: bytes = b""
    """With identities: the node's signature over ``mask_public_key``."""
    audit: AuditTrail | None = None
    """The coordinator's log, which proves itself to the node with every task."""
    audit_key: bytes = b""
    """The key that signs the node's receipts."""
    audit_size: int = 0
    """The size of the last head sent to (or, at registration, accepted by) the node."""
    audit_receipts: dict[bytes, int] = field(default_factory=dict)
    """The node's receipts (leaf hash -> index) not yet proven to it."""
    _assign_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def assign(self, task: TaskAssignment) -> None:
        """Send a task, with the proof about the audit log the node is owed (per node in
        order, so every proof extends the head sent before it)."""
        with self._assign_lock:
            if self.audit is not None:
                proof = self.audit.prove(self.audit_size, self.audit_receipts)
                task = dataclasses.replace(task, audit=proof)
                self.audit_size = max(self.audit_size, proof.head.size)
                for inclusion in proof.inclusions:
                    self.audit_receipts.pop(inclusion.leaf, None)
            self.outbox.put(task)

    def receipt(self, entry: bytes) -> None:
        """Queue the node's signed receipt for the log (checked there; an invalid one is
        logged and dropped); once appended, it is proven to the node with its next task."""
        if self.audit is not None:
            self.audit.submit_receipt(self.name, self.audit_key, entry, self._receipt_placed)

    def _receipt_placed(self, leaf: bytes, index: int) -> None:
        with self._assign_lock:
            self.audit_receipts[leaf] = index


class Directory:
    """Nodes, their liveness, and datasets by name."""

    def __init__(self, store: Store) -> None:
        self._store = store
        # The registrations, mirrored in memory (the store is the durable copy).
        self._known: dict[str, NodeRow] = {row.name: row for row in store.nodes()}
        self._lock = threading.Lock()
        # Held across a registration's or a removal's store write and its in-memory
        # change, so the store and the directory agree whichever comes first (taken
        # before ``_lock``, never inside it).
        self._membership = threading.Lock()
        self._sessions: dict[str, NodeSession] = {}
        self._detach_listeners: list[Callable[[NodeSession], None]] = []
        # Each node's DP ledger as last reported: (node, dataset, analyst) -> spend.
        self._budgets: dict[tuple[str, str, str], BudgetSpend] = {}

    def on_detach(self, listener: Callable[[NodeSession], None]) -> None:
        """Call ``listener`` whenever a session goes offline."""
        self._detach_listeners.append(listener)

    def attach(
        self, registration: Registration, outbox: Outbox, peer: str, certificate: bytes = b""
    ) -> NodeSession:
        """Validate and record a registration; a newer session replaces an older one."""
        name = registration.node_name
        if not _NODE_NAME.match(name):
            raise ConfigError(
                f"node name {name!r} is invalid: use 1-64 letters, digits, '_', '.', '-'"
            )
        if registration.protocol_version != PROTOCOL_VERSION:
            raise ConfigError(
                f"node {name!r} speaks protocol version {registration.protocol_version}; "
                f"this coordinator speaks {PROTOCOL_VERSION}: upgrade the older side"
            )
        datasets: dict[str, DatasetSchema] = {}
        for schema in registration.datasets:
            if schema.name in datasets:
                raise ConfigError(f"node {name!r} registers dataset {schema.name!r} twice")
            datasets[schema.name] = schema
        unknown = sorted({d for d, _ in registration.policies} - set(datasets))
        if unknown:
            raise ConfigError(f"node {name!r} declares policies for unserved dataset(s) {unknown}")
        policies = {d: registration.policy(d) for d in datasets}
        with self._membership:
            session = self._record(
                registration, outbox, peer, certificate, datasets=datasets, policies=policies
            )
            with self._lock:
                old = self._sessions.get(name)
                self._sessions[name] = session
        if old is not None:
            log.warning("node %s registered again from %s; closing its older stream", name, peer)
            self._go_offline(
                old,
                SessionReplacedError(
                    f"node {name!r} registered again from {peer}; the coordinator closed "
                    "this older stream (two agents must not serve as one node)"
                ),
            )
        log.info("node %s registered from %s serving %s", name, peer, sorted(datasets))
        return session

    def _record(
        self,
        registration: Registration,
        outbox: Outbox,
        peer: str,
        certificate: bytes,
        *,
        datasets: dict[str, DatasetSchema],
        policies: dict[str, Policy],
    ) -> NodeSession:
        """Store a validated registration, list it, and make its session (its pending
        audit receipts taken)."""
        name = registration.node_name
        declared = tuple(sorted(policies.items()))
        self._store.record_registration(
            name,
            registration.datasets,
            registration.agent_version,
            declared,
            audit_key=registration.audit_key,
        )
        now = time.time()
        with self._lock:
            first = self._known[name].first_seen if name in self._known else now
            self._known[name] = NodeRow(name, first, now, registration.datasets, declared)
        session = NodeSession(
            name,
            outbox,
            datasets,
            peer,
            time.time(),
            registration.mask_public_key,
            policies,
            audit=self._store.audit,
            audit_key=registration.audit_key,
            audit_size=registration.audit_size,
            certificate=certificate,
            mask_key_signature=registration.mask_key_signature,
        )
        for entry in registration.audit_pending:
            session.receipt(entry)
        return session

    def detach(self, session: NodeSession) -> None:
        """A session's stream ended."""
        with self._lock:
            if self._sessions.get(session.name) is session:
                del self._sessions[session.name]
        if session.online:
            log.info("node %s disconnected", session.name)
            self._go_offline(session)

    def _go_offline(self, session: NodeSession, error: FederationError | None = None) -> None:
        session.online = False
        session.outbox.close(error)
        for listener in self._detach_listeners:
            listener(session)

    def heartbeat(
        self, session: NodeSession, when: float, budgets: tuple[BudgetSpend, ...] = ()
    ) -> None:
        """Record a heartbeat and the DP ledger it carries (for the datasets the node
        serves)."""
        session.last_seen = when
        with self._lock:
            for spend in budgets:
                if spend.dataset in session.datasets:
                    self._budgets[(session.name, spend.dataset, spend.analyst)] = spend
        self._store.touch_node(session.name, when)
        with self._lock:
            row = self._known.get(session.name)
            if row is not None:
                self._known[session.name] = dataclasses.replace(row, last_seen=when)

    def expire_stale(self, max_silence: float) -> list[str]:
        """Take offline every session silent for longer than ``max_silence`` seconds."""
        now = time.time()
        with self._lock:
            stale = [s for s in self._sessions.values() if now - s.last_seen > max_silence]
            for s in stale:
                del self._sessions[s.name]
        for s in stale:
            log.warning("node %s missed its heartbeats; marking it offline", s.name)
            self._go_offline(s)
        return [s.name for s in stale]

    def forget(self, name: str, by: str) -> None:
        """Remove an offline node from the directory and the store (its jobs stay on
        record); ``by`` names who asked, for the audit trail.

        Raises:
            UnknownNodeError: No node of that name is known.
            ConfigError: The node is online (stop its agent, or revoke its
                certificate, first).
        """
        with self._membership:
            with self._lock:
                if name in self._sessions:
                    raise ConfigError(
                        f"node {name!r} is online; stop its agent (or revoke its "
                        "certificate) before removing it from the directory"
                    )
                if self._known.pop(name, None) is None:
                    raise UnknownNodeError(
                        f"no node named {name!r} is in the directory; known nodes: "
                        f"{sorted(self._known)}"
                    )
                for key in [k for k in self._budgets if k[0] == name]:
                    del self._budgets[key]
            self._store.forget_node(name, by)
        log.info("node %s removed from the directory by %s", name, by)

    def _rows(self) -> list[NodeRow]:
        with self._lock:
            return sorted(self._known.values(), key=lambda r: r.name)

    def online_sessions(self) -> list[NodeSession]:
        """Currently connected nodes."""
        with self._lock:
            return sorted(self._sessions.values(), key=lambda s: s.name)

    def nodes(self) -> list[NodeInfo]:
        """Every known node and whether it is online."""
        online = {s.name: s for s in self.online_sessions()}
        return [
            NodeInfo(
                name=row.name,
                online=row.name in online,
                last_seen=online[row.name].last_seen if row.name in online else row.last_seen,
                datasets=tuple(s.name for s in row.datasets),
            )
            for row in self._rows()
        ]

    def datasets(self) -> list[DatasetInfo]:
        """The logical datasets: schema, node counts and whether their nodes agree."""
        online = {s.name for s in self.online_sessions()}
        by_name: dict[str, list[tuple[str, DatasetSchema]]] = {}
        policy_of: dict[tuple[str, str], Policy] = {}
        for row in self._rows():
            for schema in row.datasets:
                by_name.setdefault(schema.name, []).append((row.name, schema))
                policy_of[(row.name, schema.name)] = row.policy(schema.name)
        infos = []
        for name in sorted(by_name):
            entries = by_name[name]
            live = [(n, s) for n, s in entries if n in online]
            considered = live or entries
            fingerprints = {s.fingerprint() for _, s in considered}
            status, detail = DatasetStatus.OK, ""
            if len(fingerprints) > 1:
                status = DatasetStatus.CONFLICT
                detail = _conflict_detail(name, considered)
            infos.append(
                DatasetInfo(
                    schema=considered[0][1],
                    node_count=len(entries),
                    online_node_count=len(live),
                    status=status,
                    detail=detail,
                    policy=strictest(policy_of[(n, name)] for n, _ in considered),
                    budgets=self._budget_view(
                        name, [(n, policy_of[(n, name)]) for n, _ in considered]
                    ),
                )
            )
        return infos

    def _budget_view(
        self, dataset: str, nodes: list[tuple[str, Policy]]
    ) -> tuple[BudgetSpend, ...]:
        """Per analyst who spent any of ``dataset``: the node with the least left (a node
        that reported nothing for the analyst has its whole declared budget left)."""
        with self._lock:
            spends = {k: v for k, v in self._budgets.items() if k[1] == dataset}
        analysts = sorted({a for (_, _, a) in spends})
        out = []
        for analyst in analysts:
            candidates = [
                spends.get((node, dataset, analyst))
                or BudgetSpend(dataset, analyst, 0.0, policy.dp_rho)
                for node, policy in nodes
            ]
            out.append(min(candidates, key=lambda b: b.remaining_rho))
        return tuple(out)

    @staticmethod
    def min_cell_size(dataset: str, sessions: list[NodeSession]) -> int:
        """The threshold a job over ``sessions`` must suppress below: the largest of
        their declared minimum cell sizes for ``dataset``."""
        return max(
            (s.policies.get(dataset, DEFAULT_POLICY).min_cell_size for s in sessions), default=1
        )

    def plan_targets(self, dataset: str, minimum: int) -> tuple[DatasetSchema, list[NodeSession]]:
        """The agreed schema of ``dataset`` and the online nodes serving it.

        Raises UnknownDatasetError, SchemaMismatchError, or TooFewParticipantsError
        when fewer than ``minimum`` nodes serving it are online.
        """
        known = any(dataset in {s.name for s in row.datasets} for row in self._rows())
        sessions = [s for s in self.online_sessions() if dataset in s.datasets]
        if not sessions:
            if not known:
                names = sorted({s.name for row in self._rows() for s in row.datasets})
                raise UnknownDatasetError(
                    f"no node serves a dataset named {dataset!r}; known datasets: {names}"
                )
            raise TooFewParticipantsError(
                f"dataset {dataset!r} is known but none of its nodes is online"
            )
        fingerprints = {s.datasets[dataset].fingerprint() for s in sessions}
        if len(fingerprints) > 1:
            raise SchemaMismatchError(
                _conflict_detail(dataset, [(s.name, s.datasets[dataset]) for s in sessions])
            )
        if len(sessions) < minimum:
            raise TooFewParticipantsError(
                f"dataset {dataset!r} has {len(sessions)} online node(s); a query needs at "
                f"least {minimum} so that no single node's values are released"
            )
        return sessions[0].datasets[dataset], sessions


def _conflict_detail(dataset: str, entries: list[tuple[str, DatasetSchema]]) -> str:
    groups: dict[str, list[str]] = {}
    for node, schema in entries:
        groups.setdefault(schema.fingerprint()[:12], []).append(node)
    parts = "; ".join(f"schema {fp}: {sorted(nodes)}" for fp, nodes in sorted(groups.items()))
    return (
        f"the nodes serving dataset {dataset!r} declare different schemas ({parts}); "
        "align their node configs"
    )
