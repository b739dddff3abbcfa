"""gRPC channel and server options shared by every party."""

from __future__ import annotations

__all__ = ["MAX_MESSAGE_BYTES", "MAX_SQL_BYTES", "channel_options", "server_options"]

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest single gRPC message either side accepts; larger vectors travel in chunks."""

MAX_SQL_BYTES = 64 * 1024
"""Largest query text the coordinator accepts."""

_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


def channel_options() -> list[tuple[str, int]]:
    """Options for channels opened by nodes and analysts."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        *_KEEPALIVE,
    ]


def server_options() -> list[tuple[str, int]]:
    """Options for the coordinator's server."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.so_reuseport", 0),
        *_KEEPALIVE,
    ]
