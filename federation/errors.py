"""The exceptions federation raises, one hierarchy with stable codes.

Every error a user can see derives from :class:`FederationError`. Each class has a
stable ``code`` (a short snake_case string that travels on the wire and never
changes meaning) and a gRPC status that the transport edge maps it to::

    FederationError                       internal
    ├── ConfigError                       invalid_config        INVALID_ARGUMENT
    ├── QueryError                        invalid_query         INVALID_ARGUMENT
    │   ├── QuerySyntaxError              sql_syntax            INVALID_ARGUMENT
    │   ├── NonAggregateQueryError        non_aggregate_query   INVALID_ARGUMENT
    │   ├── UnsupportedQueryError         unsupported_query     INVALID_ARGUMENT
    │   ├── UnknownColumnError            unknown_column        NOT_FOUND
    │   └── QueryTypeError                type_mismatch         INVALID_ARGUMENT
    ├── UnknownDatasetError               unknown_dataset       NOT_FOUND
    ├── SchemaMismatchError               schema_mismatch       FAILED_PRECONDITION
    ├── DataError                         invalid_data          FAILED_PRECONDITION
    │   └── ValueOutOfRangeError          value_out_of_range    OUT_OF_RANGE
    ├── ProtocolError                     protocol_error        ABORTED
    │   ├── TooFewParticipantsError       too_few_participants  UNAVAILABLE
    │   └── RoundDeadlineError            round_deadline        DEADLINE_EXCEEDED
    ├── NodeTaskError                     node_task_failed      FAILED_PRECONDITION
    ├── PolicyViolationError              policy_violation      PERMISSION_DENIED
    │   ├── DisclosureControlError        disclosure_control    FAILED_PRECONDITION
    │   ├── ApprovalDeniedError           approval_denied       PERMISSION_DENIED
    │   └── ApprovalExpiredError          approval_expired      DEADLINE_EXCEEDED
    ├── MessageTooLargeError              message_too_large     RESOURCE_EXHAUSTED
    ├── UnknownJobError                   unknown_job           NOT_FOUND
    ├── UnknownNodeError                  unknown_node          NOT_FOUND
    ├── CoordinatorUnavailableError       unavailable           UNAVAILABLE
    ├── WeakParametersError               weak_parameters       FAILED_PRECONDITION
    ├── AuditIntegrityError               audit_integrity       DATA_LOSS
    ├── CertificateError                  invalid_certificate   UNAUTHENTICATED
    ├── AccessDeniedError                 access_denied         PERMISSION_DENIED
    ├── RateLimitError                    rate_limited          RESOURCE_EXHAUSTED
    └── SessionReplacedError              session_replaced      ALREADY_EXISTS

Messages say what was expected, what was found and how to fix it. They never
contain row values, ciphertexts, shares or keys: they may be logged and sent to
any party.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "ApprovalDeniedError",
    "ApprovalExpiredError",
    "AuditIntegrityError",
    "CertificateError",
    "ConfigError",
    "CoordinatorUnavailableError",
    "DataError",
    "DisclosureControlError",
    "FederationError",
    "MessageTooLargeError",
    "NodeTaskError",
    "NonAggregateQueryError",
    "PolicyViolationError",
    "ProtocolError",
    "QueryError",
    "QuerySyntaxError",
    "QueryTypeError",
    "RateLimitError",
    "RoundDeadlineError",
    "SchemaMismatchError",
    "SessionReplacedError",
    "TooFewParticipantsError",
    "UnknownColumnError",
    "UnknownDatasetError",
    "UnknownJobError",
    "UnknownNodeError",
    "UnsupportedQueryError",
    "ValueOutOfRangeError",
    "WeakParametersError",
    "error_class_for_code",
]


class FederationError(Exception):
    """Root of every error federation raises on purpose."""

    code: str = "internal"

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id
        """The job this error ended, when there was one."""

    def __str__(self) -> str:
        return self.message


class ConfigError(FederationError):
    """A configuration file or argument is invalid (raised at load time)."""

    code = "invalid_config"


class QueryError(FederationError):
    """A query cannot be accepted as written."""

    code = "invalid_query"


class QuerySyntaxError(QueryError):
    """The SQL text does not parse."""

    code = "sql_syntax"


class NonAggregateQueryError(QueryError):
    """The query would return individual rows (``SELECT *``, a bare column, ...)."""

    code = "non_aggregate_query"


class UnsupportedQueryError(QueryError):
    """The query parses but uses SQL outside the supported subset."""

    code = "unsupported_query"


class UnknownColumnError(QueryError):
    """The query names a column that the dataset does not have."""

    code = "unknown_column"


class QueryTypeError(QueryError):
    """An expression is applied to a column of the wrong type."""

    code = "type_mismatch"


class UnknownDatasetError(FederationError):
    """No node in the directory serves a dataset of that name."""

    code = "unknown_dataset"


class SchemaMismatchError(FederationError):
    """Nodes disagree on a dataset's schema, or a task does not match the node's schema."""

    code = "schema_mismatch"


class DataError(FederationError):
    """A node's data does not conform to its declared schema."""

    code = "invalid_data"


class ValueOutOfRangeError(DataError):
    """A value lies outside the encodable range of its column."""

    code = "value_out_of_range"


class ProtocolError(FederationError):
    """A cryptographic protocol run was aborted; nothing was released."""

    code = "protocol_error"


class TooFewParticipantsError(ProtocolError):
    """Fewer nodes than the protocol's threshold remained; nothing was released."""

    code = "too_few_participants"


class RoundDeadlineError(ProtocolError):
    """A protocol round passed its deadline without the messages it needs."""

    code = "round_deadline"


class NodeTaskError(FederationError):
    """A node refused or failed its task; the message names the node and the reason."""

    code = "node_task_failed"


class PolicyViolationError(FederationError):
    """A dataset's policy forbids the query; the message names the rule (``federation.policy``)."""

    code = "policy_violation"


class DisclosureControlError(PolicyViolationError):
    """Disclosure control cannot be guaranteed for this task (too small a query set at a
    node, a cell-size threshold the task does not honour, a protocol under which
    suppression cannot be enforced); the message names the rule."""

    code = "disclosure_control"


class ApprovalDeniedError(PolicyViolationError):
    """A data holder's operator denied a task of the job; the message carries the reason."""

    code = "approval_denied"


class ApprovalExpiredError(PolicyViolationError):
    """A task waiting for a data holder's manual approval got no answer in time."""

    code = "approval_expired"


class MessageTooLargeError(FederationError):
    """A message exceeds the configured size limit."""

    code = "message_too_large"


class UnknownJobError(FederationError):
    """No job with that id is recorded."""

    code = "unknown_job"


class UnknownNodeError(FederationError):
    """No node of that name is in the directory."""

    code = "unknown_node"


class CoordinatorUnavailableError(FederationError):
    """The coordinator cannot be reached (or closed the connection)."""

    code = "unavailable"


class WeakParametersError(FederationError):
    """Test-only weak cryptographic parameters were requested without opting in."""

    code = "weak_parameters"


class AuditIntegrityError(FederationError):
    """An audit log or its proofs do not check out: a rewrite, fork, rollback or omission."""

    code = "audit_integrity"


def _all_subclasses(cls: type[FederationError]) -> list[type[FederationError]]:
    out: list[type[FederationError]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_class_for_code(code: str) -> type[FederationError]:
    """Return the exception class registered under ``code`` (the root class if unknown)."""
    for cls in _all_subclasses(FederationError):
        if cls.code == code:
            return cls
    return FederationError


class CertificateError(FederationError):
    """A certificate, CRL or signature does not check out against the federation's CA.

    Raised by :mod:`federation.pki` for a certificate from another CA, outside its
    validity period, without a well-formed federation identity, or a CRL whose
    signature does not verify. (At the gRPC edge this belongs with
    ``UNAUTHENTICATED``.)
    """

    code = "invalid_certificate"


class AccessDeniedError(FederationError):
    """The caller's role may not make this call (a node querying, an analyst serving)."""

    code = "access_denied"


class RateLimitError(FederationError):
    """The caller made more calls than its rate limit allows; retry later."""

    code = "rate_limited"


class SessionReplacedError(FederationError):
    """Another agent registered under this node's name: the coordinator closed this,
    the older, stream (two agents must not serve as one node)."""

    code = "session_replaced"
