"""Differential privacy: accounting (zCDP), the distributed discrete Gaussian mechanism,
and the types that travel (:mod:`federation.dp.report`).

See :mod:`federation.dp.mechanism` for what is released and the guarantee, and
:mod:`federation.dp.accounting` for the conversions and the composition rule.
"""

from __future__ import annotations

from federation.dp.accounting import (
    COMPOSITION,
    MECHANISM,
    check_epsilon_delta,
    epsilon_from_rho,
    rho_from_epsilon,
)
from federation.dp.mechanism import (
    NoisedField,
    NoisePlan,
    add_node_noise,
    calibrate,
    clipped_relation,
    dp_fields,
    plan_noise,
    project_consistent,
    sample_discrete_gaussian,
)
from federation.dp.report import (
    ANONYMOUS,
    DEFAULT_DELTA,
    BudgetSpend,
    BudgetStatus,
    DPParams,
    PrivacyReport,
    privacy_report,
)

__all__ = [
    "ANONYMOUS",
    "COMPOSITION",
    "DEFAULT_DELTA",
    "MECHANISM",
    "BudgetSpend",
    "BudgetStatus",
    "DPParams",
    "NoisePlan",
    "NoisedField",
    "PrivacyReport",
    "add_node_noise",
    "calibrate",
    "check_epsilon_delta",
    "clipped_relation",
    "dp_fields",
    "epsilon_from_rho",
    "plan_noise",
    "privacy_report",
    "project_consistent",
    "rho_from_epsilon",
    "sample_discrete_gaussian",
]
