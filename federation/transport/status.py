"""The one place where our errors meet gRPC status codes.

Servers wrap every handler in :func:`error_boundary`, which turns a
:class:`~federation.errors.FederationError` into ``context.abort(status, message)``
with the error's stable code in the trailing metadata; anything unexpected is
logged with its traceback and reported as ``INTERNAL`` without details.
Clients call :func:`error_from_rpc` to turn a ``grpc.RpcError`` back into the
typed error.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import NoReturn

import grpc

from federation import errors
from federation.transport.security import is_tls_failure

__all__ = ["CODE_METADATA_KEY", "STATUS_BY_CODE", "error_boundary", "error_from_rpc"]

log = logging.getLogger(__name__)

CODE_METADATA_KEY = "federation-error-code"

_S = grpc.StatusCode
STATUS_BY_CODE: dict[str, grpc.StatusCode] = {
    errors.FederationError.code: _S.INTERNAL,
    errors.ConfigError.code: _S.INVALID_ARGUMENT,
    errors.QueryError.code: _S.INVALID_ARGUMENT,
    errors.QuerySyntaxError.code: _S.INVALID_ARGUMENT,
    errors.NonAggregateQueryError.code: _S.INVALID_ARGUMENT,
    errors.UnsupportedQueryError.code: _S.INVALID_ARGUMENT,
    errors.UnknownColumnError.code: _S.NOT_FOUND,
    errors.QueryTypeError.code: _S.INVALID_ARGUMENT,
    errors.UnknownDatasetError.code: _S.NOT_FOUND,
    errors.SchemaMismatchError.code: _S.FAILED_PRECONDITION,
    errors.DataError.code: _S.FAILED_PRECONDITION,
    errors.ValueOutOfRangeError.code: _S.OUT_OF_RANGE,
    errors.ProtocolError.code: _S.ABORTED,
    errors.TooFewParticipantsError.code: _S.UNAVAILABLE,
    errors.RoundDeadlineError.code: _S.DEADLINE_EXCEEDED,
    errors.NodeTaskError.code: _S.FAILED_PRECONDITION,
    errors.PolicyViolationError.code: _S.PERMISSION_DENIED,
    errors.DisclosureControlError.code: _S.FAILED_PRECONDITION,
    errors.ApprovalDeniedError.code: _S.PERMISSION_DENIED,
    errors.ApprovalExpiredError.code: _S.DEADLINE_EXCEEDED,
    errors.MessageTooLargeError.code: _S.RESOURCE_EXHAUSTED,
    errors.UnknownJobError.code: _S.NOT_FOUND,
    errors.UnknownNodeError.code: _S.NOT_FOUND,
    errors.CoordinatorUnavailableError.code: _S.UNAVAILABLE,
    errors.WeakParametersError.code: _S.FAILED_PRECONDITION,
    errors.AuditIntegrityError.code: _S.DATA_LOSS,
    errors.CertificateError.code: _S.UNAUTHENTICATED,
    errors.AccessDeniedError.code: _S.PERMISSION_DENIED,
    errors.RateLimitError.code: _S.RESOURCE_EXHAUSTED,
    errors.SessionReplacedError.code: _S.ALREADY_EXISTS,
}

_CLASS_BY_STATUS: dict[grpc.StatusCode, type[errors.FederationError]] = {
    _S.INVALID_ARGUMENT: errors.QueryError,
    _S.NOT_FOUND: errors.FederationError,
    _S.FAILED_PRECONDITION: errors.FederationError,
    _S.PERMISSION_DENIED: errors.PolicyViolationError,
    _S.OUT_OF_RANGE: errors.ValueOutOfRangeError,
    _S.ABORTED: errors.ProtocolError,
    _S.DEADLINE_EXCEEDED: errors.RoundDeadlineError,
    _S.RESOURCE_EXHAUSTED: errors.MessageTooLargeError,
    _S.UNAVAILABLE: errors.CoordinatorUnavailableError,
}


def status_for(error: errors.FederationError) -> grpc.StatusCode:
    """The gRPC status an error maps to (INTERNAL for unregistered codes)."""
    return STATUS_BY_CODE.get(error.code, _S.INTERNAL)


CALL_LIMIT_DETAILS = "Concurrent RPC limit exceeded"
"""What gRPC answers, with RESOURCE_EXHAUSTED, to a call beyond a server's limit."""

MAX_DETAILS_BYTES = 1024
"""Longest status message sent (UTF-8). It travels as an HTTP/2 header, and a message
echoing a caller's oversized input (a job id, a node name) would otherwise exceed the
peer's header limit: the caller would see RESOURCE_EXHAUSTED instead of the error."""


def bounded(message: str, limit: int = MAX_DETAILS_BYTES) -> str:
    """``message`` cut to at most ``limit`` UTF-8 bytes, marked when cut."""
    raw = message.encode()
    if len(raw) <= limit:
        return message
    return raw[: limit - 16].decode(errors="ignore") + " ... [truncated]"


def abort_with(context: grpc.ServicerContext, error: errors.FederationError) -> NoReturn:
    """Abort the RPC with the status, message (at most MAX_DETAILS_BYTES) and code of
    ``error``."""
    context.set_trailing_metadata(((CODE_METADATA_KEY, error.code),))
    context.abort(status_for(error), bounded(error.message))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


@contextlib.contextmanager
def error_boundary(context: grpc.ServicerContext, method: str) -> Iterator[None]:
    """Map errors raised inside a servicer method to gRPC statuses, and log them."""
    try:
        yield
    except errors.FederationError as exc:
        log.info("%s refused: [%s] %s", method, exc.code, bounded(exc.message))
        abort_with(context, exc)
    except Exception:
        code = getattr(context, "code", lambda: None)()
        if code is not None:  # already aborted by abort_with or by grpc itself
            raise
        log.exception("%s failed with an unexpected error", method)
        context.set_trailing_metadata(((CODE_METADATA_KEY, errors.FederationError.code),))
        context.abort(_S.INTERNAL, f"internal error in {method}; see the coordinator log")


def error_from_rpc(exc: grpc.RpcError, *, target: str = "") -> errors.FederationError:
    """Turn a failed RPC into our typed error (by the code in its trailing metadata)."""
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    trailing_fn = getattr(exc, "trailing_metadata", None)
    status = code_fn() if callable(code_fn) else _S.UNKNOWN
    details = (details_fn() if callable(details_fn) else None) or str(status)
    code = None
    if callable(trailing_fn):
        for key, value in trailing_fn() or ():
            if key == CODE_METADATA_KEY:
                code = value if isinstance(value, str) else value.decode()
    if code is not None:
        return errors.error_class_for_code(code)(details)
    if status == _S.UNAVAILABLE:
        where = f" at {target}" if target else ""
        if is_tls_failure(details):
            return errors.CoordinatorUnavailableError(
                f"the TLS handshake with the coordinator{where} failed: a certificate was "
                "rejected (this party's is not from the federation's CA or has expired, or "
                f"the coordinator's does not match its address) [{details}]"
            )
        return errors.CoordinatorUnavailableError(
            f"cannot reach the coordinator{where}: {details}. "
            "Check the address and that `federation coordinator serve` is running."
        )
    if status == _S.RESOURCE_EXHAUSTED:
        if CALL_LIMIT_DETAILS in details:
            where = f" at {target}" if target else ""
            return errors.CoordinatorUnavailableError(
                f"the coordinator{where} is serving as many calls as it may at once "
                "(each connected node holds one); retry later, or raise its --max-calls"
            )
        return errors.MessageTooLargeError(f"message size limit exceeded: {details}")
    cls = _CLASS_BY_STATUS.get(status, errors.FederationError)
    return cls(f"{status.name}: {details}")
