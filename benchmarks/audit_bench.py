"""Audit log: append and verify 10^5 entries, against hashing the same bytes once.

    python benchmarks/audit_bench.py [--entries 100000] [--head-every 1000]

The baseline is the floor any verifier pays: one SHA-256 of every entry's bytes
(hashlib, same run). Verification recomputes every leaf hash, the Merkle root after
every entry (checked against the root the log recorded), and checks every signed
tree head's Ed25519 signature and root.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from federation.audit.log import AuditLog
from federation.crypto.signing import Ed25519Signer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--head-every", type=int, default=1000)
    args = parser.parse_args()
    body = '"dataset":"patients","sql":"SELECT COUNT(*) FROM patients"'
    entries = [f'{{"event":"query","job":"{i:08d}",{body}}}'.encode() for i in range(args.entries)]
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit.db", Ed25519Signer.generate())
        t = time.perf_counter()
        for i, entry in enumerate(entries):
            log.append(entry)
            if (i + 1) % args.head_every == 0:
                log.sign_head()
        t_append = time.perf_counter() - t
        t = time.perf_counter()
        report = log.verify()
        t_verify = time.perf_counter() - t
        if not report.ok:
            raise SystemExit(f"verification failed: {report.problem}")
        t = time.perf_counter()
        for entry in entries:
            hashlib.sha256(entry).digest()
        t_hash = time.perf_counter() - t
    print(f"{args.entries:,} entries, a signed head every {args.head_every}")
    print(f"append (one SQLite transaction each) {t_append:8.2f} s")
    print(f"verify the whole log                 {t_verify:8.2f} s")
    print(f"baseline: SHA-256 of every entry      {t_hash:8.3f} s")
    print(f"verify / baseline: {t_verify / t_hash:.1f}x")


if __name__ == "__main__":
    main()
