"""What the transport needs from a coordinator, in domain types only.

The coordinator service implements :class:`CoordinatorBackend`; the gRPC
servicers (:mod:`federation.transport.server`) and the in-memory twin
(:mod:`federation.transport.memory`) drive it. Neither side sees the other's
types: the backend never sees protobuf, the transport never sees jobs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from federation.errors import FederationError
from federation.messages import (
    CoordinatorInfo,
    CoordinatorToNode,
    DatasetInfo,
    JobEvent,
    JobRecord,
    NodeInfo,
    NodeToCoordinator,
    QueryRequest,
    Registration,
)

__all__ = ["CoordinatorBackend", "Outbox", "OutboxClosed", "QueueOutbox"]


class Outbox(Protocol):
    """Where the coordinator puts messages for one connected node."""

    def put(self, message: CoordinatorToNode) -> None:
        """Queue a message for the node (never blocks)."""

    def close(self, error: FederationError | None = None) -> None:
        """End the node's stream, with an error status if ``error`` is given."""


class CoordinatorBackend(Protocol):
    """The coordinator as the transport sees it."""

    def info(self) -> CoordinatorInfo:
        """Version and capabilities."""

    def list_datasets(self) -> list[DatasetInfo]:
        """The directory of logical datasets."""

    def list_nodes(self) -> list[NodeInfo]:
        """Every known node and its liveness."""

    def run_query(self, request: QueryRequest) -> Iterator[JobEvent]:
        """Plan and run a query, yielding progress then the result; raises on failure."""

    def get_job(self, job_id: str) -> JobRecord:
        """A recorded job; raises UnknownJobError."""

    def forget_node(self, name: str, by: str) -> None:
        """Remove an offline node from the directory; ``by`` names who asked.
        Raises UnknownNodeError, or ConfigError while the node is online."""

    def attach_node(
        self, registration: Registration, outbox: Outbox, peer: str, certificate: bytes = b""
    ) -> object:
        """A node connected and registered; returns an opaque session handle.
        ``certificate``: the node's TLS client certificate (PEM; empty on plaintext)."""

    def node_message(self, session: object, message: NodeToCoordinator) -> None:
        """A message arrived on a node's stream (never blocks for long)."""

    def detach_node(self, session: object) -> None:
        """A node's stream ended (idempotent)."""


@dataclass(frozen=True)
class OutboxClosed:
    """Marks the end of an outbox; ``error`` becomes the stream's final status."""

    error: FederationError | None = None


class QueueOutbox:
    """A thread-safe outbox drained by the stream that serves one node."""

    def __init__(self) -> None:
        self._queue: queue.Queue[CoordinatorToNode | OutboxClosed] = queue.Queue()
        self._closed = threading.Event()

    def put(self, message: CoordinatorToNode) -> None:
        """Queue a message (dropped once the outbox is closed)."""
        if not self._closed.is_set():
            self._queue.put(message)

    def close(self, error: FederationError | None = None) -> None:
        """Close the outbox; the stream ends after draining what is queued."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(OutboxClosed(error))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed.is_set()

    def get(self, timeout: float) -> CoordinatorToNode | OutboxClosed | None:
        """The next message, an :class:`OutboxClosed` marker, or ``None`` on timeout."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, OutboxClosed):
            self._queue.put(item)  # later readers see the end too
        return item
