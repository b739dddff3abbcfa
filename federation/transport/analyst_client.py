"""The analyst's connection to the coordinator, speaking domain types."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from federation.errors import CoordinatorUnavailableError, FederationError
from federation.messages import (
    PROTOCOL_VERSION,
    CoordinatorInfo,
    DatasetInfo,
    EncryptedJobResult,
    JobAccepted,
    JobCompleted,
    JobEvent,
    JobProgress,
    JobRecord,
    JobResult,
    NodeInfo,
    Protocol,
    QueryRequest,
)
from federation.schema import DatasetSchema
from federation.table import paused_gc
from federation.transport.options import channel_options
from federation.transport.security import TransportSecurity
from federation.transport.serde import (
    ResultAssembler,
    dataset_info_from_proto,
    job_record_from_proto,
    node_info_from_proto,
    protocol_from_wire,
)
from federation.transport.serde_dp import dp_params_to_proto, privacy_report_from_proto
from federation.transport.status import error_from_rpc
from federation.v1 import analyst_pb2, analyst_pb2_grpc

__all__ = ["AnalystConnection"]


class AnalystConnection:
    """A channel to the coordinator's analyst service."""

    def __init__(
        self,
        address: str,
        *,
        security: TransportSecurity,
        connect_timeout: float = 10.0,
    ) -> None:
        self.address = address
        self.security = security
        self._channel = security.channel(address, channel_options())
        self._stub = analyst_pb2_grpc.AnalystServiceStub(self._channel)
        try:
            self.info = self._get_info(connect_timeout)
        except FederationError:
            self._channel.close()
            raise

    def _get_info(self, timeout: float) -> CoordinatorInfo:
        try:
            resp = self._stub.GetInfo(analyst_pb2.GetInfoRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            error = error_from_rpc(exc, target=self.address)
            status = getattr(exc, "code", lambda: None)()
            unreached = status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            if not unreached or "TLS" in error.message:
                raise error from None  # the coordinator answered, or says the handshake failed
            if any(w in error.message for w in ("Socket closed", "Connection reset")):
                raise CoordinatorUnavailableError(
                    f"the coordinator at {self.address} closed the connection during the "
                    + (
                        "TLS handshake: it rejected this party's certificate (expired, "
                        "revoked, or not from the federation's CA)"
                        if self.security.secure
                        else "handshake: it expects mutual TLS and refuses plaintext clients; "
                        "pass credentials (--credentials)"
                    )
                ) from None
            raise CoordinatorUnavailableError(
                f"cannot reach the coordinator at {self.address}: "
                "check the address and that `federation coordinator serve` is running"
            ) from None
        if resp.protocol_version != PROTOCOL_VERSION:
            raise FederationError(
                f"the coordinator at {self.address} speaks protocol version "
                f"{resp.protocol_version}, this client {PROTOCOL_VERSION}: upgrade the older side"
            )
        protocols = []
        for name in resp.protocols:
            try:
                protocols.append(Protocol(name))
            except ValueError:
                continue  # a newer coordinator may offer protocols this client does not know
        return CoordinatorInfo(resp.version, resp.protocol_version, tuple(protocols))

    def close(self) -> None:
        """Release the channel."""
        self._channel.close()

    def list_datasets(self, timeout: float = 30.0) -> list[DatasetInfo]:
        """The directory of datasets."""
        try:
            resp = self._stub.ListDatasets(analyst_pb2.ListDatasetsRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, target=self.address) from None
        return [dataset_info_from_proto(d) for d in resp.datasets]

    def list_nodes(self, timeout: float = 30.0) -> list[NodeInfo]:
        """Known nodes and their liveness."""
        try:
            resp = self._stub.ListNodes(analyst_pb2.ListNodesRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, target=self.address) from None
        return [node_info_from_proto(n) for n in resp.nodes]

    def forget_node(self, name: str, timeout: float = 30.0) -> None:
        """Remove an offline node from the directory (admin credentials only)."""
        try:
            self._stub.ForgetNode(analyst_pb2.ForgetNodeRequest(node_name=name), timeout=timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, target=self.address) from None

    def get_job(self, job_id: str, timeout: float = 30.0) -> JobRecord:
        """A recorded job."""
        try:
            parts = list(
                self._stub.GetJob(analyst_pb2.GetJobRequest(job_id=job_id), timeout=timeout)
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, target=self.address) from None
        return job_record_from_proto(iter(parts))

    def submit_query(self, request: QueryRequest, timeout: float | None) -> Iterator[JobEvent]:
        """Run a query; yields events as they arrive. Errors carry the job id if known."""
        decoder = _EventDecoder()
        try:
            stream = self._stub.SubmitQuery(
                analyst_pb2.SubmitQueryRequest(
                    sql=request.sql,
                    protocol=request.protocol.value,
                    public_key=request.public_key,
                    dp=None if request.dp is None else dp_params_to_proto(request.dp),
                ),
                timeout=timeout,
            )
            for event in stream:
                yield from decoder.decode(event)
        except grpc.RpcError as exc:
            error = error_from_rpc(exc, target=self.address)
            error.job_id = decoder.job_id
            raise error from None


class _EventDecoder:
    """Reassembles a job's streamed events (result chunks, ciphertext chunks)."""

    def __init__(self) -> None:
        self.job_id: str | None = None
        self._result: ResultAssembler | None = None
        self._encrypted: analyst_pb2.EncryptedResultHeader | None = None
        self._ciphertext = bytearray()

    def decode(self, event: analyst_pb2.JobEvent) -> list[JobEvent]:
        """The domain events completed by this wire event (often none)."""
        job_id = self.job_id = event.job_id
        which = event.WhichOneof("event")
        if which == "accepted":
            a = event.accepted
            return [
                JobAccepted(
                    job_id=job_id,
                    sql=a.sql,
                    protocol=protocol_from_wire(a.protocol),
                    dataset=a.dataset,
                    selected_nodes=a.selected_nodes,
                    submitted_at=a.submitted_at,
                )
            ]
        if which == "progress":
            p = event.progress
            return [JobProgress(job_id, p.stage, p.done, p.total)]
        if which == "result_header":
            if self._result is not None:
                raise FederationError("a job streamed two result headers")
            self._result = ResultAssembler(event.result_header)
        elif which == "result_chunk":
            if self._result is None:
                raise FederationError("result rows arrived before the result header")
            with paused_gc():
                self._result.add(event.result_chunk)
        elif which == "encrypted_header":
            self._encrypted = event.encrypted_header
        elif which == "encrypted_bytes":
            if self._encrypted is None:
                raise FederationError("ciphertext arrived before its header")
            self._ciphertext.extend(event.encrypted_bytes.data)
            if len(self._ciphertext) > self._encrypted.total_bytes:
                raise FederationError("more ciphertext arrived than announced")
        elif which == "completed":
            return self._completed(job_id, event.completed)
        return []

    def _completed(self, job_id: str, c: analyst_pb2.JobCompleted) -> list[JobEvent]:
        out: list[JobEvent] = []
        if self._encrypted is not None:
            out.append(_encrypted_result(job_id, self._encrypted, bytes(self._ciphertext)))
        if self._result is not None:
            out.append(JobResult(job_id, self._result.table()))
        out.append(
            JobCompleted(
                job_id=job_id,
                protocol=protocol_from_wire(c.protocol),
                selected_nodes=c.selected_nodes,
                contributing_nodes=c.contributing_nodes,
                finished_at=c.finished_at,
                privacy=privacy_report_from_proto(c.privacy) if c.HasField("privacy") else None,
            )
        )
        return out


def _encrypted_result(
    job_id: str, header: analyst_pb2.EncryptedResultHeader, ciphertext: bytes
) -> EncryptedJobResult:
    if len(ciphertext) != header.total_bytes:
        raise FederationError(
            f"the encrypted result announced {header.total_bytes} bytes, {len(ciphertext)} arrived"
        )
    return EncryptedJobResult(
        job_id=job_id,
        protocol=protocol_from_wire(header.scheme),
        fingerprint=header.fingerprint,
        schema=DatasetSchema.from_json(header.schema_json),
        length=int(header.length),
        ring_bits=header.ring_bits,
        parties=header.parties,
        ciphertext=ciphertext,
    )
