"""The wire: gRPC services, serialization and status codes, in one place.

Only this package imports ``grpc`` and the generated ``federation.v1`` modules;
everything else speaks our own dataclasses (:mod:`federation.messages`).
"""
