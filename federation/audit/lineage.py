"""A job's lineage from the coordinator's audit log (pure: no I/O).

Who asked what (the SQL, the exact computation and its fingerprint, the analyst and
epsilon of a DP query), which nodes were asked, what each node reports it did in its
signed receipt (the SHA-256 of the dataset file it read, the hash of the policy it
applied, the epsilon charged, its outcome), the approvals, and what was released.
Receipts are checked against the keys the nodes registered; a receipt that does not
verify is shown as such, never silently trusted.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from federation.audit.witness import RECEIPT_EVENT, verify_receipt
from federation.errors import AuditIntegrityError

__all__ = ["Lineage", "lineage"]


@dataclass
class Lineage:
    """Everything the log says about one job (each event with its log index)."""

    job: str
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    receipts: list[tuple[int, dict[str, Any], bool]] = field(default_factory=list)
    """(index, receipt, its signature verifies under the node's registered key)."""

    @property
    def found(self) -> bool:
        """Whether the log mentions the job at all."""
        return bool(self.events or self.receipts)

    def render(self) -> str:
        """Human-readable lines."""
        blocks = [(i, self._event_lines(i, e)) for i, e in self.events]
        blocks += [(i, self._receipt_lines(i, r, ok)) for i, r, ok in self.receipts]
        lines = [f"job {self.job}"]
        for _, block in sorted(blocks, key=lambda b: b[0]):
            lines += block
        return "\n".join(lines)

    @staticmethod
    def _event_lines(index: int, e: dict[str, Any]) -> list[str]:
        lines: list[str] = []
        kind = e.get("event")
        at = _when(e.get("at"))
        if kind == "query_submitted":
            who = e.get("analyst") or "an analyst (not a DP query: no budget identity)"
            lines.append(f"  [{index}] {at} submitted by {who}, protocol {e.get('protocol')}")
            lines.append(f"        sql: {e.get('sql')}")
            if e.get("epsilon") is not None:
                lines.append(f"        epsilon: {e.get('epsilon')}")
        elif kind == "job_planned":
            names = ", ".join(e.get("node_names") or []) or f"{e.get('nodes')} node(s)"
            lines.append(f"  [{index}] {at} planned on dataset {e.get('dataset')}: {names}")
            if e.get("computation"):
                lines.append(f"        computation: {e.get('computation')}")
                lines.append(f"        fingerprint: {e.get('fingerprint')}")
        elif kind == "task_approval":
            lines.append(
                f"  [{index}] {at} node {e.get('node')}: {e.get('state')} "
                f"(request {e.get('request')})"
            )
        elif kind == "result_released":
            digest = e.get("result_sha256") or e.get("ciphertext_sha256")
            what = "result" if e.get("result_sha256") else "encrypted result"
            lines.append(
                f"  [{index}] {at} released the {what} of {e.get('nodes')} node(s), sha256 {digest}"
            )
        elif kind == "job_failed":
            lines.append(
                f"  [{index}] {at} FAILED [{e.get('code')}] {e.get('reason')}; nothing released"
            )
        else:
            lines.append(f"  [{index}] {at} {kind}")
        return lines

    @staticmethod
    def _receipt_lines(index: int, r: dict[str, Any], valid: bool) -> list[str]:
        lines: list[str] = []
        mark = "" if valid else "  SIGNATURE DOES NOT VERIFY"
        epsilon = r.get("epsilon")
        lines.append(
            f"  [{index}] {_when(r.get('at'))} node {r.get('node')} receipt: "
            f"{r.get('outcome')}{mark}"
        )
        lines.append(
            f"        dataset {r.get('dataset')} sha256 {r.get('dataset_sha256')}; "
            f"policy sha256 {r.get('policy_sha256')}"
            + (f"; epsilon charged {epsilon}" if epsilon is not None else "")
        )
        if r.get("reason"):
            lines.append(f"        reason: {r.get('reason')}")
        return lines


def _when(at: object) -> str:
    if not isinstance(at, int | float):
        return "?"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def lineage(entries: Sequence[bytes], job: str) -> Lineage:
    """The lineage of ``job`` in a coordinator log's ``entries`` (in log order)."""
    keys: dict[str, bytes] = {}
    out = Lineage(job)
    for index, raw in enumerate(entries):
        try:
            entry = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(entry, dict):
            continue
        event = entry.get("event")
        if event == "node_registered" and isinstance(entry.get("audit_key"), str):
            with contextlib.suppress(ValueError):
                keys[str(entry.get("node"))] = bytes.fromhex(entry["audit_key"])
        if entry.get("job") != job:
            continue
        if event == RECEIPT_EVENT:
            node = str(entry.get("node"))
            try:
                verify_receipt(raw, node, keys.get(node, b""))
                valid = True
            except AuditIntegrityError:
                valid = False
            out.receipts.append((index, entry, valid))
        else:
            out.events.append((index, entry))
    return out
