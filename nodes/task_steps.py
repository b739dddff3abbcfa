"""The steps of a node's task that every protocol shares.

:func:`bind_assignment` re-derives the computation and checks the dataset's policy,
:func:`await_approval` waits for an operator when the policy asks for one,
:func:`prepare_dp` charges a DP budget, :func:`compute_checked` computes the local
vector and :func:`report_failure` tells the coordinator why a task failed. Both
:class:`nodes.task.SecAggTask` and :class:`nodes.he_task.HETask` drive them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

import numpy as np

from federation.dp.mechanism import NoisePlan, add_node_noise, clipped_relation, dp_fields
from federation.dp.report import ANONYMOUS
from federation.errors import DisclosureControlError, FederationError, SchemaMismatchError
from federation.messages import (
    ErrorInfo,
    NodeToCoordinator,
    TaskAssignment,
    TaskFailure,
    TaskState,
    TaskStatus,
)
from federation.policy import ApprovalMode
from federation.policy_check import check_query_set, check_task, local_query_set_size
from federation.query import BoundQuery, bind_sql, compute_local
from nodes.approvals import ApprovalBook
from nodes.budget import NodeBudgets
from nodes.datasets import LocalData

__all__ = [
    "Send",
    "await_approval",
    "bind_assignment",
    "compute_checked",
    "prepare_dp",
    "report_failure",
]

log = logging.getLogger(__name__)

Send = Callable[[NodeToCoordinator], None]


def bind_assignment(assignment: TaskAssignment, data: LocalData, vector_length: int) -> BoundQuery:
    """Bind the task's SQL against this node's own schema, check it is what was planned
    and that the dataset's policy allows it (before any data is touched).

    Raises:
        SchemaMismatchError: the node does not serve the dataset, or the computation
            it derives differs from the one the coordinator claims (fingerprint,
            vector length).
        PolicyViolationError: the dataset's policy refuses the query (the message
            names the rule); DisclosureControlError when the task would not honour
            its disclosure control (:func:`federation.policy_check.check_task`).
    """
    schema = data.schema(assignment.dataset)
    if schema is None:
        raise SchemaMismatchError(f"this node does not serve dataset {assignment.dataset!r}")
    bound = bind_sql(assignment.sql, schema)
    if bound.dataset != assignment.dataset:
        raise SchemaMismatchError("the task's SQL names a different dataset than the task")
    if bound.fingerprint != assignment.fingerprint:
        raise SchemaMismatchError(
            "the computation requested does not match what this node derives from the "
            "query and its own schema (fingerprint mismatch); refusing"
        )
    if bound.vector_length != vector_length:
        raise SchemaMismatchError("the task's vector length does not match the query")
    check_task(
        bound,
        data.policy(assignment.dataset),
        homomorphic=assignment.protocol.homomorphic,
        announced_min_cell_size=assignment.min_cell_size,
        dp=assignment.dp is not None,
    )
    if assignment.dp is not None:
        dp_fields(bound)  # refuse a query DP cannot answer before anything else
    return bound


def await_approval(
    assignment: TaskAssignment,
    bound: BoundQuery,
    data: LocalData,
    approvals: ApprovalBook | None,
    *,
    send: Send,
    cancelled: threading.Event,
) -> None:
    """When the dataset's policy wants a person's approval: open a request in the node's
    approval book, tell the coordinator the task waits, and block until the operator
    decides. Runs after the policy checks and before any budget is charged or row read.

    Raises:
        ApprovalDeniedError, ApprovalExpiredError: the operator denied the task, or
            nobody answered within the policy's ``approval_timeout``.
        DisclosureControlError: the node keeps no state directory for its requests.
    """
    policy = data.policy(assignment.dataset)
    if policy.approval is not ApprovalMode.MANUAL:
        return
    if approvals is None:
        raise DisclosureControlError(
            f"dataset {assignment.dataset!r} needs manual approval but this node has no "
            "state_dir to keep approval requests in; it refuses the task"
        )
    dp = assignment.dp
    request = approvals.request(
        job_id=assignment.job_id,
        dataset=assignment.dataset,
        analyst=dp.analyst if dp is not None else ANONYMOUS,
        protocol=assignment.protocol.value,
        sql=assignment.sql,
        computation=bound.canonical_sql,
        epsilon=dp.epsilon if dp is not None else 0.0,
        timeout=policy.approval_timeout,
    )
    log.warning(
        "job %s: task on dataset %s awaits approval: federation node approve %s",
        assignment.job_id,
        assignment.dataset,
        request.request_id,
    )
    status = TaskStatus(
        assignment.job_id, TaskState.AWAITING_APPROVAL, request.request_id, request.expires_at
    )
    send(status)
    approvals.wait(request.request_id, cancelled=cancelled)
    log.info("job %s: approved (request %s)", assignment.job_id, request.request_id)
    send(dataclasses.replace(status, state=TaskState.APPROVED))


def prepare_dp(
    assignment: TaskAssignment,
    bound: BoundQuery,
    budgets: NodeBudgets | None,
    min_nodes: int,
    max_nodes: int,
) -> NoisePlan | None:
    """For a DP task: charge the analyst's budget (before data is touched) and return
    the noise plan this node derived itself; None for a task without DP.

    Raises:
        DisclosureControlError: the node keeps no state (no ``state_dir``), or the
            budget would be exceeded.
    """
    if assignment.dp is None:
        return None
    if budgets is None:
        raise DisclosureControlError(
            "this node has no state_dir configured, so it cannot keep a DP budget ledger; "
            "it refuses differentially private queries"
        )
    return budgets.prepare(assignment, bound, min_nodes, max_nodes)


def compute_checked(
    bound: BoundQuery, data: LocalData, noise: NoisePlan | None = None
) -> np.ndarray:
    """The node's local vector, once its query set passes the dataset's policy; with a
    noise plan, computed on the clipped columns and noised (:mod:`federation.dp`).

    Raises:
        DisclosureControlError: the query's WHERE selects ``0 < rows <`` the policy's
            minimum query set size at this node (nothing is sent).
    """
    data.refresh(bound.dataset)
    relation = data.relation(bound.dataset)
    if noise is not None:
        relation = clipped_relation(bound, relation)
    cursor = data.cursor()
    try:
        # Under DP the relation is clipped and the vector must be exact: no centers.
        centers = data.centers(bound.dataset) if noise is None else None
        vector = compute_local(
            bound, cursor, relation, typed=True, centers=centers, threads=data.threads
        )
    finally:
        cursor.close()
    policy = data.policy(bound.dataset)
    total = data.row_count(bound.dataset) if bound.where is not None else None
    check_query_set(bound, policy, local_query_set_size(bound, vector), total)
    if noise is not None:
        vector = add_node_noise(bound, vector, noise)
    return vector


def report_failure(job_id: str, send: Send, error: Exception) -> ErrorInfo:
    """Tell the coordinator why this node's part of a job failed (never a data value);
    returns what was told.

    A :class:`FederationError` travels with its code and message (a refusal names its
    rule); anything else is logged here with its traceback and reported as an internal
    error.
    """
    if isinstance(error, FederationError):
        log.warning("job %s: refusing the task: [%s] %s", job_id, error.code, error.message)
        info = ErrorInfo(error.code, error.message)
    else:
        log.error("job %s: unexpected failure", job_id, exc_info=error)
        info = ErrorInfo(FederationError.code, "internal error at the node; see its log")
    send(TaskFailure(job_id, info))
    return info
