"""Manual approval end to end: a task waits at its node until the node's operator
approves it (``federation node approve``), denies it, or lets it expire; the analyst
sees the job await approval, then the answer or a clear error, and nothing is spent."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import federation as fed
from federation.cli.main import main as cli
from federation.errors import ApprovalDeniedError, ApprovalExpiredError
from federation.messages import JobProgress, JobStatus
from federation.policy import DEFAULT_POLICY, ApprovalMode, Policy
from nodes.approvals import APPROVALS_FILE, ApprovalBook, ApprovalRequest, ApprovalStatus
from nodes.budget import LEDGER_FILE

SQL = "SELECT g, COUNT(*) AS n, AVG(x) AS mean FROM t GROUP BY g"


def _parts() -> list[pd.DataFrame]:
    gen = np.random.default_rng(5)
    return [
        pd.DataFrame(
            {
                "g": gen.choice(["a", "b"], n).astype(object),
                "x": gen.integers(0, 100, n).astype(np.int64),
            }
        )
        for n in (40, 30, 50)
    ]


def _schema() -> fed.DatasetSchema:
    return fed.DatasetSchema(
        "t",
        (
            fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b")),
            fed.Column("x", fed.ColumnType.INTEGER, bounds=(0, 100)),
        ),
    )


def _pending(book: ApprovalBook, deadline: float = 30.0) -> ApprovalRequest:
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        items = book.pending()
        if items:
            return items[0]
        time.sleep(0.05)
    raise AssertionError("no approval request appeared at the node")


def _run(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def target() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def _config(tmp_path: Path, state: Path) -> str:
    path = tmp_path / "node-0.toml"
    path.write_text(
        f'[node]\nname = "node-0"\ncoordinator = "x:1"\ninsecure = true\nstate_dir = "{state}"\n'
    )
    return str(path)


def test_a_manual_task_waits_for_the_operator_then_answers_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = _parts()
    manual = Policy(approval=ApprovalMode.MANUAL)
    with fed.simulate(
        {"t": parts},
        schemas={"t": _schema()},
        policies={"t": [manual, DEFAULT_POLICY, DEFAULT_POLICY]},
        workdir=tmp_path / "sim",
        isolation="thread",
    ) as client:
        (info,) = client.datasets()
        assert info.policy is not None
        assert info.policy.approval is ApprovalMode.MANUAL  # analysts see it up front
        state = tmp_path / "sim" / "node-0" / "state"
        book = ApprovalBook(state / APPROVALS_FILE)
        events: list[JobProgress] = []
        thread, out = _run(lambda: client.query(SQL, progress=events.append))
        request = _pending(book)
        assert request.sql == SQL
        assert "count" in request.computation.lower()
        assert client.job(request.job_id).status is JobStatus.AWAITING_APPROVAL
        time.sleep(0.3)
        assert thread.is_alive()  # still waiting: nothing ran without the approval
        config = _config(tmp_path, state)
        assert cli(["node", "approvals", "--config", config]) == 0
        listing = capsys.readouterr().out
        assert request.request_id in listing
        assert "computation:" in listing
        assert cli(["node", "approve", request.request_id, "--config", config]) == 0
        thread.join(60)
        (result,) = out
        assert isinstance(result, fed.QueryResult), result
        assert [e.stage for e in events][:1] == ["awaiting_approval"]
        assert "approved" in [e.stage for e in events]
        assert client.job(request.job_id).status is JobStatus.SUCCEEDED
        assert book.get(request.request_id).status is ApprovalStatus.APPROVED
    pooled = pd.concat(parts)
    want = {g: (len(f), f["x"].sum() / len(f)) for g, f in pooled.groupby("g")}
    got = {row[0]: (row[1], row[2]) for row in result.rows}
    assert got.keys() == want.keys()
    for g, (n, mean) in want.items():
        assert got[g][0] == n
        assert got[g][1] == pytest.approx(mean, rel=1e-14)


def test_a_denial_reaches_the_analyst_with_its_reason_and_spends_nothing(
    tmp_path: Path,
) -> None:
    manual = Policy(approval=ApprovalMode.MANUAL)
    with fed.simulate(
        {"t": _parts()},
        schemas={"t": _schema()},
        policies={"t": [DEFAULT_POLICY, manual, DEFAULT_POLICY]},
        workdir=tmp_path / "sim",
        isolation="thread",
    ) as client:
        book = ApprovalBook(tmp_path / "sim" / "node-1" / "state" / APPROVALS_FILE)
        thread, out = _run(lambda: client.query("SELECT COUNT(*) FROM t", epsilon=0.5))
        request = _pending(book)
        assert request.epsilon == 0.5
        config = _config(tmp_path, book.path.parent)
        reason = "outside the agreed study protocol"
        assert (
            cli(["node", "deny", request.request_id, "--reason", reason, "--config", config]) == 0
        )
        assert cli(["node", "approve", request.request_id, "--config", config]) == 1  # decided
        thread.join(60)
        (error,) = out
        assert isinstance(error, ApprovalDeniedError), error
        assert "outside the agreed study protocol" in error.message
        assert "node-1" in error.message
        record = client.job(request.job_id)
        assert record.status is JobStatus.FAILED
        assert record.error is not None
        assert record.error.code == "approval_denied"
        # The denying node charged nothing: it decides before it charges or reads.
        # (The automatic nodes charged their own ledgers at task start: conservative,
        # nothing was released; see the README's "Approvals".)
        ledgers = {
            i: sqlite3.connect(tmp_path / "sim" / f"node-{i}" / "state" / LEDGER_FILE)
            for i in (0, 1)
        }
        spent = {
            i: con.execute(
                "SELECT COUNT(*) FROM spends WHERE job_id = ?", (request.job_id,)
            ).fetchone()[0]
            for i, con in ledgers.items()
        }
        for con in ledgers.values():
            con.close()
        assert spent == {0: 1, 1: 0}
        # The coordinator keeps serving, every node still online.
        (info,) = client.datasets()
        assert info.online_node_count == 3


def test_an_unanswered_request_expires_and_the_job_fails_clearly(tmp_path: Path) -> None:
    quick = Policy(approval=ApprovalMode.MANUAL, approval_timeout=1.0)
    with fed.simulate(
        {"t": _parts()},
        schemas={"t": _schema()},
        policies={"t": [DEFAULT_POLICY, DEFAULT_POLICY, quick]},
        workdir=tmp_path / "sim",
        isolation="thread",
        round_timeout=5.0,
    ) as client:
        with pytest.raises(ApprovalExpiredError, match="expired unanswered"):
            client.query("SELECT COUNT(*) FROM t")
        book = ApprovalBook(tmp_path / "sim" / "node-2" / "state" / APPROVALS_FILE)
        (request,) = book.requests()
        assert request.status is ApprovalStatus.EXPIRED
