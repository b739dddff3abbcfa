"""Dataset policies: what a data holder allows its data to be used for.

Every dataset a node serves carries a :class:`Policy` in the node's config. The
node enforces it on every task before it touches data
(:mod:`federation.policy_check`), and the coordinator publishes it in the directory
so that analysts know the rules before they ask.

Each column has a classification level (:class:`~federation.schema.Classification`,
declared on the column); the levels are fixed and mean:

=============  ================================================================
level          what it allows
=============  ================================================================
public         every use: aggregates, WHERE, GROUP BY; also MIN/MAX once the
               query language supports them (it refuses them today)
internal       every use in aggregate queries (aggregates, WHERE, GROUP BY);
               values are only ever released as aggregates, never MIN/MAX
confidential   only in queries with differential privacy (``epsilon > 0``); any
               other query that reads the column is refused (rule
               ``confidential_requires_dp``)
restricted     never used, not even in WHERE (rule ``restricted_column``)
=============  ================================================================

The policy itself (TOML ``[dataset.policy]``)::

    [dataset.policy]
    min_cell_size = 5          # groups with 0 < rows < 5 are suppressed (secagg)
    min_query_set_size = 10    # the node refuses when 0 < its WHERE rows < 10
    allowed_statistics = ["count", "sum", "avg", "var_samp", "stddev_samp"]
    approval = "automatic"     # automatic | manual
    approval_timeout = 86400   # seconds an unanswered approval request stays open
    dp_epsilon = 1.0           # DP budget per analyst (zCDP; enforced by the node)
    dp_delta = 1e-6

A dataset without ``[dataset.policy]`` gets :data:`DEFAULT_POLICY`.

>>> p = Policy.from_dict({"min_cell_size": 5, "allowed_statistics": ["count", "avg"]})
>>> p.min_cell_size, p.allowed_statistics
(5, ('avg', 'count'))
>>> Policy.from_dict({"dp_epsilon": 0})
Traceback (most recent call last):
...
federation.errors.ConfigError: policy: dp_epsilon must be a finite number > 0, got 0
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from federation.dp.accounting import rho_from_epsilon
from federation.errors import ConfigError
from federation.query.outputs import AggregateFunction
from federation.schema import Classification, DatasetSchema

__all__ = [
    "DEFAULT_POLICY",
    "MAX_APPROVAL_WAIT",
    "STATISTICS",
    "ApprovalMode",
    "Policy",
    "PolicyRule",
    "strictest",
]

STATISTICS: tuple[str, ...] = (*(f.value for f in AggregateFunction), "min", "max")
"""Names ``allowed_statistics`` may list: the SQL aggregates (quantiles are computed by
the SDK from bucket counts, so they need ``count``), and ``min``/``max`` (refused by
the query language today: they reveal a single record)."""


MAX_APPROVAL_WAIT = 7 * 86400.0
"""The longest ``approval_timeout`` a policy may set, and the longest any job waits for
a node's approval (the coordinator caps what a node announces)."""


class ApprovalMode(enum.Enum):
    """Whether a person at the data holder approves each query."""

    AUTOMATIC = "automatic"
    """Every query the policy allows runs without a person in the loop."""
    MANUAL = "manual"
    """Every task the policy allows waits at the node until its operator approves it
    (``federation node approve ID``) or denies it (``deny ID --reason``); a request
    unanswered for ``approval_timeout`` seconds expires (:mod:`nodes.approvals`)."""


class PolicyRule(enum.Enum):
    """The rules a node enforces; a refusal names one of them."""

    RESTRICTED_COLUMN = "restricted_column"
    CONFIDENTIAL_REQUIRES_DP = "confidential_requires_dp"
    STATISTIC_NOT_ALLOWED = "statistic_not_allowed"
    APPROVAL_REQUIRED = "approval_required"
    MIN_CELL_SIZE = "min_cell_size"
    MIN_QUERY_SET_SIZE = "min_query_set_size"
    DP_BUDGET = "dp_budget"


_KEYS = frozenset(
    {
        "min_cell_size",
        "min_query_set_size",
        "allowed_statistics",
        "approval",
        "approval_timeout",
        "dp_epsilon",
        "dp_delta",
    }
)


@dataclass(frozen=True)
class Policy:
    """One dataset's policy at one node (the column levels live in its schema).

    Attributes:
        min_cell_size: Released groups (or the whole result of a query without GROUP
            BY) with ``0 < rows < min_cell_size`` are suppressed: every aggregate of
            the group, its count included, is NULL. Decided by the coordinator on the
            securely aggregated count; ``1`` disables suppression.
        min_query_set_size: A node refuses a task when ``0 <`` the rows matching the
            query's WHERE at that node ``< min_query_set_size``.
        allowed_statistics: The aggregate functions a query may use (names from
            :data:`STATISTICS`), sorted.
        approval: Whether each query needs a person's approval.
        approval_timeout: Seconds an unanswered approval request stays open before it
            expires (the job then fails, naming the expiry), > 0.
        dp_epsilon: The differential-privacy budget of each analyst on this dataset
            (epsilon, > 0), converted with ``dp_delta`` to a zCDP budget
            (:attr:`dp_rho`) that DP queries spend (:mod:`federation.dp`).
        dp_delta: The budget's delta, ``0 <= delta < 1`` (0 allows no DP query: zCDP
            accounting needs delta > 0).
    """

    min_cell_size: int = 1
    min_query_set_size: int = 1
    allowed_statistics: tuple[str, ...] = tuple(sorted(STATISTICS))
    approval: ApprovalMode = ApprovalMode.AUTOMATIC
    approval_timeout: float = 86400.0
    dp_epsilon: float = 1.0
    dp_delta: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("min_cell_size", "min_query_set_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"policy: {name} must be an integer >= 1, got {value!r}")
        stats = self.allowed_statistics
        if isinstance(stats, str) or not isinstance(stats, Iterable):
            raise ConfigError("policy: allowed_statistics must be a list of names")
        names = [str(s).lower() for s in stats]
        unknown = sorted(set(names) - set(STATISTICS))
        if unknown:
            raise ConfigError(
                f"policy: unknown statistic(s) {unknown} in allowed_statistics; "
                f"expected some of {list(STATISTICS)}"
            )
        if len(set(names)) != len(names):
            raise ConfigError("policy: allowed_statistics lists a statistic twice")
        object.__setattr__(self, "allowed_statistics", tuple(sorted(names)))
        if not isinstance(self.approval, ApprovalMode):
            raise ConfigError("policy: approval must be an ApprovalMode")
        timeout = self.approval_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or not 0 < timeout <= MAX_APPROVAL_WAIT
        ):
            raise ConfigError(
                "policy: approval_timeout must be a number of seconds > 0 and at most "
                f"{MAX_APPROVAL_WAIT:.0f} (7 days), got {timeout!r}"
            )
        object.__setattr__(self, "approval_timeout", float(timeout))
        eps = self.dp_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps):
            raise ConfigError(f"policy: dp_epsilon must be a finite number > 0, got {eps!r}")
        if eps <= 0:
            raise ConfigError(f"policy: dp_epsilon must be a finite number > 0, got {eps!r}")
        delta = self.dp_delta
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 <= delta < 1:
            raise ConfigError(
                f"policy: dp_delta must be a number with 0 <= delta < 1, got {delta!r}"
            )
        object.__setattr__(self, "dp_epsilon", float(eps))
        object.__setattr__(self, "dp_delta", float(delta))

    @property
    def dp_rho(self) -> float:
        """The budget in zCDP rho (0 when ``dp_delta`` is 0)."""
        if self.dp_delta <= 0:
            return 0.0
        return rho_from_epsilon(self.dp_epsilon, self.dp_delta)

    def allows(self, statistic: str) -> bool:
        """True if ``statistic`` (a name from :data:`STATISTICS`) is allowed."""
        return statistic in self.allowed_statistics

    def validate_for(self, schema: DatasetSchema) -> None:
        """Check the policy together with the schema it governs.

        Raises:
            ConfigError: a confidential column (DP-only) has no declared bounds, which
                differential privacy needs to calibrate its noise.
        """
        for column in schema.columns:
            confidential = column.classification is Classification.CONFIDENTIAL
            if confidential and column.is_numeric and column.bounds is None:
                raise ConfigError(
                    f"dataset {schema.name!r}: column {column.name!r} is confidential "
                    "(usable only with differential privacy) but declares no bounds; "
                    "DP needs them: add bounds = [lower, upper]"
                )

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON/TOML-ready form (every field)."""
        return {
            "min_cell_size": self.min_cell_size,
            "min_query_set_size": self.min_query_set_size,
            "allowed_statistics": list(self.allowed_statistics),
            "approval": self.approval.value,
            "approval_timeout": self.approval_timeout,
            "dp_epsilon": self.dp_epsilon,
            "dp_delta": self.dp_delta,
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "policy") -> Policy:
        """Parse a ``[dataset.policy]`` table (or :meth:`to_dict`'s form); missing keys
        take :data:`DEFAULT_POLICY`'s values.

        Raises:
            ConfigError: an unknown key, statistic or approval mode, or an invalid value.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: the policy must be a table")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown}; expected some of {sorted(_KEYS)}"
            )
        base = DEFAULT_POLICY
        approval_raw = data.get("approval", base.approval.value)
        try:
            approval = ApprovalMode(approval_raw)
        except ValueError:
            raise ConfigError(
                f"{where}: approval must be one of {[m.value for m in ApprovalMode]}, "
                f"got {approval_raw!r}"
            ) from None
        stats = data.get("allowed_statistics", base.allowed_statistics)
        if isinstance(stats, str) or not isinstance(stats, (list, tuple)):
            raise ConfigError(f"{where}: allowed_statistics must be a list of names")
        if not stats:
            raise ConfigError(
                f"{where}: allowed_statistics is empty, so the dataset could answer no "
                "query; list the statistics it allows, or stop serving the dataset"
            )
        try:
            return cls(
                min_cell_size=data.get("min_cell_size", base.min_cell_size),
                min_query_set_size=data.get("min_query_set_size", base.min_query_set_size),
                allowed_statistics=tuple(stats),
                approval=approval,
                approval_timeout=data.get("approval_timeout", base.approval_timeout),
                dp_epsilon=data.get("dp_epsilon", base.dp_epsilon),
                dp_delta=data.get("dp_delta", base.dp_delta),
            )
        except ConfigError as exc:
            if where == "policy":
                raise
            raise ConfigError(exc.message.replace("policy:", f"{where}:", 1)) from None

    @classmethod
    def from_json(cls, text: str) -> Policy:
        """Parse :meth:`to_json`'s form."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"policy is not valid JSON: {exc.msg}") from None
        return cls.from_dict(data)

    def summary(self) -> str:
        """One line for people (the CLI's directory listing)."""
        return (
            f"min cell size {self.min_cell_size}, min query set size "
            f"{self.min_query_set_size}, approval {self.approval.value}, declared DP budget "
            f"epsilon={self.dp_epsilon:g} delta={self.dp_delta:g} per analyst (zCDP), "
            f"statistics: {', '.join(self.allowed_statistics)}"
        )


DEFAULT_POLICY = Policy()
"""The policy of a dataset whose config declares none.

Conservative where this release can enforce it without changing exact answers:
columns default to ``internal`` (aggregates only, never MIN/MAX), ``confidential``
columns need DP, ``restricted`` columns are refused, and the DP budget per analyst is
finite (epsilon 1, delta 1e-6). Its minimum cell and query set sizes are 1 (off): cell
suppression cannot be enforced under the homomorphic protocols (the analyst
decrypts every cell, so nodes refuse them when a minimum cell size is set), and
quantiles need exact small bucket counts; data holders set them explicitly.
"""


def strictest(policies: Iterable[Policy]) -> Policy:
    """The policy that satisfies all of ``policies`` (what a job over these nodes obeys):
    the largest minimum sizes, the common statistics (possibly none), the smallest
    budget, manual approval if any node wants it (and the longest approval timeout: the
    job waits for its slowest approver).

    Raises:
        ValueError: ``policies`` is empty.
    """
    items = list(policies)
    if not items:
        raise ValueError("strictest() needs at least one policy")
    common = set(items[0].allowed_statistics)
    for p in items[1:]:
        common &= set(p.allowed_statistics)
    manual = any(p.approval is ApprovalMode.MANUAL for p in items)
    return Policy(
        min_cell_size=max(p.min_cell_size for p in items),
        min_query_set_size=max(p.min_query_set_size for p in items),
        allowed_statistics=tuple(common),
        approval=ApprovalMode.MANUAL if manual else ApprovalMode.AUTOMATIC,
        approval_timeout=max(p.approval_timeout for p in items),
        dp_epsilon=min(p.dp_epsilon for p in items),
        dp_delta=min(p.dp_delta for p in items),
    )
