"""Wire conversions of the differential-privacy types (:mod:`federation.dp.report`)."""

from __future__ import annotations

from collections.abc import Iterable

from federation.dp.report import ANONYMOUS, BudgetSpend, DPParams, PrivacyReport
from federation.errors import ConfigError
from federation.v1 import analyst_pb2, common_pb2

__all__ = [
    "budgets_from_proto",
    "budgets_to_proto",
    "dp_params_from_proto",
    "dp_params_to_proto",
    "privacy_report_from_proto",
    "privacy_report_to_proto",
]


def dp_params_to_proto(params: DPParams) -> common_pb2.DPParams:
    """DPParams -> wire."""
    return common_pb2.DPParams(epsilon=params.epsilon, delta=params.delta, analyst=params.analyst)


def dp_params_from_proto(msg: common_pb2.DPParams) -> DPParams:
    """Wire -> DPParams.

    Raises:
        ConfigError: epsilon or delta out of range (a query must name a valid request).
    """
    try:
        return DPParams(epsilon=msg.epsilon, delta=msg.delta, analyst=msg.analyst or ANONYMOUS)
    except ConfigError as exc:
        raise ConfigError(f"differential privacy: {exc.message}") from None


def budgets_to_proto(budgets: Iterable[BudgetSpend]) -> list[common_pb2.BudgetSpend]:
    """BudgetSpends -> wire."""
    return [
        common_pb2.BudgetSpend(
            dataset=b.dataset, analyst=b.analyst, spent_rho=b.spent_rho, budget_rho=b.budget_rho
        )
        for b in budgets
    ]


def budgets_from_proto(msgs: Iterable[common_pb2.BudgetSpend]) -> tuple[BudgetSpend, ...]:
    """Wire -> BudgetSpends."""
    return tuple(
        BudgetSpend(
            dataset=m.dataset, analyst=m.analyst, spent_rho=m.spent_rho, budget_rho=m.budget_rho
        )
        for m in msgs
    )


def privacy_report_to_proto(report: PrivacyReport) -> analyst_pb2.PrivacyReport:
    """PrivacyReport -> wire."""
    return analyst_pb2.PrivacyReport(
        mechanism=report.mechanism,
        composition=report.composition,
        epsilon=report.epsilon,
        delta=report.delta,
        rho=report.rho,
        min_nodes=report.min_nodes,
        sigmas=[analyst_pb2.NoiseScale(name=n, sigma=s) for n, s in report.sigmas],
        column_sigmas=[analyst_pb2.NoiseScale(name=n, sigma=s) for n, s in report.column_sigmas],
    )


def privacy_report_from_proto(msg: analyst_pb2.PrivacyReport) -> PrivacyReport:
    """Wire -> PrivacyReport."""
    return PrivacyReport(
        mechanism=msg.mechanism,
        composition=msg.composition,
        epsilon=msg.epsilon,
        delta=msg.delta,
        rho=msg.rho,
        min_nodes=msg.min_nodes,
        sigmas=tuple((m.name, m.sigma) for m in msg.sigmas),
        column_sigmas=tuple((m.name, m.sigma) for m in msg.column_sigmas),
    )
