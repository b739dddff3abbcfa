"""The coordinator's gRPC server: thin servicers over a CoordinatorBackend.

Each servicer method converts wire to domain, calls the backend, and converts
back; :func:`~federation.transport.status.error_boundary` maps our errors to
gRPC statuses. Node streams are pumped by one reader thread each, which
reassembles chunked vectors before handing complete messages to the backend.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from federation.dp.report import ANONYMOUS
from federation.errors import (
    AccessDeniedError,
    FederationError,
    MessageTooLargeError,
    ProtocolError,
)
from federation.messages import (
    EncryptedJobResult,
    JobAccepted,
    JobEvent,
    JobProgress,
    JobResult,
    QueryRequest,
    Registration,
)
from federation.transport.access import AccessControl, RateLimit, caller
from federation.transport.audit_service import AuditSource, add_audit_service
from federation.transport.backend import CoordinatorBackend, OutboxClosed, QueueOutbox
from federation.transport.malformed import MalformedRequestGuard
from federation.transport.options import MAX_SQL_BYTES, server_options
from federation.transport.security import TransportSecurity
from federation.transport.serde import (
    dataset_info_to_proto,
    job_record_to_proto,
    node_info_to_proto,
    protocol_from_wire,
    result_chunks,
    table_header_to_proto,
)
from federation.transport.serde_chunks import ChunkReassembler, chunk_bytes
from federation.transport.serde_dp import dp_params_from_proto, privacy_report_to_proto
from federation.transport.serde_node import coordinator_message_to_proto, node_message_from_proto
from federation.transport.status import abort_with, error_boundary
from federation.v1 import analyst_pb2, analyst_pb2_grpc, node_pb2, node_pb2_grpc

__all__ = ["CoordinatorServer", "start_coordinator_server"]

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5

DEFAULT_MAX_CALLS = 1024
"""Calls a coordinator serves at once by default (one per connected node, the rest
for analysts)."""


class _AnalystServicer(analyst_pb2_grpc.AnalystServiceServicer):
    def __init__(self, backend: CoordinatorBackend) -> None:
        self._backend = backend

    def GetInfo(
        self, request: analyst_pb2.GetInfoRequest, context: grpc.ServicerContext
    ) -> analyst_pb2.CoordinatorInfo:
        with error_boundary(context, "GetInfo"):
            info = self._backend.info()
            return analyst_pb2.CoordinatorInfo(
                version=info.version,
                protocol_version=info.protocol_version,
                protocols=[p.value for p in info.protocols],
            )

    def ListDatasets(
        self, request: analyst_pb2.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> analyst_pb2.ListDatasetsResponse:
        with error_boundary(context, "ListDatasets"):
            infos = self._backend.list_datasets()
            return analyst_pb2.ListDatasetsResponse(
                datasets=[dataset_info_to_proto(i) for i in infos]
            )

    def ListNodes(
        self, request: analyst_pb2.ListNodesRequest, context: grpc.ServicerContext
    ) -> analyst_pb2.ListNodesResponse:
        with error_boundary(context, "ListNodes"):
            nodes = self._backend.list_nodes()
            return analyst_pb2.ListNodesResponse(nodes=[node_info_to_proto(n) for n in nodes])

    def SubmitQuery(
        self, request: analyst_pb2.SubmitQueryRequest, context: grpc.ServicerContext
    ) -> Iterator[analyst_pb2.JobEvent]:
        with error_boundary(context, "SubmitQuery"):
            if len(request.sql.encode()) > MAX_SQL_BYTES:
                raise MessageTooLargeError(
                    f"query text is {len(request.sql.encode())} bytes; the limit is {MAX_SQL_BYTES}"
                )
            query = QueryRequest(
                sql=request.sql,
                protocol=protocol_from_wire(request.protocol),
                public_key=bytes(request.public_key),
                dp=dp_params_from_proto(request.dp) if request.HasField("dp") else None,
            )
            identity = caller(context)
            if identity is not None:
                query = with_analyst(query, identity.name)
            for event in self._backend.run_query(query):
                yield from _job_event_to_proto(event)

    def GetJob(
        self, request: analyst_pb2.GetJobRequest, context: grpc.ServicerContext
    ) -> Iterator[analyst_pb2.JobRecordPart]:
        with error_boundary(context, "GetJob"):
            yield from job_record_to_proto(self._backend.get_job(request.job_id))

    def ForgetNode(
        self, request: analyst_pb2.ForgetNodeRequest, context: grpc.ServicerContext
    ) -> analyst_pb2.ForgetNodeResponse:
        with error_boundary(context, "ForgetNode"):
            identity = caller(context)
            by = identity.uri if identity is not None else f"plaintext peer {context.peer()}"
            self._backend.forget_node(request.node_name, by)
            return analyst_pb2.ForgetNodeResponse()


def with_analyst(query: QueryRequest, name: str) -> QueryRequest:
    """The query as asked by the analyst ``name`` (from its certificate): its DP budget
    pays, whatever the request declared.

    Raises:
        AccessDeniedError: The request names another analyst's budget.
    """
    dp = query.dp
    if dp is not None and dp.analyst not in (ANONYMOUS, name):
        raise AccessDeniedError(
            f"analyst {name!r} cannot spend the DP budget of analyst {dp.analyst!r}"
        )
    return dataclasses.replace(
        query,
        analyst=name,
        dp=dataclasses.replace(dp, analyst=name) if dp is not None else None,
    )


def _job_event_to_proto(event: JobEvent) -> Iterator[analyst_pb2.JobEvent]:
    if isinstance(event, JobAccepted):
        yield analyst_pb2.JobEvent(
            job_id=event.job_id,
            accepted=analyst_pb2.JobAccepted(
                sql=event.sql,
                protocol=event.protocol.value,
                dataset=event.dataset,
                selected_nodes=event.selected_nodes,
                submitted_at=event.submitted_at,
            ),
        )
    elif isinstance(event, JobProgress):
        yield analyst_pb2.JobEvent(
            job_id=event.job_id,
            progress=analyst_pb2.JobProgress(stage=event.stage, done=event.done, total=event.total),
        )
    elif isinstance(event, EncryptedJobResult):
        yield analyst_pb2.JobEvent(
            job_id=event.job_id,
            encrypted_header=analyst_pb2.EncryptedResultHeader(
                scheme=event.protocol.value,
                fingerprint=event.fingerprint,
                schema_json=event.schema.to_json(),
                length=event.length,
                ring_bits=event.ring_bits,
                parties=event.parties,
                total_bytes=len(event.ciphertext),
            ),
        )
        for _, data in chunk_bytes(event.ciphertext):
            yield analyst_pb2.JobEvent(
                job_id=event.job_id, encrypted_bytes=analyst_pb2.ResultBytes(data=data)
            )
    elif isinstance(event, JobResult):
        table = event.table
        yield analyst_pb2.JobEvent(job_id=event.job_id, result_header=table_header_to_proto(table))
        for chunk in result_chunks(table):
            yield analyst_pb2.JobEvent(job_id=event.job_id, result_chunk=chunk)
    else:
        yield analyst_pb2.JobEvent(
            job_id=event.job_id,
            completed=analyst_pb2.JobCompleted(
                contributing_nodes=event.contributing_nodes,
                selected_nodes=event.selected_nodes,
                finished_at=event.finished_at,
                protocol=event.protocol.value,
                privacy=None if event.privacy is None else privacy_report_to_proto(event.privacy),
            ),
        )


class _NodeServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(self, backend: CoordinatorBackend) -> None:
        self._backend = backend

    def Connect(
        self, request_iterator: Iterator[node_pb2.NodeMessage], context: grpc.ServicerContext
    ) -> Iterator[node_pb2.CoordinatorMessage]:
        outbox = QueueOutbox()
        with error_boundary(context, "NodeService.Connect"):
            try:
                first = next(request_iterator, None)
            except grpc.RpcError:
                return  # the node went away before registering: nothing to clean up
            if first is None:
                return
            registration = node_message_from_proto(first)
            if not isinstance(registration, Registration):
                raise ProtocolError("the first message on a node stream must be a registration")
            identity = caller(context)
            if identity is not None and identity.name != registration.node_name:
                raise AccessDeniedError(
                    f"the certificate of node {identity.name!r} cannot register as node "
                    f"{registration.node_name!r}: nodes serve only under their own identity"
                )
            certs = context.auth_context().get("x509_pem_cert") or [b""]
            session = self._backend.attach_node(
                registration, outbox, context.peer(), bytes(certs[0])
            )
        detached = threading.Event()

        def detach() -> None:
            if not detached.is_set():
                detached.set()
                outbox.close()
                self._backend.detach_node(session)

        context.add_callback(detach)
        pump = threading.Thread(
            target=self._pump,
            args=(request_iterator, session, outbox),
            name=f"node-stream-{registration.node_name}",
            daemon=True,
        )
        pump.start()
        try:
            while True:
                item = outbox.get(_POLL_SECONDS)
                if item is None:
                    if not context.is_active():
                        break
                    continue
                if isinstance(item, OutboxClosed):
                    if item.error is not None:
                        abort_with(context, item.error)
                    break
                yield coordinator_message_to_proto(item)
        finally:
            detach()

    def _pump(
        self,
        request_iterator: Iterator[node_pb2.NodeMessage],
        session: object,
        outbox: QueueOutbox,
    ) -> None:
        reassembler = ChunkReassembler()
        try:
            for raw in request_iterator:
                message = reassembler.feed(node_message_from_proto(raw))
                if isinstance(message, Registration):
                    raise ProtocolError("a node may register only once per stream")
                if message is not None:
                    self._backend.node_message(session, message)
        except FederationError as exc:
            log.warning("closing a node stream: [%s] %s", exc.code, exc.message)
            outbox.close(exc)
        except grpc.RpcError:
            pass  # the node went away; detach happens in the stream's callback
        except Exception:
            log.exception("unexpected error on a node stream")
            outbox.close(FederationError("internal error while reading the node stream"))
        finally:
            outbox.close()


@dataclass
class CoordinatorServer:
    """A running coordinator gRPC server."""

    server: grpc.Server
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` that nodes and analysts dial."""
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving; in-flight calls get ``grace`` seconds."""
        self.server.stop(grace).wait()

    def wait(self) -> None:
        """Block until the server stops."""
        self.server.wait_for_termination()


def start_coordinator_server(
    backend: CoordinatorBackend,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    security: TransportSecurity,
    rate: RateLimit | None = None,
    audit: AuditSource | None = None,
    max_calls: int = DEFAULT_MAX_CALLS,
) -> CoordinatorServer:
    """Serve ``backend`` on ``host:port`` (port 0 picks a free port) and return at once.

    With mutual TLS, every RPC first passes :class:`~federation.transport.access.AccessControl`
    (certificate from the CA and not revoked, role, rate); plaintext has no identities.
    ``max_calls``: calls served at once, each on its own thread. Every connected node
    holds one for as long as it is connected; analysts' calls take the rest. A call
    beyond it is refused (``RESOURCE_EXHAUSTED``; the caller is told the coordinator
    is full, and node agents retry).
    """
    credentials = security.credentials
    interceptors: list[grpc.ServerInterceptor[Any, Any]] = []
    if credentials is not None:
        interceptors.append(
            AccessControl(credentials.ca_pem, credentials.identity.federation, security.crl, rate)
        )
    # Innermost: the access checks above run before a request's bytes are judged.
    interceptors.append(MalformedRequestGuard())
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_calls, thread_name_prefix="coordinator-rpc"),
        options=server_options(),
        maximum_concurrent_rpcs=max_calls,
        interceptors=interceptors,
    )
    analyst_pb2_grpc.add_AnalystServiceServicer_to_server(_AnalystServicer(backend), server)
    node_pb2_grpc.add_NodeServiceServicer_to_server(_NodeServicer(backend), server)
    if audit is not None:
        add_audit_service(server, audit)
    server_credentials = security.server_credentials()
    if server_credentials is None:
        bound = server.add_insecure_port(f"{host}:{port}")
    else:
        bound = server.add_secure_port(f"{host}:{port}", server_credentials)
    if bound == 0:
        raise FederationError(f"cannot listen on {host}:{port} (address in use or not local?)")
    server.start()
    log.info("coordinator listening on %s:%d", host, bound)
    return CoordinatorServer(server=server, host=host, port=bound)
