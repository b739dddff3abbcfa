"""Check a bound query against a dataset's policy: what the node enforces before computing.

The node calls :func:`check_task` on every task after binding the SQL to its own
schema and before touching data, and :func:`check_query_set` on its own local
vector before anything leaves. Each refusal raises
:class:`~federation.errors.PolicyViolationError` (the query is not allowed:
``PERMISSION_DENIED``) or :class:`~federation.errors.DisclosureControlError`
(disclosure control cannot be guaranteed: ``FAILED_PRECONDITION``), whose message
names the rule (:class:`~federation.policy.PolicyRule`) and never a data value.

>>> from federation.query import bind_query, parse_query
>>> from federation.schema import Classification, Column, ColumnType, DatasetSchema
>>> schema = DatasetSchema("t", (
...     Column("x", ColumnType.INTEGER),
...     Column("id", ColumnType.TEXT, classification=Classification.RESTRICTED)))
>>> check_query(bind_query(parse_query("SELECT AVG(x) FROM t"), schema), Policy())
>>> q = "SELECT AVG(x) FROM t WHERE id = 'a'"
>>> try:
...     check_query(bind_query(parse_query(q), schema), Policy())
... except PolicyViolationError as exc:
...     print(exc.code, str(exc)[:42])
policy_violation policy rule restricted_column: column 'id'
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from federation.encoding import DIGIT_BITS
from federation.errors import DisclosureControlError, PolicyViolationError
from federation.policy import Policy, PolicyRule
from federation.query.bind import BoundQuery
from federation.query.expr import columns_of
from federation.query.groups import key_columns
from federation.query.layout import FieldKind
from federation.query.outputs import aggregates_of
from federation.schema import Classification

__all__ = [
    "check_query",
    "check_query_set",
    "check_task",
    "column_uses",
    "local_query_set_size",
    "statistics_used",
]


def _rule(rule: PolicyRule) -> str:
    return f"policy rule {rule.value}"


def column_uses(bound: BoundQuery) -> dict[str, list[str]]:
    """Every dataset column the query reads, with where (``WHERE``, ``GROUP BY``,
    ``an aggregate``), in first-use order."""
    uses: dict[str, list[str]] = {}

    def add(column: str, place: str) -> None:
        places = uses.setdefault(bound.schema.column(column).name, [])
        if place not in places:
            places.append(place)

    if bound.where is not None:
        for c in columns_of(bound.where):
            add(c, "WHERE")
    for key in bound.group_keys:
        for c in key_columns(key.expression):
            add(c, "GROUP BY")
    for agg in bound.aggregations:
        for c in agg.reads if agg.expression is not None else (agg.column.name,):
            add(c, "an aggregate")
        if agg.mask is not None:
            add(agg.mask.name, "an aggregate")
    for product in bound.products:
        add(product.left.name, "an aggregate")
        add(product.right.name, "an aggregate")
    return uses


def statistics_used(bound: BoundQuery) -> list[str]:
    """The aggregate functions the query uses (names as in ``allowed_statistics``)."""
    found: dict[str, None] = {}
    for out in bound.outputs:
        for agg in aggregates_of(out.source):
            found.setdefault(agg.function.value, None)
    if bound.having is not None:
        for agg in aggregates_of(bound.having):
            found.setdefault(agg.function.value, None)
    return list(found)


def check_query(bound: BoundQuery, policy: Policy, *, dp: bool = False) -> None:
    """Refuse a query the policy does not allow (column levels, statistics); a manual
    approval, if the policy wants one, comes after these checks (:mod:`nodes.approvals`).

    Args:
        bound: The query, bound to the node's schema.
        policy: The dataset's policy.
        dp: The query runs with differential privacy (``epsilon > 0``), which makes
            confidential columns usable.

    Raises:
        PolicyViolationError: a restricted column is used anywhere; a confidential
            column is used without differential privacy; a statistic outside
            ``allowed_statistics`` is used.
    """
    name = bound.schema.name
    for column, places in column_uses(bound).items():
        level = bound.schema.column(column).classification
        where = ", ".join(places)
        if level is Classification.RESTRICTED:
            raise PolicyViolationError(
                f"{_rule(PolicyRule.RESTRICTED_COLUMN)}: column {column!r} of dataset "
                f"{name!r} is restricted and may not be used anywhere in a query, not even "
                f"in WHERE (found in {where})"
            )
        if level is Classification.CONFIDENTIAL and not dp:
            raise PolicyViolationError(
                f"{_rule(PolicyRule.CONFIDENTIAL_REQUIRES_DP)}: column {column!r} of "
                f"dataset {name!r} is confidential and may only be used with differential "
                f"privacy: run the query with epsilon > 0 (found in {where})"
            )
    refused = [s for s in statistics_used(bound) if not policy.allows(s)]
    if refused:
        raise PolicyViolationError(
            f"{_rule(PolicyRule.STATISTIC_NOT_ALLOWED)}: dataset {name!r} does not allow "
            f"{', '.join(s.upper() for s in refused)}; it allows "
            f"{', '.join(s.upper() for s in policy.allowed_statistics) or 'no statistic'}"
        )


def check_task(
    bound: BoundQuery,
    policy: Policy,
    *,
    homomorphic: bool,
    announced_min_cell_size: int,
    dp: bool = False,
) -> None:
    """Everything a node checks before touching data: :func:`check_query`, then that
    the released result will honour its minimum cell size.

    Args:
        bound: The task's query, bound to the node's own schema.
        policy: The node's policy for the dataset.
        homomorphic: The task is a paillier or ckks sum (the analyst decrypts every
            cell, so nobody but the analyst could suppress small cells).
        announced_min_cell_size: The threshold the coordinator announced it will
            suppress below.
        dp: The task runs with differential privacy. Then a homomorphic task is
            allowed whatever the minimum cell size: the analyst decrypts only noisy
            cells, which DP protects (the node's noise is added before encryption).

    Raises:
        PolicyViolationError: see :func:`check_query`.
        DisclosureControlError: the task is homomorphic while the policy sets a
            minimum cell size above 1, or the announced threshold is below the
            policy's.
    """
    check_query(bound, policy, dp=dp)
    k = policy.min_cell_size
    if homomorphic and k > 1 and not dp:
        raise DisclosureControlError(
            f"{_rule(PolicyRule.MIN_CELL_SIZE)}: dataset {bound.schema.name!r} suppresses "
            f"groups of fewer than {k} rows, which cannot be enforced when the analyst "
            "decrypts every cell (paillier, ckks); run the query with protocol='secagg', "
            "or with differential privacy (epsilon > 0)"
        )
    if not homomorphic and announced_min_cell_size < k:
        raise DisclosureControlError(
            f"{_rule(PolicyRule.MIN_CELL_SIZE)}: the coordinator announced suppression of "
            f"groups below {announced_min_cell_size} rows, but dataset "
            f"{bound.schema.name!r} requires at least {k} at this node; refusing"
        )


def local_query_set_size(bound: BoundQuery, vector: npt.NDArray[np.uint64]) -> int:
    """The rows matching the query's WHERE in one node's own (unmasked) vector.

    Every grouping set's slots hold every row once, so the first set's are counted."""
    layout = bound.layout
    rows = next(f for f in layout.fields if f.kind is FieldKind.ROWS and f.column is None)
    digits = np.asarray(vector).view(np.int64).reshape(layout.slots, layout.slot_width)
    digits = digits[: layout.set_slots(0)]
    total = 0
    for j in range(rows.digits):
        total += int(digits[:, rows.offset + j].sum(dtype=object)) << (DIGIT_BITS * j)
    return total


def check_query_set(bound: BoundQuery, policy: Policy, rows: int, total: int | None = None) -> None:
    """Refuse when the query's WHERE isolates ``0 < rows < min_query_set_size`` local rows,
    or leaves out ``0 < total - rows < min_query_set_size`` of the node's ``total`` rows
    (the query set size restriction on both sides, Denning 1980: otherwise the whole
    dataset's aggregate minus this one isolates the rows left out).

    A node with no matching row contributes zeros as usual (it isolates nobody).

    Raises:
        DisclosureControlError: too few local rows match, or too few are left out.
    """
    m = policy.min_query_set_size
    if 0 < rows < m:
        raise DisclosureControlError(
            f"{_rule(PolicyRule.MIN_QUERY_SET_SIZE)}: the query selects fewer than {m} "
            f"rows of dataset {bound.schema.name!r} at this node; widen its WHERE"
        )
    if bound.where is not None and total is not None and 0 < total - rows < m:
        raise DisclosureControlError(
            f"{_rule(PolicyRule.MIN_QUERY_SET_SIZE)}: the query's WHERE leaves out fewer "
            f"than {m} rows of dataset {bound.schema.name!r} at this node (the whole "
            "dataset's aggregate minus this one would single them out); narrow or drop "
            "its WHERE"
        )
