"""The node's DP budget ledger: what each analyst spent of each dataset's budget.

One SQLite file in the node's state directory holds one row per charged job. A charge
is a single ``BEGIN IMMEDIATE`` transaction that reads the analyst's total and inserts
the job's row only if it fits, so concurrent tasks (threads or processes) cannot
overspend. The job id is the idempotency key: a task retried for the same job is not
charged again, and a crash after the commit keeps the spend (the node charges before
it touches data, so a crash can lose no spend that released anything).

Budgets are zCDP ``rho`` (queries add up: :mod:`federation.dp.accounting`); the budget
itself is the dataset policy's ``dp_epsilon``/``dp_delta`` converted to rho.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from federation.dp.accounting import epsilon_from_rho
from federation.dp.mechanism import MAX_NODE_SCALE, NoisePlan, plan_noise
from federation.dp.report import BudgetSpend
from federation.errors import DisclosureControlError, ProtocolError
from federation.messages import TaskAssignment
from federation.policy import Policy, PolicyRule
from federation.query import BoundQuery

__all__ = ["LEDGER_FILE", "BudgetLedger", "NodeBudgets"]

LEDGER_FILE = "dp_budget.sqlite3"
"""The ledger's file name inside the node's state directory."""

_SLACK = 1e-12  # floating-point slack when a charge exactly exhausts the budget

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spends (
    job_id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    analyst TEXT NOT NULL,
    rho REAL NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    at REAL NOT NULL
)
"""


class BudgetLedger:
    """A persistent, concurrency-safe DP ledger (one per node state directory)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with contextlib.closing(self._connect()) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30.0, isolation_level=None)

    def charge(
        self,
        job_id: str,
        dataset: str,
        analyst: str,
        *,
        rho: float,
        epsilon: float,
        delta: float,
        budget_rho: float,
        budget_delta: float,
    ) -> bool:
        """Spend ``rho`` of ``analyst``'s budget on ``dataset`` for ``job_id``, atomically.

        Returns:
            True if charged now; False if this job was already charged (a retry).

        Raises:
            DisclosureControlError: the charge would exceed the budget (rule
                ``dp_budget``; the message states what is left, in epsilon at the
                budget's delta, and nothing is charged).
            ProtocolError: the job id was charged for another dataset or analyst.
        """
        with self._lock, contextlib.closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute(
                    "SELECT dataset, analyst FROM spends WHERE job_id = ?", (job_id,)
                ).fetchone()
                if row is not None:
                    con.execute("COMMIT")
                    if tuple(row) != (dataset, analyst):
                        raise ProtocolError(
                            f"job {job_id} was already charged for another dataset or analyst"
                        )
                    return False
                (spent,) = con.execute(
                    "SELECT COALESCE(SUM(rho), 0.0) FROM spends WHERE dataset = ? AND analyst = ?",
                    (dataset, analyst),
                ).fetchone()
                if spent + rho > budget_rho * (1 + _SLACK):
                    con.execute("ROLLBACK")
                    left = max(0.0, budget_rho - spent)
                    raise DisclosureControlError(
                        f"policy rule {PolicyRule.DP_BUDGET.value}: the query needs "
                        f"epsilon={epsilon:g} (delta={delta:g}, rho={rho:.4g}) but analyst "
                        f"{analyst!r} has epsilon={_eps(left, budget_delta):.4g} left of "
                        f"dataset {dataset!r}'s budget (delta={budget_delta:g}, "
                        f"rho={left:.4g} left, zCDP); nothing was computed"
                    )
                con.execute(
                    "INSERT INTO spends VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job_id, dataset, analyst, rho, epsilon, delta, time.time()),
                )
                con.execute("COMMIT")
                return True
            except sqlite3.Error:
                con.execute("ROLLBACK")
                raise

    def spent(self, dataset: str, analyst: str) -> float:
        """The rho ``analyst`` has spent of ``dataset``."""
        with contextlib.closing(self._connect()) as con:
            (spent,) = con.execute(
                "SELECT COALESCE(SUM(rho), 0.0) FROM spends WHERE dataset = ? AND analyst = ?",
                (dataset, analyst),
            ).fetchone()
        return float(spent)

    def snapshot(self, budgets: dict[str, float]) -> tuple[BudgetSpend, ...]:
        """Every (dataset, analyst) with spends, against ``budgets`` (dataset -> rho)."""
        with contextlib.closing(self._connect()) as con:
            rows = con.execute(
                "SELECT dataset, analyst, SUM(rho) FROM spends GROUP BY dataset, analyst "
                "ORDER BY dataset, analyst"
            ).fetchall()
        return tuple(
            BudgetSpend(dataset, analyst, float(spent), budgets[dataset])
            for dataset, analyst, spent in rows
            if dataset in budgets
        )


def _eps(rho: float, delta: float) -> float:
    return epsilon_from_rho(rho, delta) if delta > 0 else 0.0


class NodeBudgets:
    """The node's DP gatekeeper: checks a DP task against the dataset's policy, derives
    the noise itself, and charges the analyst's budget before any data is touched."""

    def __init__(
        self,
        ledger: BudgetLedger,
        policies: Callable[[str], Policy],
        datasets: Callable[[], tuple[str, ...]],
        on_charge: Callable[[], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self._policies = policies
        self._datasets = datasets
        self._on_charge = on_charge

    def prepare(
        self, assignment: TaskAssignment, bound: BoundQuery, min_nodes: int, max_nodes: int
    ) -> NoisePlan:
        """The task's noise plan, once its cost is charged (idempotent per job id).

        Args:
            assignment: A task with ``dp`` set.
            bound: Its query, bound to this node's schema and already policy-checked.
            min_nodes: ``t``: the fewest nodes the job can end with (derived by the
                node from its protocol setup).
            max_nodes: The job's nodes.

        Raises:
            UnsupportedQueryError: the query cannot run with DP (:func:`dp_fields`).
            DisclosureControlError: the budget would be exceeded, or the policy
                declares ``dp_delta = 0`` (rule ``dp_budget``).
        """
        params = assignment.dp
        if params is None:  # pragma: no cover - callers check
            raise ProtocolError("not a DP task")
        policy = self._policies(assignment.dataset)
        if policy.dp_rho <= 0:
            raise DisclosureControlError(
                f"policy rule {PolicyRule.DP_BUDGET.value}: dataset {assignment.dataset!r} "
                "declares dp_delta = 0, and zCDP accounting needs delta > 0; no DP query "
                "can be charged"
            )
        plan = plan_noise(bound, params.rho, min_nodes, max_nodes)
        for field in plan.fields:  # refuse an unusable scale before charging
            if plan.node_scale(field) > MAX_NODE_SCALE:
                raise DisclosureControlError(
                    f"epsilon={params.epsilon:g} needs more noise than the node's sampler "
                    "supports; use a larger epsilon"
                )
        charged = self.ledger.charge(
            assignment.job_id,
            assignment.dataset,
            params.analyst,
            rho=params.rho,
            epsilon=params.epsilon,
            delta=params.delta,
            budget_rho=policy.dp_rho,
            budget_delta=policy.dp_delta,
        )
        if charged and self._on_charge is not None:
            self._on_charge()
        return plan

    def snapshot(self) -> tuple[BudgetSpend, ...]:
        """The ledger against each served dataset's budget (for the directory)."""
        budgets = {name: self._policies(name).dp_rho for name in self._datasets()}
        return self.ledger.snapshot(budgets)
