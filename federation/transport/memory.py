"""The in-memory twin of the node link: a node agent wired straight to a backend.

Same interface as :class:`~federation.transport.node_link.GrpcNodeLink`, no
network and no serialization, so coordinator and node logic can be tested
fast and deterministically. Integration tests and the simulator use real gRPC.
"""

from __future__ import annotations

import threading

from federation.errors import CoordinatorUnavailableError, ProtocolError
from federation.messages import CoordinatorToNode, NodeToCoordinator, Registered, Registration
from federation.transport.backend import CoordinatorBackend, OutboxClosed, QueueOutbox
from federation.transport.node_link import LinkClosed

__all__ = ["InMemoryNodeLink"]


class InMemoryNodeLink:
    """A node's stream to a coordinator backend living in the same process."""

    def __init__(self, backend: CoordinatorBackend) -> None:
        self._backend = backend
        self._outbox = QueueOutbox()
        self._session: object | None = None
        self._lock = threading.Lock()

    def open(self, registration: Registration, timeout: float = 10.0) -> Registered:
        """Register with the backend and return its acknowledgement."""
        self._session = self._backend.attach_node(registration, self._outbox, "in-memory")
        first = self.receive(timeout)
        if not isinstance(first, Registered):
            raise ProtocolError("the backend did not acknowledge the registration")
        return first

    def send(self, message: NodeToCoordinator) -> None:
        """Deliver a message to the backend synchronously."""
        with self._lock:
            session = self._session
        if session is not None and not self._outbox.closed:
            self._backend.node_message(session, message)

    def receive(self, timeout: float | None = None) -> CoordinatorToNode | LinkClosed | None:
        """The next message for the node, a LinkClosed, or None on timeout."""
        item = self._outbox.get(timeout if timeout is not None else 3600.0)
        if isinstance(item, OutboxClosed):
            return LinkClosed(item.error or CoordinatorUnavailableError("the stream was closed"))
        return item

    def close(self) -> None:
        """End the stream."""
        with self._lock:
            session, self._session = self._session, None
        self._outbox.close()
        if session is not None:
            self._backend.detach_node(session)

    def kill(self) -> None:
        """Drop the stream abruptly (same effect as close in memory)."""
        self.close()
