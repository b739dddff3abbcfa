"""The node's DP ledger: atomic, idempotent per job, persistent, never overspent."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from federation.dp import rho_from_epsilon
from federation.errors import DisclosureControlError
from nodes.budget import BudgetLedger

BUDGET = rho_from_epsilon(1.0, 1e-6)


def charge(ledger: BudgetLedger, job: str, epsilon: float, analyst: str = "ann") -> bool:
    return ledger.charge(
        job,
        "patients",
        analyst,
        rho=rho_from_epsilon(epsilon, 1e-6),
        epsilon=epsilon,
        delta=1e-6,
        budget_rho=BUDGET,
        budget_delta=1e-6,
    )


def test_refusal_names_what_is_left_and_spends_nothing(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "ledger.sqlite3")
    assert charge(ledger, "j1", 0.5)
    before = ledger.spent("patients", "ann")
    with pytest.raises(DisclosureControlError, match=r"dp_budget.*has epsilon=0\.\d+ left"):
        charge(ledger, "j2", 0.9)
    assert ledger.spent("patients", "ann") == before
    assert charge(ledger, "j3", 0.5, analyst="bob")  # budgets are per analyst


def test_a_retried_job_spends_once(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "ledger.sqlite3")
    assert charge(ledger, "j1", 0.3)
    assert not charge(ledger, "j1", 0.3)
    assert ledger.spent("patients", "ann") == pytest.approx(rho_from_epsilon(0.3, 1e-6))


def test_a_restart_keeps_the_spend(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"
    assert charge(BudgetLedger(path), "j1", 0.8)
    reopened = BudgetLedger(path)  # a new agent on the same state directory
    assert reopened.spent("patients", "ann") == pytest.approx(rho_from_epsilon(0.8, 1e-6))
    assert not charge(reopened, "j1", 0.8)  # the crashed job's retry is not charged again
    with pytest.raises(DisclosureControlError):  # two of 0.8 exceed 1 under zCDP
        charge(reopened, "j2", 0.8)


def test_concurrent_queries_cannot_overspend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    BudgetLedger(path)
    eps = 0.5  # rho adds: only three of these fit in epsilon 1
    fits = int(BUDGET // rho_from_epsilon(eps, 1e-6))
    results: list[bool] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        ledger = BudgetLedger(path)  # one connection each, as separate processes would
        try:
            ok = charge(ledger, f"job-{i}", eps)
        except DisclosureControlError:
            ok = False
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fits == 3
    assert sum(results) == fits
    assert BudgetLedger(path).spent("patients", "ann") <= BUDGET * (1 + 1e-9)


def test_snapshot(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "ledger.sqlite3")
    charge(ledger, "j1", 0.2)
    (spend,) = ledger.snapshot({"patients": BUDGET, "other": BUDGET})
    assert (spend.dataset, spend.analyst, spend.budget_rho) == ("patients", "ann", BUDGET)
    assert spend.remaining_rho == pytest.approx(BUDGET - rho_from_epsilon(0.2, 1e-6))
