"""The coordinator's audit log over gRPC: a servicer, and the auditor's client.

The log travels as it is stored: every entry's exact bytes, the root recorded after
each, and the signed heads, so an auditor verifies it exactly as a copy of the file
(:func:`federation.audit.heads.verify_log`), pinning the log's key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import grpc

from federation.audit.heads import SignedTreeHead
from federation.errors import FederationError
from federation.transport.options import channel_options
from federation.transport.security import TransportSecurity
from federation.transport.serde_audit import head_from_proto, head_to_proto
from federation.transport.status import error_boundary, error_from_rpc
from federation.v1 import audit_pb2, audit_pb2_grpc

__all__ = ["AuditSource", "LogCopy", "add_audit_service", "fetch_log"]

PART_ENTRIES = 1000
"""Entries per streamed part (well under the message size limit)."""

LogCopy = tuple[list[bytes], list[bytes], list[SignedTreeHead], bytes]
"""Entries, recorded roots, signed heads and the log's public key (as ``read_log``)."""


class AuditSource(Protocol):
    """What the servicer reads: the coordinator's log."""

    @property
    def size(self) -> int:
        """Entries in the log."""

    @property
    def public_key(self) -> bytes:
        """The key that signs its heads."""

    def rows(self, start: int, end: int) -> list[tuple[bytes, bytes]]:
        """(entry, root) for ``[start, end)``."""

    def heads(self) -> list[SignedTreeHead]:
        """Every signed head."""


class _AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, source: AuditSource) -> None:
        self._source = source

    def GetLog(
        self, request: audit_pb2.GetLogRequest, context: grpc.ServicerContext
    ) -> Iterator[audit_pb2.AuditLogPart]:
        with error_boundary(context, "GetLog"):
            heads = self._source.heads()
            size = max([self._source.size, *(h.size for h in heads)])
            start = min(int(request.start), size)
            yield audit_pb2.AuditLogPart(public_key=self._source.public_key, start=start)
            for first in range(start, size, PART_ENTRIES):
                rows = self._source.rows(first, min(first + PART_ENTRIES, size))
                yield audit_pb2.AuditLogPart(
                    start=first, entries=[e for e, _ in rows], roots=[r for _, r in rows]
                )
            yield audit_pb2.AuditLogPart(start=size, heads=[head_to_proto(h) for h in heads])


def add_audit_service(server: grpc.Server, source: AuditSource) -> None:
    """Serve ``source`` as the AuditService on ``server``."""
    audit_pb2_grpc.add_AuditServiceServicer_to_server(_AuditServicer(source), server)


def fetch_log(address: str, security: TransportSecurity, *, timeout: float = 120.0) -> LogCopy:
    """Download the coordinator's whole log (an auditor's or admin's certificate).

    Raises:
        FederationError: The call failed (a role that may not read the log gets
            ``access_denied``), or the parts do not follow each other.
    """
    channel = security.channel(address, channel_options())
    entries: list[bytes] = []
    roots: list[bytes] = []
    heads: list[SignedTreeHead] = []
    key = b""
    try:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        for part in stub.GetLog(audit_pb2.GetLogRequest(start=0), timeout=timeout):
            if part.public_key:
                key = bytes(part.public_key)
            if part.entries and int(part.start) != len(entries):
                raise FederationError("the coordinator sent audit entries out of order")
            entries += [bytes(e) for e in part.entries]
            roots += [bytes(r) for r in part.roots]
            heads += [head_from_proto(h) for h in part.heads]
    except grpc.RpcError as exc:
        raise error_from_rpc(exc, target=address) from None
    finally:
        channel.close()
    if len(roots) != len(entries):
        raise FederationError("the coordinator sent audit entries without their roots")
    return entries, roots, heads, key
