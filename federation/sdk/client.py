"""The analyst SDK: connect to a coordinator, browse the directory, run queries.

>>> import federation as fed                                     # doctest: +SKIP
>>> with fed.connect("localhost:50051") as client:               # doctest: +SKIP
...     print(client.query("SELECT sex, AVG(age) FROM patients GROUP BY sex"))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from federation.errors import FederationError
from federation.messages import (
    DatasetInfo,
    EncryptedJobResult,
    JobAccepted,
    JobCompleted,
    JobProgress,
    JobRecord,
    JobResult,
    NodeInfo,
    Protocol,
    QueryRequest,
)
from federation.sdk.homomorphic import KeyRing, open_result
from federation.sdk.result import QueryResult
from federation.transport.analyst_client import AnalystConnection

__all__ = ["Client", "connect"]

ProgressCallback = Callable[[JobProgress], None]


class Client:
    """A connection to a coordinator, for analysts."""

    def __init__(self, address: str, *, connect_timeout: float = 10.0) -> None:
        self.address = address
        self._conn = AnalystConnection(address, connect_timeout=connect_timeout)
        self.keys = KeyRing()
        """This client's homomorphic key pairs (secret keys stay in this process)."""

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def datasets(self) -> list[DatasetInfo]:
        """The directory: every dataset's name, schema and how many nodes serve it."""
        return self._conn.list_datasets()

    def nodes(self) -> list[NodeInfo]:
        """The nodes the coordinator knows and whether they are online."""
        return self._conn.list_nodes()

    def query(
        self,
        sql: str,
        protocol: str = "secagg",
        *,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> QueryResult:
        """Run an aggregate query over a federated dataset.

        Args:
            sql: ``SELECT [group columns,] aggregates FROM dataset [WHERE ...] [GROUP BY ...]``.
            protocol: How node results are combined: ``"secagg"`` (secure aggregation,
                the default), ``"paillier"`` or ``"ckks"`` (homomorphic encryption under
                a key pair this client generates on first use and keeps in ``keys``).
            timeout: Seconds to wait for the result (None: no limit).
            progress: Called with each protocol stage as it completes.

        Raises:
            FederationError: a subclass naming the problem (bad SQL, unknown column,
                too few nodes, ...). Its ``job_id`` is set when a job was started.
        """
        try:
            proto = Protocol(protocol)
        except ValueError:
            raise FederationError(
                f"unknown protocol {protocol!r}; available: {[p.value for p in Protocol]}"
            ) from None
        started = time.monotonic()
        public_key = self.keys.key(proto).public_bytes() if proto.homomorphic else b""
        accepted: JobAccepted | None = None
        result: JobResult | None = None
        request = QueryRequest(sql, proto, public_key)
        for event in self._conn.submit_query(request, timeout):
            if isinstance(event, JobAccepted):
                accepted = event
            elif isinstance(event, JobProgress):
                if progress is not None:
                    progress(event)
            elif isinstance(event, JobResult):
                result = event
            elif isinstance(event, EncryptedJobResult):
                try:
                    table = open_result(sql, event, self.keys.key(proto))
                except FederationError as exc:
                    exc.job_id = event.job_id
                    raise
                result = JobResult(event.job_id, table)
            elif isinstance(event, JobCompleted):
                if result is None or accepted is None:
                    raise FederationError("the coordinator completed the job without a result")
                return QueryResult(
                    job_id=event.job_id,
                    sql=sql,
                    protocol=event.protocol.value,
                    node_count=event.contributing_nodes,
                    selected_nodes=event.selected_nodes,
                    table=result.table,
                    elapsed=time.monotonic() - started,
                )
        raise FederationError("the coordinator ended the job stream without completing it")

    def job(self, job_id: str) -> JobRecord:
        """What the coordinator recorded about a job (status, error, released result)."""
        return self._conn.get_job(job_id)


def connect(address: str, *, timeout: float = 10.0) -> Client:
    """Connect to the coordinator at ``host:port``; use as a context manager."""
    return Client(address, connect_timeout=timeout)
