"""Channel security: mutual TLS from the federation's PKI, or plaintext when asked for.

Every party holds credentials issued by the federation's CA (``federation pki issue``):
the coordinator's server certificate, and a client certificate for each node, analyst,
auditor and admin. :class:`TransportSecurity` carries them to the gRPC edge: the
coordinator requires and verifies a client certificate from the same CA on every
connection, and clients verify the coordinator's. Plaintext exists only through
:meth:`TransportSecurity.insecure`, meant for local simulation, and says so in a
warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from federation.pki import Credentials, load_credentials

__all__ = ["TransportSecurity", "is_tls_failure"]

log = logging.getLogger(__name__)

_TLS_WORDS = ("ssl", "tls", "handshake", "certificate", "x509")


@dataclass(frozen=True)
class TransportSecurity:
    """How one party's channels are secured.

    Attributes:
        credentials: This party's CA certificate, certificate and key; ``None`` only for
            plaintext (:meth:`insecure`).
        crl: The CA's revocation list file (coordinator only): reread when it changes.
        server_name: The name to check the coordinator's certificate against when it
            differs from the host dialled (for example an address by IP).
    """

    credentials: Credentials | None
    crl: Path | None = None
    server_name: str | None = None

    @classmethod
    def mutual_tls(
        cls,
        credentials: Credentials | str | Path,
        *,
        name: str | None = None,
        crl: str | Path | None = None,
        server_name: str | None = None,
    ) -> TransportSecurity:
        """Mutual TLS with ``credentials`` (or the issued directory or key file holding
        them, :func:`~federation.pki.load_credentials`)."""
        if not isinstance(credentials, Credentials):
            credentials = load_credentials(credentials, name)
        return cls(credentials, Path(crl) if crl is not None else None, server_name)

    @classmethod
    def insecure(cls, who: str = "this party") -> TransportSecurity:
        """Plaintext channels: no identities, no encryption. For local simulation only."""
        log.warning(
            "%s uses PLAINTEXT gRPC (--insecure): no encryption and no identities; "
            "meant for a local simulation only, never for real data",
            who,
        )
        return cls(None)

    @property
    def secure(self) -> bool:
        """Whether channels are mutual TLS."""
        return self.credentials is not None

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """The coordinator's server credentials (client certificates required), or None."""
        c = self.credentials
        if c is None:
            return None
        return grpc.ssl_server_credentials(
            [(c.export_private(unprotected=True), c.cert_pem)],
            root_certificates=c.ca_pem,
            require_client_auth=True,
        )

    def channel(self, address: str, options: Sequence[tuple[str, object]]) -> grpc.Channel:
        """A channel to ``address`` (secure unless plaintext was asked for)."""
        c = self.credentials
        options = list(options)
        if c is None:
            return grpc.insecure_channel(address, options=options)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=c.ca_pem,
            private_key=c.export_private(unprotected=True),
            certificate_chain=c.cert_pem,
        )
        if self.server_name:
            options = [*options, ("grpc.ssl_target_name_override", self.server_name)]
        return grpc.secure_channel(address, credentials, options=options)


def is_tls_failure(details: str) -> bool:
    """Whether a gRPC error's details describe a failed TLS handshake."""
    lowered = details.lower()
    return any(word in lowered for word in _TLS_WORDS)
