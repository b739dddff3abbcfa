"""federation: privacy-preserving federated computation.

Data holders keep their rows on their own machines; a coordinator keeps one
directory of what exists and orchestrates aggregate queries; results travel
only as secure aggregates.

>>> import federation as fed                                     # doctest: +SKIP
>>> with fed.connect("localhost:50051") as client:               # doctest: +SKIP
...     client.query("SELECT sex, AVG(age) FROM patients GROUP BY sex").to_pandas()
"""

from federation._version import __version__
from federation.errors import (
    ApprovalDeniedError,
    ApprovalExpiredError,
    ConfigError,
    CoordinatorUnavailableError,
    DataError,
    DisclosureControlError,
    FederationError,
    MessageTooLargeError,
    NodeTaskError,
    NonAggregateQueryError,
    PolicyViolationError,
    ProtocolError,
    QueryError,
    QuerySyntaxError,
    QueryTypeError,
    RoundDeadlineError,
    SchemaMismatchError,
    TooFewParticipantsError,
    UnknownColumnError,
    UnknownDatasetError,
    UnknownJobError,
    UnsupportedQueryError,
    ValueOutOfRangeError,
)
from federation.messages import DatasetInfo, JobRecord, JobStatus, NodeInfo
from federation.policy import Policy
from federation.schema import Classification, Column, ColumnType, DatasetSchema
from federation.sdk.client import Client, connect
from federation.sdk.result import QueryResult
from federation.simulation import simulate
from federation.table import ColumnKind, ResultTable

__all__ = [
    "ApprovalDeniedError",
    "ApprovalExpiredError",
    "Classification",
    "Client",
    "Column",
    "ColumnKind",
    "ColumnType",
    "ConfigError",
    "CoordinatorUnavailableError",
    "DataError",
    "DatasetInfo",
    "DatasetSchema",
    "DisclosureControlError",
    "FederationError",
    "JobRecord",
    "JobStatus",
    "MessageTooLargeError",
    "NodeInfo",
    "NodeTaskError",
    "NonAggregateQueryError",
    "Policy",
    "PolicyViolationError",
    "ProtocolError",
    "QueryError",
    "QueryResult",
    "QuerySyntaxError",
    "QueryTypeError",
    "ResultTable",
    "RoundDeadlineError",
    "SchemaMismatchError",
    "TooFewParticipantsError",
    "UnknownColumnError",
    "UnknownDatasetError",
    "UnknownJobError",
    "UnsupportedQueryError",
    "ValueOutOfRangeError",
    "__version__",
    "connect",
    "simulate",
]
