"""Re-wrapping a gRPC method handler so a check runs before its behaviour (both our
server interceptors use it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

__all__ = ["Interceptor", "rewrap"]

if TYPE_CHECKING:
    Interceptor = grpc.ServerInterceptor[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:  # generic only in grpc-stubs
    Interceptor = grpc.ServerInterceptor
    Handler = grpc.RpcMethodHandler

UnaryCheck = Callable[[Any, grpc.ServicerContext], None]
"""Called with a unary request before the method runs (aborts the call to refuse it)."""
StreamCheck = Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]]
"""Called with a request stream before the method runs; returns the stream it gets."""


def rewrap(
    handler: Handler,
    *,
    unary: UnaryCheck,
    stream: StreamCheck,
    deserializer: Callable[[bytes], Any] | None = None,
) -> Handler:
    """``handler`` with ``unary`` (or ``stream``) run first, and optionally another
    request deserializer."""
    deserialize = deserializer or handler.request_deserializer
    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        uu = handler.unary_unary

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            unary(request, context)
            return uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, deserialize, serialize)
    if handler.unary_stream is not None:
        us = handler.unary_stream

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            unary(request, context)
            return us(request, context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, deserialize, serialize)
    if handler.stream_stream is not None:
        ss = handler.stream_stream

        def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            return ss(stream(requests, context), context)

        return grpc.stream_stream_rpc_method_handler(stream_stream, deserialize, serialize)
    su = handler.stream_unary
    if su is None:
        return handler

    def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return su(stream(requests, context), context)

    return grpc.stream_unary_rpc_method_handler(stream_unary, deserialize, serialize)
