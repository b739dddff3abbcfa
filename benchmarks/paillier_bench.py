"""Benchmark of the packed, DJN-accelerated Paillier sum against plain ``phe``, value by value.

One run measures, on the same key size, node vectors and machine:

- **phe** (the baseline): every node encrypts its values one by one with
  ``phe.PaillierPublicKey.encrypt``, the coordinator adds the nodes' ciphertexts
  position by position, the analyst decrypts each sum with ``phe``'s private key.
  Only a sample of values is run (``--phe-sample`` per node, every node); the
  per-value times are scaled to ``--nodes`` x ``--values``.
- **ours** (``federation.protocols.he.paillier``): each node masks its values with
  the zero-sum masks (timed, but outside the Paillier comparison), fills its
  obfuscator pool (fixed-base table + DJN obfuscators, timed separately) and
  encrypts; the coordinator aggregates the bundles; the analyst decrypts. Each
  node has its own :class:`PaillierScheme` (own table and pool), as in its own
  process.

Reported for ours twice: **pool excluded** (pools filled before the timed
encryption, as a node does while idle) and **pool included** (table + pool fill
counted in the node's encryption time). Two totals, for phe and ours alike:

- **critical path** = the slowest node's encryption (nodes encrypt in parallel on
  their own machines) + the coordinator's aggregation + the analyst's decryption
  (wall clock; ours decrypts with all cores, phe single-threaded as it ships);
- **CPU-serial** = every node's encryption added up + aggregation + decryption on
  one thread (the total compute, as if one core did everything).

The ratio is phe's time over ours for the same work (``nodes x values`` values
summed), i.e. how many times more values per second end to end. Wire size is
bytes per value in a node's upload (ours: the bundle, header included; phe: one
ciphertext below ``n**2`` per value). The decrypted sums are checked against
Python-int sums of the masked vectors and, through the ring, against the exact
signed sums of the raw values.

Usage::

    python benchmarks/paillier_bench.py                  # 10 nodes x 1e5 values, 2048 bits
    python benchmarks/paillier_bench.py --quick          # 10 nodes x 1e4 values
    python benchmarks/paillier_bench.py --bits 3072 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np
import phe

from federation.crypto.keys import X25519KeyPair
from federation.protocols.he import SumSpec, mask_values
from federation.protocols.he.paillier import PaillierPreset, PaillierScheme, PaillierSecretKey

Row = dict[str, Any]
clock = time.perf_counter


def _node_values(nodes: int, values: int) -> list[np.ndarray]:
    """Signed 32-bit fixed-point values, deterministic per node."""
    return [
        np.random.default_rng(7919 * i + values).integers(
            -(2**31) + 1, 2**31, size=values, dtype=np.int64
        )
        for i in range(nodes)
    ]


def _mask(raw: list[np.ndarray], spec: SumSpec) -> tuple[list[np.ndarray], float]:
    """Each node's values plus its zero-sum mask (the real X25519/HKDF/AES-CTR masks)."""
    keys = [X25519KeyPair.generate() for _ in raw]
    public = {i: k.public_bytes for i, k in enumerate(keys)}
    out, spent = [], 0.0
    for i, v in enumerate(raw):
        peers = {j: pk for j, pk in public.items() if j != i}
        start = clock()
        out.append(mask_values(v, spec, i, keys[i], peers))
        spent = max(spent, clock() - start)
    return out, spent


def _factors(key: PaillierSecretKey) -> tuple[int, int]:
    data = key.export_private(unprotected=True)
    half = (len(data) - 7) // 2
    return int.from_bytes(data[7 : 7 + half], "big"), int.from_bytes(data[7 + half :], "big")


def run_phe(key: PaillierSecretKey, masked: list[np.ndarray], spec: SumSpec, sample: int) -> Row:
    """Time phe on ``sample`` values of every node; per-value times scaled to the full job."""
    p, q = _factors(key)
    public = phe.PaillierPublicKey(p * q)
    private = phe.PaillierPrivateKey(public, p, q)
    nodes = len(masked)
    encrypt: list[float] = []
    ciphertexts = []
    for v in masked:
        start = clock()
        ciphertexts.append([public.encrypt(int(x)) for x in v[:sample]])
        encrypt.append((clock() - start) / sample)
    start = clock()
    sums = list(ciphertexts[0])
    for node in ciphertexts[1:]:
        sums = [a + b for a, b in zip(sums, node, strict=True)]
    add = (clock() - start) / (sample * (nodes - 1)) if nodes > 1 else 0.0
    start = clock()
    plain = [private.decrypt(c) for c in sums]
    decrypt = (clock() - start) / sample
    expected = [sum(int(v[j]) for v in masked) for j in range(sample)]
    if plain != expected:
        raise SystemExit("phe: the decrypted sample sums differ from the plain sums")
    n_values = spec.length
    node_encrypt = max(encrypt) * n_values
    aggregate = add * n_values * (nodes - 1)
    decrypt_all = decrypt * n_values
    return {
        "impl": "phe",
        "sample_per_node": sample,
        "encrypt_us_per_value": round(statistics.median(encrypt) * 1e6, 1),
        "add_us_per_value": round(add * 1e6, 2),
        "decrypt_us_per_value": round(decrypt * 1e6, 1),
        "node_encrypt_s": node_encrypt,
        "all_nodes_encrypt_s": sum(encrypt) * n_values,
        "aggregate_s": aggregate,
        "decrypt_s": decrypt_all,
        "decrypt_serial_s": decrypt_all,
        "critical_s": node_encrypt + aggregate + decrypt_all,
        "serial_s": sum(encrypt) * n_values + aggregate + decrypt_all,
        "bytes_per_value": (int(public.nsquare).bit_length() + 7) // 8,
    }


def run_ours(key: PaillierSecretKey, masked: list[np.ndarray], spec: SumSpec) -> Row:
    """Each node fills its pool then encrypts; aggregate; decrypt (all cores, then one)."""
    public = key.public_bytes()
    table: list[float] = []
    fill: list[float] = []
    encrypt: list[float] = []
    bundles: list[bytes] = []
    layout = None
    for v in masked:
        node = PaillierScheme()  # one node process: its own key cache, table and pool
        layout = node.layout(public, spec)
        pool = node.obfuscator_pool(public)
        pool.size = max(pool.size, layout.ciphertexts)  # the default (4096) may be too few
        start = clock()
        pool.table()
        table.append(clock() - start)
        start = clock()
        pool.fill(layout.ciphertexts)
        fill.append(clock() - start)
        start = clock()
        bundles.append(node.encrypt(public, v, spec))
        encrypt.append(clock() - start)
        if pool.available:
            raise SystemExit("the pool was not used up: the sizes are wrong")
        del node, pool
    assert layout is not None
    coordinator = PaillierScheme()
    start = clock()
    coordinator.check_public_key(public)
    total = coordinator.aggregate(public, bundles, spec)
    aggregate = clock() - start
    start = clock()
    result = key.decrypt_sum(total, spec)
    decrypt = clock() - start
    start = clock()
    again = key.decrypt_sum(total, spec, workers=1)
    decrypt_serial = clock() - start
    expected = [sum(int(v[j]) for v in masked) % 2**spec.ring_bits for j in range(spec.length)]
    if result.tolist() != expected or again.tolist() != expected:
        raise SystemExit("ours: the decrypted sums differ from the plain sums")
    precompute = [t + f for t, f in zip(table, fill, strict=True)]
    with_pool = [e + p for e, p in zip(encrypt, precompute, strict=True)]
    return {
        "impl": "ours",
        "slots": layout.slots,
        "ciphertexts_per_node": layout.ciphertexts,
        "decrypt_workers": len(os.sched_getaffinity(0)),
        "table_s": max(table),
        "fill_s": max(fill),
        "fill_us_per_obfuscator": round(statistics.median(fill) / layout.ciphertexts * 1e6, 1),
        "node_encrypt_s": max(encrypt),
        "all_nodes_encrypt_s": sum(encrypt),
        "node_encrypt_with_pool_s": max(with_pool),
        "all_nodes_encrypt_with_pool_s": sum(with_pool),
        "aggregate_s": aggregate,
        "decrypt_s": decrypt,
        "decrypt_serial_s": decrypt_serial,
        "critical_s": max(encrypt) + aggregate + decrypt,
        "serial_s": sum(encrypt) + aggregate + decrypt_serial,
        "critical_with_pool_s": max(with_pool) + aggregate + decrypt,
        "serial_with_pool_s": sum(with_pool) + aggregate + decrypt_serial,
        "bundle_bytes": len(bundles[0]),
        "bytes_per_value": len(bundles[0]) / spec.length,
        "result": result,
    }


def _check_signed(result: np.ndarray, raw: list[np.ndarray], spec: SumSpec) -> None:
    """The ring sums, read in two's complement, are the exact signed sums of the raw values."""
    half, ring = 2 ** (spec.ring_bits - 1), 2**spec.ring_bits
    got = [int(t) - ring if int(t) >= half else int(t) for t in result]
    if got != [sum(int(v[j]) for v in raw) for j in range(spec.length)]:
        raise SystemExit("the decrypted sums differ from the signed sums of the raw values")


def _fmt(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds < 1000 else f"{seconds:,.0f} s"


def report(args: argparse.Namespace, phe_row: Row, ours: Row, extra: Row) -> None:
    """Print the markdown tables."""
    nodes, values = args.nodes, args.values
    total = nodes * values
    print(
        f"\n### Paillier sum: {nodes} nodes x {values:.0e} values, {args.bits}-bit key, "
        f"ring_bits={extra['ring_bits']} ({ours['slots']} values a ciphertext, "
        f"{ours['ciphertexts_per_node']} ciphertexts a node)\n"
    )
    print("| step | phe, value by value (scaled) | ours, pool excluded | ours, pool included |")
    print("|---|---:|---:|---:|")
    rows = [
        ("one node's encryption (slowest)", "node_encrypt_s", "node_encrypt_with_pool_s"),
        ("all nodes' encryption (CPU)", "all_nodes_encrypt_s", "all_nodes_encrypt_with_pool_s"),
        ("coordinator aggregate", "aggregate_s", "aggregate_s"),
        (f"analyst decrypt ({ours['decrypt_workers']} threads; phe 1)", "decrypt_s", "decrypt_s"),
        ("analyst decrypt (1 thread)", "decrypt_serial_s", "decrypt_serial_s"),
        ("**critical path**", "critical_s", "critical_with_pool_s"),
        ("**CPU-serial total**", "serial_s", "serial_with_pool_s"),
    ]
    for label, excluded, included in rows:
        print(
            f"| {label} | {_fmt(phe_row[excluded])} | {_fmt(ours[excluded])} "
            f"| {_fmt(ours[included])} |"
        )
    for label, key_phe, key_ex, key_in in (
        ("critical path", "critical_s", "critical_s", "critical_with_pool_s"),
        ("CPU-serial", "serial_s", "serial_s", "serial_with_pool_s"),
    ):
        print(
            f"| values/s, {label} | {total / phe_row[key_phe]:,.0f} "
            f"| {total / ours[key_ex]:,.0f} | {total / ours[key_in]:,.0f} |"
        )
        print(
            f"| **speed-up vs phe, {label}** | 1x | **{phe_row[key_phe] / ours[key_ex]:,.0f}x** "
            f"| **{phe_row[key_phe] / ours[key_in]:,.0f}x** |"
        )
    print(
        f"| wire bytes per value | {phe_row['bytes_per_value']} "
        f"| {ours['bytes_per_value']:.2f} | {ours['bytes_per_value']:.2f} |"
    )
    print(
        f"\nPer node, outside the pool-excluded path: fixed-base table {_fmt(ours['table_s'])}, "
        f"pool fill {_fmt(ours['fill_s'])} ({ours['ciphertexts_per_node']} obfuscators, "
        f"{ours['fill_us_per_obfuscator']} us each); zero-sum masking "
        f"{_fmt(extra['mask_s'])} (same for any scheme, not counted). Key generation "
        f"{_fmt(extra['keygen_s'])}. phe per value: encrypt {phe_row['encrypt_us_per_value']} us, "
        f"add {phe_row['add_us_per_value']} us, decrypt {phe_row['decrypt_us_per_value']} us "
        f"(sample of {phe_row['sample_per_node']} values a node, all {nodes} nodes)."
    )
    print(
        "Sums verified: ours against Python-int sums of the masked vectors and the exact "
        f"signed sums of the raw values; phe on its sample. Targets (>= 100x, <= 16 B/value): "
        f"{'met' if extra['targets_met'] else 'NOT met'}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1e4 values a node (smoke run)")
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--values", type=int, help="values a node (default 1e5; 1e4 with --quick)")
    parser.add_argument("--bits", type=int, default=2048, choices=[2048, 3072])
    parser.add_argument(
        "--phe-sample", type=int, help="values a node encrypted with phe (default 20; 5 quick)"
    )
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args()
    args.values = args.values or (10**4 if args.quick else 10**5)
    sample = min(args.values, args.phe_sample or (5 if args.quick else 20))

    start = clock()
    key = PaillierSecretKey.generate(PaillierPreset.for_bits(args.bits))
    keygen = clock() - start
    spec = SumSpec.for_signed_values("bench-paillier", args.values, 32, args.nodes)
    raw = _node_values(args.nodes, args.values)
    masked, mask_s = _mask(raw, spec)

    phe_row = run_phe(key, masked, spec, sample)
    ours = run_ours(key, masked, spec)
    _check_signed(ours.pop("result"), raw, spec)
    targets = (
        min(
            phe_row["critical_s"] / ours["critical_with_pool_s"],
            phe_row["serial_s"] / ours["serial_with_pool_s"],
        )
        >= 100
        and ours["bytes_per_value"] <= 16
    )
    extra = {
        "ring_bits": spec.ring_bits,
        "keygen_s": keygen,
        "mask_s": mask_s,
        "targets_met": targets,
    }
    report(args, phe_row, ours, extra)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(
                {"args": vars(args), "phe": phe_row, "ours": ours, "extra": extra}, out, indent=1
            )


if __name__ == "__main__":
    main()
