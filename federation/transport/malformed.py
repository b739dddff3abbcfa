"""Requests whose bytes do not decode get INVALID_ARGUMENT, not gRPC's INTERNAL.

gRPC deserializes a request before any handler runs and answers a failure with
``INTERNAL: Exception deserializing request!``, which tells the caller the server is
broken. :class:`MalformedRequestGuard` wraps every method's deserializer: bytes that
are not a valid message of the request type become a marker, and the handler aborts
on meeting one with a :class:`~federation.errors.ConfigError` (``INVALID_ARGUMENT``)
that names the expected message. On a streaming request the marker ends the stream
with that error wherever it arrives; the messages before it were handled as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from federation.errors import ConfigError
from federation.transport.interception import Interceptor, rewrap
from federation.transport.status import abort_with

__all__ = ["MalformedRequestGuard"]

log = logging.getLogger(__name__)


class _Undecodable:
    """Stands in for a request whose bytes did not decode."""

    __slots__ = ("error",)

    def __init__(self, error: ConfigError) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    message_type = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    expected = message_type.full_name if message_type is not None else "request message"

    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError:
            return _Undecodable(
                ConfigError(
                    f"the request is not a valid {expected}: its {len(data)} bytes do not "
                    "decode; send messages serialized from the federation.v1 protos"
                )
            )

    return tolerant


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, _Undecodable):
            raise request.error
        yield request


def _refuse(context: grpc.ServicerContext, method: str, request: _Undecodable) -> NoReturn:
    log.info("%s refused: [%s] %s", method, request.error.code, request.error.message)
    abort_with(context, request.error)


class MalformedRequestGuard(Interceptor):
    """Turns undecodable request bytes into ``INVALID_ARGUMENT`` (module docstring)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The method's handler, with a deserializer that never fails."""
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method

        def unary(request: Any, context: grpc.ServicerContext) -> None:
            if isinstance(request, _Undecodable):
                _refuse(context, method, request)

        return rewrap(
            handler,
            unary=unary,
            stream=lambda requests, _: _checked(requests),
            deserializer=_tolerant(handler.request_deserializer),
        )
