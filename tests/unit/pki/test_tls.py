"""Issued credentials work for mutual TLS in gRPC, and the server learns the caller's identity."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from federation.pki import (
    CertificateAuthority,
    Credentials,
    Identity,
    Role,
    identity_from_certificate,
    init_ca,
    issue,
    load_credentials,
)

METHOD = "/federation.test.Echo/Echo"


def _credentials(ca: CertificateAuthority, role: Role, name: str) -> Credentials:
    return load_credentials(issue(ca.directory, role, name).key_path.parent)


class EchoServer:
    """A gRPC server requiring client certificates; it records who called."""

    def __init__(self, coordinator: Credentials) -> None:
        self.callers: list[Identity] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler(
            "federation.test.Echo",
            {"Echo": grpc.unary_unary_rpc_method_handler(self._echo)},
        )
        self._server.add_generic_rpc_handlers((handler,))
        credentials = grpc.ssl_server_credentials(
            [(coordinator.key_pem, coordinator.cert_pem)],
            root_certificates=coordinator.ca_pem,
            require_client_auth=True,
        )
        self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self._server.start()

    def _echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        (pem,) = context.auth_context()["x509_pem_cert"]
        self.callers.append(identity_from_certificate(pem))
        return request

    def stop(self) -> None:
        self._server.stop(None)


@pytest.fixture
def server(ca: CertificateAuthority) -> Iterator[EchoServer]:
    running = EchoServer(_credentials(ca, Role.COORDINATOR, "coord.example.org"))
    try:
        yield running
    finally:
        running.stop()


def _call(port: int, client: Credentials, ca_pem: bytes, payload: bytes) -> bytes:
    credentials = grpc.ssl_channel_credentials(ca_pem, client.key_pem, client.cert_pem)
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        response: bytes = channel.unary_unary(METHOD)(payload, timeout=5)
    return response


def test_mutual_tls_with_issued_credentials(ca: CertificateAuthority, server: EchoServer) -> None:
    alice = _credentials(ca, Role.ANALYST, "alice")
    node = _credentials(ca, Role.NODE, "hospital-a")
    assert _call(server.port, alice, ca.certificate_pem, b"hello") == b"hello"
    assert _call(server.port, node, ca.certificate_pem, b"\x00\x01") == b"\x00\x01"
    assert [(c.role, c.name, c.federation) for c in server.callers] == [
        (Role.ANALYST, "alice", "acme"),
        (Role.NODE, "hospital-a", "acme"),
    ]
    assert server.callers[0] == alice.identity


def test_a_client_of_another_ca_is_refused(
    ca: CertificateAuthority, server: EchoServer, tmp_path: Path
) -> None:
    other = init_ca(tmp_path / "other", "acme")
    mallory = _credentials(other, Role.ANALYST, "alice")
    # Mallory trusts the real server's CA, so only her own certificate is at fault.
    with pytest.raises(grpc.RpcError) as exc:
        _call(server.port, mallory, ca.certificate_pem, b"hello")
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
    assert server.callers == []


def test_a_node_certificate_cannot_serve_as_the_coordinator(ca: CertificateAuthority) -> None:
    impostor = EchoServer(_credentials(ca, Role.NODE, "n1"))  # no host names in its SAN
    try:
        with pytest.raises(grpc.RpcError) as exc:
            _call(impostor.port, _credentials(ca, Role.ANALYST, "alice"), ca.certificate_pem, b"x")
        assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
        assert impostor.callers == []
    finally:
        impostor.stop()
