"""Protocol names, dataset schemas, policies and errors: the types both streams share.

Protocol names, schemas and policies are validated as they are read
(:class:`~federation.errors.ConfigError` on nonsense): the wire is a trust boundary.
"""

from __future__ import annotations

from federation.errors import ConfigError, FederationError
from federation.messages import ErrorInfo, Protocol
from federation.policy import DEFAULT_POLICY, ApprovalMode, Policy
from federation.schema import Classification, Column, ColumnType, DatasetSchema
from federation.v1 import common_pb2

__all__ = [
    "error_from_proto",
    "error_to_proto",
    "policy_from_proto",
    "policy_to_proto",
    "protocol_from_wire",
    "schema_from_proto",
    "schema_to_proto",
]


def protocol_from_wire(name: str) -> Protocol:
    """Parse a protocol name; empty means the default (secagg).

    Raises:
        ConfigError: Not a protocol this release knows.
    """
    if not name:
        return Protocol.SECAGG
    try:
        return Protocol(name.lower())
    except ValueError:
        raise ConfigError(
            f"unknown protocol {name!r}; available: {[p.value for p in Protocol]}"
        ) from None


# --- schema ----------------------------------------------------------------


def schema_to_proto(schema: DatasetSchema) -> common_pb2.DatasetSchema:
    """DatasetSchema -> wire."""
    return common_pb2.DatasetSchema(
        name=schema.name,
        description=schema.description,
        columns=[
            common_pb2.Column(
                name=c.name,
                type=c.type.value,
                domain=list(c.domain),
                has_bounds=c.bounds is not None,
                lower=c.bounds[0] if c.bounds else 0.0,
                upper=c.bounds[1] if c.bounds else 0.0,
                classification=c.classification.value,
                description=c.description,
            )
            for c in schema.columns
        ],
    )


def schema_from_proto(msg: common_pb2.DatasetSchema) -> DatasetSchema:
    """Wire -> DatasetSchema (validated; ConfigError on nonsense)."""
    columns = []
    for c in msg.columns:
        try:
            ctype = ColumnType(c.type)
            classification = Classification(c.classification or "internal")
        except ValueError:
            raise ConfigError(
                f"dataset {msg.name!r}: column {c.name!r} has an unknown type or classification"
            ) from None
        columns.append(
            Column(
                name=c.name,
                type=ctype,
                domain=tuple(c.domain),
                bounds=(c.lower, c.upper) if c.has_bounds else None,
                classification=classification,
                description=c.description,
            )
        )
    return DatasetSchema(name=msg.name, columns=tuple(columns), description=msg.description)


# --- policy ----------------------------------------------------------------


def policy_to_proto(policy: Policy) -> common_pb2.DatasetPolicy:
    """Policy -> wire."""
    return common_pb2.DatasetPolicy(
        min_cell_size=policy.min_cell_size,
        min_query_set_size=policy.min_query_set_size,
        allowed_statistics=list(policy.allowed_statistics),
        approval=policy.approval.value,
        approval_timeout=policy.approval_timeout,
        dp_epsilon=policy.dp_epsilon,
        dp_delta=policy.dp_delta,
    )


def policy_from_proto(msg: common_pb2.DatasetPolicy) -> Policy:
    """Wire -> Policy (validated; ConfigError on nonsense)."""
    try:
        approval = ApprovalMode(msg.approval or ApprovalMode.AUTOMATIC.value)
    except ValueError:
        raise ConfigError(f"dataset policy: unknown approval mode {msg.approval!r}") from None
    # Not Policy.from_dict: a combined directory policy may allow no statistic at all
    # (nodes allowing disjoint sets), which only a config file may not declare.
    return Policy(
        min_cell_size=max(int(msg.min_cell_size), 1),
        min_query_set_size=max(int(msg.min_query_set_size), 1),
        allowed_statistics=tuple(msg.allowed_statistics),
        approval=approval,
        approval_timeout=msg.approval_timeout or DEFAULT_POLICY.approval_timeout,
        dp_epsilon=msg.dp_epsilon,
        dp_delta=msg.dp_delta,
    )


# --- errors ----------------------------------------------------------------


def error_to_proto(error: ErrorInfo) -> common_pb2.Error:
    """ErrorInfo -> wire."""
    return common_pb2.Error(code=error.code, message=error.message)


def error_from_proto(msg: common_pb2.Error) -> ErrorInfo:
    """Wire -> ErrorInfo."""
    return ErrorInfo(code=msg.code or FederationError.code, message=msg.message)
