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
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from federation.errors import ConfigError
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


if TYPE_CHECKING:
    _Interceptor = grpc.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.ServerInterceptor  # generic only in grpc-stubs


class MalformedRequestGuard(_Interceptor):
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
        deserialize = _tolerant(handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                if isinstance(request, _Undecodable):
                    _refuse(context, method, request)
                return inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, deserialize, serialize)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                if isinstance(request, _Undecodable):
                    _refuse(context, method, request)
                return inner_us(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream, deserialize, serialize)
        if handler.stream_stream is not None:
            inner_ss = handler.stream_stream

            def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                return inner_ss(_checked(requests), context)

            return grpc.stream_stream_rpc_method_handler(stream_stream, deserialize, serialize)
        inner_su = handler.stream_unary
        if inner_su is None:
            return handler

        def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            return inner_su(_checked(requests), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, deserialize, serialize)
