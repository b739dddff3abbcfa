"""Privacy accounting in zero-concentrated DP (zCDP): conversions and calibration.

Every query's and every budget's ``(epsilon, delta)`` is converted to a zCDP
parameter ``rho`` (Bun & Steinke 2016), and budgets are spent in ``rho``: under zCDP
``rho`` adds across queries (the composition rule, :data:`COMPOSITION`).

Conversion (Bun & Steinke 2016, Prop. 1.3): ``rho``-zCDP implies
``(rho + 2 sqrt(rho ln(1/delta)), delta)``-DP for every ``delta > 0``. Its inverse, the
largest ``rho`` that still gives ``(epsilon, delta)``, is
``rho = (sqrt(ln(1/delta) + epsilon) - sqrt(ln(1/delta)))**2``.

>>> rho = rho_from_epsilon(1.0, 1e-6)
>>> round(epsilon_from_rho(rho, 1e-6), 12)
1.0
"""

from __future__ import annotations

import math

from federation.errors import ConfigError

__all__ = [
    "COMPOSITION",
    "MECHANISM",
    "check_epsilon_delta",
    "epsilon_from_rho",
    "rho_from_epsilon",
]

COMPOSITION = "zCDP"
"""How budgets compose: zero-concentrated DP, ``rho`` adds across queries."""

MECHANISM = "distributed discrete Gaussian"
"""The mechanism every DP query runs (:mod:`federation.dp.mechanism`)."""


def check_epsilon_delta(epsilon: float, delta: float) -> None:
    """Validate a query's privacy parameters.

    Raises:
        ConfigError: ``epsilon`` is not a finite number > 0, or ``delta`` is not in
            ``(0, 1)`` (zCDP gives ``(epsilon, delta)``-DP only for ``delta > 0``).
    """
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
        raise ConfigError(f"epsilon must be a number > 0, got {epsilon!r}")
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ConfigError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ConfigError(
            f"delta must be a number with 0 < delta < 1 (zCDP accounting gives "
            f"(epsilon, delta)-DP only for delta > 0), got {delta!r}"
        )


def rho_from_epsilon(epsilon: float, delta: float) -> float:
    """The zCDP ``rho`` whose guarantee is ``(epsilon, delta)``-DP.

    Raises:
        ConfigError: Invalid parameters, or an ``epsilon`` so small that ``rho`` is not
            a positive double (no noise could be calibrated for it).
    """
    check_epsilon_delta(epsilon, delta)
    log_term = math.log(1.0 / delta)
    # sqrt(L + e) - sqrt(L), written without cancellation for small e
    rho = (epsilon / (math.sqrt(log_term + epsilon) + math.sqrt(log_term))) ** 2
    if not rho > 0:
        raise ConfigError(
            f"epsilon={epsilon!r} at delta={delta!r} is too small to calibrate noise for "
            "(its zCDP rho underflows); use a larger epsilon"
        )
    return rho


def epsilon_from_rho(rho: float, delta: float) -> float:
    """The ``epsilon`` of ``(epsilon, delta)``-DP implied by ``rho``-zCDP (0 for rho 0)."""
    if rho <= 0:
        return 0.0
    if not 0 < delta < 1:
        raise ConfigError(f"delta must satisfy 0 < delta < 1, got {delta!r}")
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))
