"""The analyst SDK: :func:`connect`, :class:`Client`, :class:`QueryResult`."""

from federation.sdk.client import Client, connect
from federation.sdk.result import QueryResult

__all__ = ["Client", "QueryResult", "connect"]
