"""Who may call what: one server interceptor checks every RPC before its handler runs.

The TLS handshake has already proven the caller holds a certificate from the
federation's CA (anything else never gets here: gRPC refuses the connection). The
interceptor then reads the identity from the certificate
(``federation://<federation>/<role>/<name>``) and refuses, before any handler code:

* a revoked certificate (serial on the CA's CRL, reread when the file changes):
  ``UNAUTHENTICATED``;
* a role the method does not admit (:data:`METHOD_ROLES`): ``PERMISSION_DENIED``;
* a caller over its rate (a token bucket per identity): ``RESOURCE_EXHAUSTED``.

Handlers that care who called (a node registering under its own name, the analyst
whose DP budget pays) read it with :func:`caller`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import grpc

from federation.errors import (
    AccessDeniedError,
    CertificateError,
    FederationError,
    RateLimitError,
)
from federation.pki import Identity, Role, identity_from_certificate, load_revoked_serials
from federation.pki.crl import crl_next_update
from federation.transport.interception import Interceptor, rewrap
from federation.transport.status import abort_with

__all__ = ["METHOD_ROLES", "AccessControl", "RateLimit", "caller"]

log = logging.getLogger(__name__)

_ANALYST = "/federation.v1.AnalystService/"
METHOD_ROLES: dict[str, frozenset[Role]] = {
    _ANALYST + "GetInfo": frozenset(Role),
    _ANALYST + "ListDatasets": frozenset({Role.ANALYST, Role.AUDITOR, Role.ADMIN}),
    _ANALYST + "ListNodes": frozenset({Role.ANALYST, Role.AUDITOR, Role.ADMIN}),
    _ANALYST + "SubmitQuery": frozenset({Role.ANALYST}),
    _ANALYST + "GetJob": frozenset({Role.ANALYST, Role.AUDITOR, Role.ADMIN}),
    _ANALYST + "ForgetNode": frozenset({Role.ADMIN}),
    "/federation.v1.NodeService/Connect": frozenset({Role.NODE}),
    "/federation.v1.AuditService/GetLog": frozenset({Role.AUDITOR, Role.ADMIN}),
}
"""The roles each RPC admits; a method not listed admits nobody."""

_IDENTITIES: dict[bytes, Identity] = {}
_IDENTITIES_LOCK = threading.Lock()


def caller(context: grpc.ServicerContext) -> Identity | None:
    """The identity of the peer of ``context`` (``None`` on a plaintext channel).

    Raises:
        CertificateError: The peer's certificate carries no valid federation identity.
    """
    certs = context.auth_context().get("x509_pem_cert")
    if not certs:
        return None
    pem = bytes(certs[0])
    with _IDENTITIES_LOCK:
        found = _IDENTITIES.get(pem)
    if found is None:
        found = identity_from_certificate(pem)
        with _IDENTITIES_LOCK:
            if len(_IDENTITIES) > 4096:
                _IDENTITIES.clear()
            _IDENTITIES[pem] = found
    return found


@dataclass(frozen=True)
class RateLimit:
    """A token bucket per identity: ``burst`` calls at once, refilled at ``per_second``."""

    per_second: float = 50.0
    burst: float = 200.0


class _Buckets:
    def __init__(self, limit: RateLimit) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(key, (self._limit.burst, now))
            tokens = min(self._limit.burst, tokens + (now - last) * self._limit.per_second)
            if tokens < 1:
                self._state[key] = (tokens, now)
                return False
            self._state[key] = (tokens - 1, now)
            return True


class _Revocations:
    """The CA's CRL, reread when the file changes; only a CRL the CA signed counts."""

    def __init__(self, crl: Path | None, ca_pem: bytes) -> None:
        self._crl = crl
        self._ca = ca_pem
        self._stamp: tuple[int, int] | None = None
        self._serials: frozenset[int] = frozenset()
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        if self._crl is None:
            return
        st = self._crl.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp == self._stamp:
                return
            pem = self._crl.read_bytes()
            self._serials = load_revoked_serials(pem, self._ca)
            self._stamp = stamp
        log.info("revocation list %s: %d revoked certificate(s)", self._crl, len(self._serials))
        due = crl_next_update(pem)
        if due is not None and due < datetime.now(UTC):
            log.warning(
                "revocation list %s was due for renewal at %s: run `federation pki crl`",
                self._crl,
                due.isoformat(timespec="seconds"),
            )

    def revoked(self, serial: int) -> bool:
        try:
            self.refresh()
        except (OSError, CertificateError) as exc:  # keep the last good list, say so
            log.error("cannot reread the revocation list %s: %s", self._crl, exc)
        return serial in self._serials


class AccessControl(Interceptor):
    """Checks the caller's certificate, role and rate on every RPC (module docstring)."""

    def __init__(
        self, ca_pem: bytes, federation: str, crl: Path | None, rate: RateLimit | None = None
    ) -> None:
        """Admit identities of ``federation`` whose certificates the CA ``ca_pem`` issued
        (TLS checks the chain) and that the CRL at ``crl`` does not list.

        Raises:
            CertificateError: The CRL is not signed by the CA.
            OSError: The CRL cannot be read.
        """
        self._federation = federation
        self._revocations = _Revocations(crl, ca_pem)
        self._rate = rate or RateLimit()
        self._buckets = _Buckets(self._rate)

    def _check(self, method: str, context: grpc.ServicerContext) -> None:
        try:
            identity = caller(context)
        except CertificateError as exc:
            _deny(context, method, exc)
        if identity is None:
            _deny(context, method, CertificateError("no client certificate"))
        if identity.federation != self._federation:
            _deny(
                context,
                method,
                CertificateError(
                    f"a certificate of federation {identity.federation!r}, not {self._federation!r}"
                ),
            )
        if self._revocations.revoked(identity.serial):
            _deny(
                context,
                method,
                CertificateError(
                    f"the certificate of {identity.role.value} {identity.name!r} "
                    f"(serial {identity.serial:x}) is revoked"
                ),
            )
        if identity.role not in METHOD_ROLES.get(method, frozenset()):
            _deny(
                context,
                method,
                AccessDeniedError(
                    f"a {identity.role.value} ({identity.name!r}) may not call "
                    f"{method.rsplit('/', 1)[-1]}"
                ),
            )
        if not self._buckets.take(identity.uri):
            _deny(
                context,
                method,
                RateLimitError(
                    f"{identity.role.value} {identity.name!r} exceeds its rate limit of "
                    f"{self._rate.per_second:g} calls/s; slow down"
                ),
            )

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the method's handler so that the checks run first."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        def stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            self._check(method, context)
            return requests

        return rewrap(handler, unary=lambda _, context: self._check(method, context), stream=stream)


def _deny(context: grpc.ServicerContext, method: str, error: FederationError) -> NoReturn:
    log.warning("refused %s: [%s] %s", method, error.code, error.message)
    abort_with(context, error)
