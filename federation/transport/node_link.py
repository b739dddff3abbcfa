"""The node's side of its one long-lived stream to the coordinator.

The node dials out (it opens no inbound port), sends its registration, and
then exchanges domain messages; chunking of large vectors happens here.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import Protocol

import grpc

from federation.errors import CoordinatorUnavailableError, FederationError, ProtocolError
from federation.messages import (
    CoordinatorToNode,
    ErrorInfo,
    NodeToCoordinator,
    Registered,
    Registration,
    TaskFailure,
)
from federation.transport.options import channel_options
from federation.transport.security import TransportSecurity
from federation.transport.serde_node import coordinator_message_from_proto, node_messages_to_proto
from federation.transport.status import error_from_rpc
from federation.v1 import node_pb2, node_pb2_grpc

__all__ = ["GrpcNodeLink", "LinkClosed", "NodeLink"]

log = logging.getLogger(__name__)


class LinkClosed:
    """Marker returned by :meth:`GrpcNodeLink.receive` once the stream has ended."""

    __slots__ = ("error",)

    def __init__(self, error: FederationError) -> None:
        self.error = error


class NodeLink(Protocol):
    """What a node agent needs from its connection to the coordinator."""

    def open(self, registration: Registration, timeout: float = 10.0) -> Registered:
        """Connect, register, return the acknowledgement."""

    def send(self, message: NodeToCoordinator) -> None:
        """Queue a message for the coordinator."""

    def receive(self, timeout: float | None = None) -> CoordinatorToNode | LinkClosed | None:
        """The next message, a LinkClosed once the stream ended, or None on timeout."""

    def close(self, flush: float = 0.0) -> None:
        """End the stream politely (first waiting up to ``flush`` seconds for what was
        queued to be delivered)."""

    def kill(self) -> None:
        """Drop the stream abruptly."""


class GrpcNodeLink:
    """A node's bidirectional stream to the coordinator over gRPC."""

    def __init__(self, address: str, security: TransportSecurity | None = None) -> None:
        self.address = address
        self.security = security or TransportSecurity.insecure("this node")
        self._channel: grpc.Channel | None = None
        self._call: grpc.Call | None = None
        self._outgoing: queue.Queue[node_pb2.NodeMessage | None] = queue.Queue()  # None ends
        self._incoming: queue.Queue[CoordinatorToNode | LinkClosed] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._closed = threading.Event()

    def open(self, registration: Registration, timeout: float = 10.0) -> Registered:
        """Dial, register and wait for the coordinator's acknowledgement."""
        self._channel = self.security.channel(self.address, channel_options())
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise CoordinatorUnavailableError(
                f"cannot reach the coordinator at {self.address} within {timeout:.0f} s"
                + (
                    " (or the TLS handshake failed: is this node's certificate from the "
                    "federation's CA, unexpired, and does the coordinator's match its address?)"
                    if self.security.secure
                    else ""
                )
                + "; check the address and that `federation coordinator serve` is running"
            ) from None
        stub = node_pb2_grpc.NodeServiceStub(self._channel)
        self.send(registration)
        call = stub.Connect(self._requests())
        self._call = call
        self._reader = threading.Thread(
            target=self._read, args=(call,), name="node-link-reader", daemon=True
        )
        self._reader.start()
        first = self.receive(timeout)
        if isinstance(first, Registered):
            return first
        self.close()
        if isinstance(first, LinkClosed):
            raise first.error
        if first is None:
            raise CoordinatorUnavailableError(
                f"the coordinator at {self.address} did not acknowledge the registration "
                f"within {timeout:.0f} s"
            )
        raise ProtocolError(f"expected a registration acknowledgement, got {type(first).__name__}")

    def _requests(self) -> Iterator[node_pb2.NodeMessage]:
        while True:
            item = self._outgoing.get()
            if item is None:
                return
            yield item

    def _read(self, call: Iterator[node_pb2.CoordinatorMessage]) -> None:
        error: FederationError
        try:
            for raw in call:
                try:
                    self._incoming.put(coordinator_message_from_proto(raw))
                except FederationError as exc:
                    log.warning("ignoring a malformed coordinator message: %s", exc.message)
                    if raw.WhichOneof("body") == "task":
                        # Refuse at once: the job need not wait out its round deadline.
                        failure = ErrorInfo(exc.code, exc.message)
                        self.send(TaskFailure(raw.task.job_id, failure))
            error = CoordinatorUnavailableError("the coordinator closed the stream")
        except grpc.RpcError as exc:
            error = error_from_rpc(exc, target=self.address)
            if self._closed.is_set():
                error = CoordinatorUnavailableError("the link was closed by this node")
        self._incoming.put(LinkClosed(error))

    def send(self, message: NodeToCoordinator) -> None:
        """Queue a message for the coordinator (never blocks)."""
        if self._closed.is_set():
            return
        for raw in node_messages_to_proto(message):
            self._outgoing.put(raw)

    def receive(self, timeout: float | None = None) -> CoordinatorToNode | LinkClosed | None:
        """The next coordinator message, a :class:`LinkClosed`, or ``None`` on timeout."""
        try:
            item = self._incoming.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, LinkClosed):
            self._incoming.put(item)  # stays closed for later callers
        return item

    def close(self, flush: float = 0.0) -> None:
        """End the stream politely and release the channel; with ``flush``, first wait
        up to that many seconds for the queued messages to be delivered and the
        coordinator to end the stream."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._outgoing.put(None)
        reader = self._reader
        if flush > 0 and reader is not None and reader is not threading.current_thread():
            reader.join(flush)
        if self._call is not None:
            self._call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
        if self._channel is not None:
            self._channel.close()

    def kill(self) -> None:
        """Drop the connection abruptly, as a crashed node would (fault injection)."""
        self._closed.set()
        if self._call is not None:
            self._call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
        if self._channel is not None:
            self._channel.close()
