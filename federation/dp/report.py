"""The DP types that travel: a query's privacy parameters, the released report, budgets.

>>> params = DPParams(epsilon=0.5, delta=1e-6)
>>> params.analyst, round(params.rho, 6)
('anonymous', 0.004411)
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.dp.accounting import (
    COMPOSITION,
    MECHANISM,
    check_epsilon_delta,
    epsilon_from_rho,
    rho_from_epsilon,
)
from federation.dp.mechanism import plan_noise
from federation.query.bind import BoundQuery
from federation.query.outputs import Aggregate, AggregateFunction

__all__ = [
    "ANONYMOUS",
    "DEFAULT_DELTA",
    "BudgetSpend",
    "BudgetStatus",
    "DPParams",
    "PrivacyReport",
    "privacy_report",
]

DEFAULT_DELTA = 1e-6
"""The delta of a DP query that names none."""

ANONYMOUS = "anonymous"
"""The analyst identity of a request that declares none (identities are self-declared
until mutual TLS arrives)."""


@dataclass(frozen=True)
class DPParams:
    """A query's differential-privacy request.

    Attributes:
        epsilon: > 0.
        delta: In ``(0, 1)``.
        analyst: Whose budget pays (self-declared until mTLS identities exist).
    """

    epsilon: float
    delta: float = DEFAULT_DELTA
    analyst: str = ANONYMOUS

    def __post_init__(self) -> None:
        check_epsilon_delta(self.epsilon, self.delta)
        object.__setattr__(self, "epsilon", float(self.epsilon))
        object.__setattr__(self, "delta", float(self.delta))

    @property
    def rho(self) -> float:
        """The zCDP cost charged to the budget."""
        return rho_from_epsilon(self.epsilon, self.delta)


@dataclass(frozen=True)
class PrivacyReport:
    """How a released result was noised.

    Attributes:
        mechanism: :data:`~federation.dp.accounting.MECHANISM`.
        composition: The accounting rule (``"zCDP"``).
        epsilon, delta: The query's guarantee, ``(epsilon, delta)``-DP.
        rho: The zCDP cost charged to the analyst's budget at every node.
        min_nodes: ``t``: the fewest nodes whose noise the sum was calibrated for.
        sigmas: The standard deviation of the noise of each noised aggregate
            (``COUNT(*)``, ``COUNT(x)``, ``SUM(x)``, ``SUM(x*x)``), in the result's units,
            for the nodes that contributed. ``AVG(x)`` is ``SUM(x) / COUNT(x)`` of these,
            the variances ``(SUM(x*x) - SUM(x)**2 / COUNT(x)) / (COUNT(x) - 1)`` (or ``/
            COUNT(x)``), after the consistency projection.
        column_sigmas: The same, per released column that is one of those aggregates.
    """

    mechanism: str
    composition: str
    epsilon: float
    delta: float
    rho: float
    min_nodes: int
    sigmas: tuple[tuple[str, float], ...]
    column_sigmas: tuple[tuple[str, float], ...] = ()

    def sigma(self, name: str) -> float:
        """The noise std of an aggregate label (``"SUM(x)"``) or a released column."""
        found = dict(self.sigmas) | dict(self.column_sigmas)
        return found[name]

    def summary(self) -> str:
        """One line for people."""
        scales = ", ".join(f"{k} sigma={v:.4g}" for k, v in self.sigmas)
        return (
            f"{self.mechanism}, epsilon={self.epsilon:g} delta={self.delta:g} "
            f"(rho={self.rho:.4g}, {self.composition}); noise: {scales}"
        )


def _label(agg: Aggregate) -> str | None:
    if agg.function is AggregateFunction.COUNT:
        return "COUNT(*)" if agg.column is None else f"COUNT({agg.column})"
    if agg.function is AggregateFunction.SUM:
        return f"SUM({agg.column})"
    return None


def privacy_report(
    bound: BoundQuery, params: DPParams, min_nodes: int, max_nodes: int, contributors: int
) -> PrivacyReport:
    """The report of a DP job over ``contributors`` nodes (of ``max_nodes`` selected)."""
    plan = plan_noise(bound, params.rho, min_nodes, max_nodes)
    sigmas = tuple((f.label, plan.total_sigma(f, contributors)) for f in plan.fields)
    by_label = dict(sigmas)
    columns: list[tuple[str, float]] = []
    for out in bound.outputs:
        if isinstance(out.source, Aggregate):
            label = _label(out.source)
            if label is not None and label in by_label:
                columns.append((out.name, by_label[label]))
    return PrivacyReport(
        mechanism=MECHANISM,
        composition=COMPOSITION,
        epsilon=params.epsilon,
        delta=params.delta,
        rho=params.rho,
        min_nodes=min_nodes,
        sigmas=sigmas,
        column_sigmas=tuple(columns),
    )


@dataclass(frozen=True)
class BudgetSpend:
    """What one analyst has spent of one dataset's budget (at a node, or the directory's
    strictest view over the dataset's nodes), in zCDP ``rho``."""

    dataset: str
    analyst: str
    spent_rho: float
    budget_rho: float

    @property
    def remaining_rho(self) -> float:
        """``budget - spent`` (never negative)."""
        return max(0.0, self.budget_rho - self.spent_rho)


@dataclass(frozen=True)
class BudgetStatus:
    """An analyst's DP budget on a dataset, as ``client.budget(dataset)`` reports it.

    Attributes:
        dataset, analyst: Whose budget on what.
        remaining: Epsilon left at ``delta`` (the minimum over the dataset's nodes).
        spent: Epsilon spent at ``delta`` (the same node's).
        total: The declared budget's epsilon at ``delta``.
        delta: The delta the epsilons are stated for (the dataset policy's ``dp_delta``).
        composition: ``"zCDP"``: queries' rho add up.
        remaining_rho, spent_rho: The same in rho.
    """

    dataset: str
    analyst: str
    remaining: float
    spent: float
    total: float
    delta: float
    composition: str
    remaining_rho: float
    spent_rho: float

    @classmethod
    def from_spend(cls, spend: BudgetSpend, delta: float) -> BudgetStatus:
        """State ``spend`` in epsilon at ``delta``."""
        return cls(
            dataset=spend.dataset,
            analyst=spend.analyst,
            remaining=epsilon_from_rho(spend.remaining_rho, delta),
            spent=epsilon_from_rho(spend.spent_rho, delta),
            total=epsilon_from_rho(spend.budget_rho, delta),
            delta=delta,
            composition=COMPOSITION,
            remaining_rho=spend.remaining_rho,
            spent_rho=spend.spent_rho,
        )
