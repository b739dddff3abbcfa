"""The node's approval book: requests, decisions, expiry, races between operators."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from federation.errors import ApprovalDeniedError, ApprovalExpiredError, ConfigError
from nodes.approvals import ApprovalBook, ApprovalStatus


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _request(book: ApprovalBook, job: str = "job-1", timeout: float = 60.0) -> str:
    return book.request(
        job_id=job,
        dataset="patients",
        analyst="ana",
        protocol="secagg",
        sql="SELECT COUNT(*) FROM patients",
        computation="SELECT COUNT(*) FROM patients",
        epsilon=0.5,
        timeout=timeout,
    ).request_id


def test_a_request_is_pending_until_approved_then_waits_no_more(tmp_path: Path) -> None:
    book = ApprovalBook(tmp_path / "a.sqlite3")
    rid = _request(book)
    (pending,) = book.pending()
    assert (pending.request_id, pending.status, pending.epsilon) == (
        rid,
        ApprovalStatus.PENDING,
        0.5,
    )
    assert _request(book) == rid  # the same job waits on the same request
    done = book.approve(rid, by="ops")
    assert (done.status, done.decided_by) == (ApprovalStatus.APPROVED, "ops")
    assert book.wait(rid).status is ApprovalStatus.APPROVED
    assert book.pending() == []
    # Another process sees the same book.
    assert ApprovalBook(tmp_path / "a.sqlite3").get(rid).status is ApprovalStatus.APPROVED


def test_denial_carries_its_reason_and_needs_one(tmp_path: Path) -> None:
    book = ApprovalBook(tmp_path / "a.sqlite3")
    rid = _request(book)
    with pytest.raises(ConfigError, match="needs a reason"):
        book.deny(rid, reason="  ")
    book.deny(rid, reason="not for marketing")
    with pytest.raises(ApprovalDeniedError, match="not for marketing") as info:
        book.wait(rid)
    assert info.value.code == "approval_denied"


def test_a_decided_or_unknown_request_cannot_be_decided_again(tmp_path: Path) -> None:
    book = ApprovalBook(tmp_path / "a.sqlite3")
    rid = _request(book)
    book.approve(rid)
    with pytest.raises(ConfigError, match="is approved, not pending"):
        book.deny(rid, reason="too late")
    with pytest.raises(ConfigError, match="no approval request has id"):
        book.approve("nope")


def test_an_unanswered_request_expires_and_can_no_longer_be_approved(tmp_path: Path) -> None:
    clock = _Clock()
    book = ApprovalBook(tmp_path / "a.sqlite3", clock=clock)
    rid = _request(book, timeout=30.0)
    clock.now += 31.0
    with pytest.raises(ApprovalExpiredError, match="expired unanswered after 30 s"):
        book.wait(rid)
    assert book.get(rid).status is ApprovalStatus.EXPIRED
    with pytest.raises(ConfigError, match="is expired"):
        book.approve(rid)


def test_a_waiting_task_is_released_by_a_decision_from_another_thread(tmp_path: Path) -> None:
    book = ApprovalBook(tmp_path / "a.sqlite3")
    rid = _request(book)
    decided = threading.Timer(0.3, lambda: book.approve(rid))
    decided.start()
    assert book.wait(rid, poll=0.05).status is ApprovalStatus.APPROVED
    decided.join()


def test_cancellation_ends_the_wait(tmp_path: Path) -> None:
    book = ApprovalBook(tmp_path / "a.sqlite3")
    rid = _request(book)
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Exception, match="job ended"):
        book.wait(rid, cancelled=cancelled)
    assert book.get(rid).status is ApprovalStatus.PENDING


def test_of_two_operators_deciding_at_once_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    rid = _request(ApprovalBook(path))
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def decide(i: int) -> None:
        book = ApprovalBook(path)
        barrier.wait()
        try:
            if i % 2:
                book.approve(rid, by=f"op{i}")
            else:
                book.deny(rid, reason=f"op{i} says no", by=f"op{i}")
            outcomes.append("won")
        except ConfigError:
            outcomes.append("lost")

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    final = ApprovalBook(path).get(rid)
    assert final.status in (ApprovalStatus.APPROVED, ApprovalStatus.DENIED)
