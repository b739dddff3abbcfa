"""The analyst SDK: connect to a coordinator, browse the directory, run queries.

>>> import federation as fed                                     # doctest: +SKIP
>>> with fed.connect("localhost:50051") as client:               # doctest: +SKIP
...     print(client.query("SELECT sex, AVG(age) FROM patients GROUP BY sex"))
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from federation.dp.report import ANONYMOUS, DEFAULT_DELTA, BudgetSpend, BudgetStatus, DPParams
from federation.errors import ConfigError, FederationError, UnknownDatasetError
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
from federation.pki import Credentials
from federation.query.quantiles import split_quantiles
from federation.schema import DatasetSchema
from federation.sdk.describe import (
    DEFAULT_QUANTILES,
    QUANTILE_TOLERANCE,
    Description,
    describe,
)
from federation.sdk.homomorphic import KeyRing, open_result
from federation.sdk.logistic import LogisticRegressionResult, logistic_regression
from federation.sdk.models import LinearRegressionResult, linear_regression
from federation.sdk.moments import Runner
from federation.sdk.quantiles import DEFAULT_TOLERANCE, run_quantile_query
from federation.sdk.result import QueryResult
from federation.table import ResultTable
from federation.transport.analyst_client import AnalystConnection
from federation.transport.security import TransportSecurity

__all__ = ["CREDENTIALS_ENV", "Client", "connect"]

ProgressCallback = Callable[[JobProgress], None]


class Client:
    """A connection to a coordinator, for analysts."""

    def __init__(
        self,
        address: str,
        *,
        security: TransportSecurity | None = None,
        connect_timeout: float = 10.0,
        analyst: str = ANONYMOUS,
    ) -> None:
        """Connect; ``security=None`` means plaintext (with a warning): prefer
        :func:`connect`, which insists on credentials or an explicit ``insecure=True``."""
        if security is None:
            security = TransportSecurity.insecure("this analyst client")
        self.address = address
        credentials = security.credentials
        self.analyst = credentials.identity.name if credentials is not None else analyst
        """Whose DP budget this client's queries spend: the certificate's identity under
        mutual TLS (the coordinator enforces it); self-declared on plaintext."""
        self._conn = AnalystConnection(address, security=security, connect_timeout=connect_timeout)
        self.keys = KeyRing()
        """This client's homomorphic key pairs (secret keys stay in this process)."""

    @property
    def security(self) -> TransportSecurity:
        """How this client's channel is secured (to open other channels the same way)."""
        return self._conn.security

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

    def forget_node(self, name: str) -> None:
        """Remove an offline node from the directory, e.g. a decommissioned one (admin
        credentials only; the coordinator's audit log records who did). Its jobs stay on
        record; if it registers again it is a new entry.

        Raises:
            UnknownNodeError: No node of that name is known.
            ConfigError: The node is online.
            AccessDeniedError: These credentials are not an admin's.
        """
        self._conn.forget_node(name)

    def query(
        self,
        sql: str,
        protocol: str = "secagg",
        *,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        quantile_tolerance: float = DEFAULT_TOLERANCE,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        """Run an aggregate query over a federated dataset.

        Args:
            sql: ``SELECT [group columns,] aggregates FROM dataset [WHERE ...] [GROUP BY ...]``.
            protocol: How node results are combined: ``"secagg"`` (secure aggregation,
                the default), ``"paillier"`` or ``"ckks"`` (homomorphic encryption under
                a key pair this client generates on first use and keeps in ``keys``).
            timeout: Seconds to wait for the result (None: no limit).
            progress: Called with each protocol stage as it completes.
            quantile_tolerance: For ``MEDIAN``/``QUANTILE_CONT``/``QUANTILE_DISC``
                over double columns: the relative width at which the histogram
                refinement stops (0: exact to the double); the result's
                ``error_bounds`` states the error reached. Integer columns are exact.
            epsilon: Run with differential privacy at this epsilon (> 0): every node
                adds discrete Gaussian noise before aggregation and charges
                ``client.analyst``'s budget; ``result.privacy`` states the noise. DP
                queries may use COUNT, SUM, AVG and the variances over bounded columns.
            delta: The DP delta (with ``epsilon``).

        Raises:
            FederationError: a subclass naming the problem (bad SQL, unknown column,
                too few nodes, ...). Its ``job_id`` is set when a job was started.
        """
        dp = None if epsilon is None else DPParams(epsilon, delta, self.analyst)
        plan = split_quantiles(sql)
        if plan is not None and dp is not None:
            raise ConfigError(
                "quantiles are not available with differential privacy yet (they take "
                "several adaptive jobs); use COUNT, SUM, AVG or the variances"
            )
        if plan is not None:
            return run_quantile_query(
                self,
                plan,
                sql,
                lambda part: self.query(part, protocol, timeout=timeout, progress=progress),
                tolerance=quantile_tolerance,
            )
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
        request = QueryRequest(sql, proto, public_key, dp=dp)
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
                    table = open_result(sql, event, self.keys.key(proto), dp=dp is not None)
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
                    privacy=event.privacy,
                )
        raise FederationError("the coordinator ended the job stream without completing it")

    def budget(self, dataset: str, analyst: str | None = None) -> BudgetStatus:
        """What is left of ``analyst``'s (default: ``client.analyst``) DP budget on
        ``dataset``: the least over the dataset's nodes, as the directory mirrors their
        ledgers, in epsilon at the dataset policy's delta (``.remaining``), with the
        composition rule (``.composition``, zCDP) and what was spent (``.spent``)."""
        who = self.analyst if analyst is None else analyst
        for info in self.datasets():
            if info.schema.name.lower() == dataset.lower():
                name = info.schema.name
                spend = next(
                    (b for b in info.budgets if b.analyst == who),
                    BudgetSpend(name, who, 0.0, info.policy.dp_rho),
                )
                return BudgetStatus.from_spend(spend, info.policy.dp_delta)
        raise UnknownDatasetError(
            f"the directory has no dataset {dataset!r}; see client.datasets() for what exists"
        )

    def _schema(self, dataset: str) -> DatasetSchema:
        for info in self.datasets():
            if info.schema.name.lower() == dataset.lower():
                return info.schema
        raise UnknownDatasetError(
            f"the directory has no dataset {dataset!r}; see client.datasets() for what exists"
        )

    def _runner(
        self, protocol: str, timeout: float | None, progress: ProgressCallback | None
    ) -> Runner:
        def run(sql: str) -> ResultTable:
            return self.query(sql, protocol, timeout=timeout, progress=progress).table

        return run

    def linear_regression(
        self,
        dataset: str,
        y: str,
        x: Sequence[str],
        where: str | None = None,
        intercept: bool = True,
        *,
        protocol: str = "secagg",
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> LinearRegressionResult:
        """Ordinary least squares ``y ~ x`` over the federated dataset, in one job.

        The nodes compute the exact moments ``X'X``, ``X'y``, ``y'y``, ``n``; the SDK
        solves the normal equations exactly and rounds once
        (:mod:`federation.sdk.models`). Categorical predictors are one-hot encoded from
        their declared domains (the first level with rows is the reference).

        >>> fit = client.linear_regression("patients", y="sbp", x=["age", "sex"])  # doctest: +SKIP
        >>> fit.coefficients["age"]                                          # doctest: +SKIP
        """
        run = self._runner(protocol, timeout, progress)
        return linear_regression(
            run, self._schema(dataset), y=y, x=x, where=where, intercept=intercept
        )

    def logistic_regression(
        self,
        dataset: str,
        y: str,
        x: Sequence[str],
        where: str | None = None,
        intercept: bool = True,
        *,
        max_iterations: int = 25,
        protocol: str = "secagg",
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> LogisticRegressionResult:
        """Logistic regression of a 0/1 column by Newton/IRLS: one job per round, each
        securely aggregating the gradient and Hessian (:mod:`federation.sdk.logistic`)."""
        run = self._runner(protocol, timeout, progress)
        return logistic_regression(
            run,
            self._schema(dataset),
            y=y,
            x=x,
            where=where,
            intercept=intercept,
            max_iterations=max_iterations,
        )

    def describe(
        self,
        dataset: str,
        columns: Sequence[str] | None = None,
        where: str | None = None,
        *,
        protocol: str = "secagg",
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        quantile_tolerance: float = QUANTILE_TOLERANCE,
    ) -> Description:
        """Count, mean and standard deviation per numeric column and counts per level
        of each categorical column in one job, then ``quantiles`` per numeric column
        by histogram refinement (a few more jobs each; ``quantiles=()`` skips them;
        :mod:`federation.sdk.describe`)."""
        run = self._runner(protocol, timeout, progress)
        return describe(
            run,
            self._schema(dataset),
            columns=columns,
            where=where,
            quantiles=quantiles,
            quantile_tolerance=quantile_tolerance,
        )

    def job(self, job_id: str) -> JobRecord:
        """What the coordinator recorded about a job (status, error, released result)."""
        return self._conn.get_job(job_id)


CREDENTIALS_ENV = "FEDERATION_CREDENTIALS"
"""Where :func:`connect` looks for credentials when none are passed."""


def connect(
    address: str,
    *,
    credentials: Credentials | str | Path | None = None,
    insecure: bool = False,
    timeout: float = 10.0,
    analyst: str = ANONYMOUS,
) -> Client:
    """Connect to the coordinator at ``host:port`` over mutual TLS; use as a context
    manager.

    Args:
        address: The coordinator.
        credentials: This analyst's credentials (``federation pki issue analyst NAME``
            writes them): a :class:`~federation.pki.Credentials`, or the directory or key
            file holding them; default ``$FEDERATION_CREDENTIALS``. The certificate's
            name is the analyst whose DP budget pays.
        insecure: Plaintext instead, for a local simulation only (no identities:
            ``analyst`` is then taken on trust).
        timeout: Seconds to wait for the coordinator.
        analyst: On plaintext only, whose DP budget the queries spend.

    Raises:
        ConfigError: Neither credentials nor ``insecure=True``.
        CoordinatorUnavailableError: The coordinator cannot be reached, or the TLS
            handshake failed (the message says a certificate was rejected).
    """
    if insecure:
        security = TransportSecurity.insecure("this analyst client")
    else:
        source = credentials if credentials is not None else os.environ.get(CREDENTIALS_ENV)
        if not source:
            raise ConfigError(
                "connect() needs this analyst's credentials (credentials=DIR, issued by "
                f"`federation pki issue analyst NAME`, or ${CREDENTIALS_ENV}), or "
                "insecure=True for a local plaintext simulation"
            )
        security = TransportSecurity.mutual_tls(source)
    return Client(address, security=security, connect_timeout=timeout, analyst=analyst)
