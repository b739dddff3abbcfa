"""Benchmark of SecAgg+ (federation.protocols.secagg) against a plain sum and Flower's SecAgg+.

Runs the real protocol in one process (no network): every node's state machine and
the coordinator's, with the real key agreement, Shamir sharing, AEAD and AES-CTR
masks, and checks that the unmasked sum equals the plain numpy sum of the same
vectors. Times, per (n, D):

- plain: the plain numpy sum of the n input vectors (in place, as the coordinator
  sums masked inputs), measured in the same run;
- per node (median): key generation, ``share_keys`` (key agreement + Shamir + AEAD),
  ``mask_input`` (PRG masks); the sum of all nodes' ``mask_input`` (total CPU);
- coordinator: summing the masked inputs as they arrive, and unmasking (receiving
  the unmask responses, Shamir recovery, removing the masks);
- critical path = one node's masking (nodes mask in parallel on their own machines)
  + the coordinator's unmasking, and the end-to-end path that adds the summing.

Flower's SecAgg+ (``flwr.common.secure_aggregation`` helpers, called exactly as
Flower's own ``secaggplus_mod`` and ``SecAggPlusWorkflow`` call them) is timed on the
same n, D, k and t if ``flwr`` is importable here, or in another interpreter given
with ``--flower-python`` (Flower pins protobuf < 7, which federation's generated code
cannot use, so it lives in its own venv)::

    python3 -m venv /tmp/flwr-venv && /tmp/flwr-venv/bin/pip install flwr numpy cryptography
    python benchmarks/secagg_bench.py --quick --flower-python /tmp/flwr-venv/bin/python

Usage::

    python benchmarks/secagg_bench.py                    # full grid n x D
    python benchmarks/secagg_bench.py --quick            # n in {10, 100}, D in {1e4, 1e5}
    python benchmarks/secagg_bench.py --n 100 --d 100000 --drop 0.05
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

FULL_N = (10, 100, 1000)
FULL_D = (10**4, 10**5, 10**6)
QUICK_N = (10, 100)
QUICK_D = (10**4, 10**5)
BATCH_BYTES = 1 << 30
"""Inputs up to this size are kept in memory (batch mode); larger ones are streamed."""

Row = dict[str, Any]


def _inputs(n: int, d: int, dtype: type = np.uint64, high: int = 2**64) -> Iterator[Any]:
    """Yield the n input vectors (deterministic per slot, independent of the mode)."""
    for i in range(n):
        rng = np.random.default_rng(1_000_003 * i + d)
        yield rng.integers(0, high, size=d, dtype=dtype)


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


# --------------------------------------------------------------------------- ours


def run_ours(n: int, d: int, *, repeat: int, drop: float) -> Row:
    """Run SecAgg+ ``repeat`` times (once if n * d > 1e8); keep each timing's minimum."""
    runs = [_run_ours_once(n, d, drop=drop) for _ in range(repeat if n * d <= 10**8 else 1)]
    best = dict(runs[0])
    for key in runs[0]:
        if key.endswith("_ms"):
            best[key] = min(r[key] for r in runs)
    best["critical_ms"] = _ms((best["mask_ms"] + best["coord_unmask_ms"]) / 1e3)
    best["end_to_end_ms"] = _ms(
        (best["mask_ms"] + best["coord_sum_ms"] + best["coord_unmask_ms"]) / 1e3
    )
    best["runs"] = len(runs)
    return best


def _run_ours_once(n: int, d: int, *, drop: float) -> Row:
    """Run SecAgg+ once for n nodes and vectors of length d; return the timings."""
    from federation.protocols.secagg import (
        CoordinatorSecAgg,
        KeyRoster,
        NodeSecAgg,
        ShareDelivery,
        UnmaskRequest,
        make_params,
    )

    clock = time.perf_counter
    params = make_params(f"bench-{n}-{d}", n, d)
    k = len(params.neighbours[0])
    batch = n * d * 8 <= BATCH_BYTES
    # Who drops before uploading (a deterministic spread of slots).
    step = round(1 / drop) if drop > 0 else 0
    dropped = set(range(0, n, step)) if step else set()

    keygen: list[float] = []
    nodes = []
    coordinator = CoordinatorSecAgg(params)
    for i in range(n):
        start = clock()
        node = NodeSecAgg(params, i)
        advert = node.advertise_keys()
        keygen.append(clock() - start)
        nodes.append(node)
        coordinator.receive(advert)
    start = clock()
    rosters = [r for r in coordinator.advance() if isinstance(r, KeyRoster)]
    relay = clock() - start
    share: list[float] = []
    for roster in rosters:
        start = clock()
        bundle = nodes[roster.recipient].share_keys(roster)
        share.append(clock() - start)
        start = clock()
        coordinator.receive(bundle)
        relay += clock() - start
    start = clock()
    deliveries = [d for d in coordinator.advance() if isinstance(d, ShareDelivery)]
    relay += clock() - start

    mask: list[float] = []
    coord_sum = 0.0
    plain = np.zeros(d, dtype=np.uint64)
    plain_time = 0.0
    if batch:
        xs = list(_inputs(n, d))
        acc = np.zeros(d, dtype=np.uint64)
        start = clock()
        for x in xs:
            np.add(acc, x, out=acc)
        plain_time = clock() - start
        masked = []
        for delivery in deliveries:
            u = delivery.recipient
            if u in dropped:
                continue
            start = clock()
            masked.append(nodes[u].mask_input(delivery, xs[u]))
            mask.append(clock() - start)
        for y in masked:
            start = clock()
            coordinator.receive(y)
            coord_sum += clock() - start
        for u, x in enumerate(xs):
            if u not in dropped:
                np.add(plain, x, out=plain)
        del xs, masked
    else:
        # Streamed: each vector is generated, added to the plain sum, masked and
        # received while hot in cache (both sums see the same cache conditions).
        for delivery, x in zip(deliveries, _inputs(n, d), strict=True):
            u = delivery.recipient
            if u in dropped:
                continue
            start = clock()
            np.add(plain, x, out=plain)
            plain_time += clock() - start
            start = clock()
            y = nodes[u].mask_input(delivery, x)
            mask.append(clock() - start)
            start = clock()
            coordinator.receive(y)
            coord_sum += clock() - start
            del y
    start = clock()
    requests = [r for r in coordinator.advance() if isinstance(r, UnmaskRequest)]
    relay += clock() - start
    responses = [nodes[r.recipient].unmask(r) for r in requests]
    start = clock()
    for response in responses:
        coordinator.receive(response)
    coordinator.advance()
    unmask = clock() - start
    result = coordinator.result()
    if not np.array_equal(result.vector, plain):
        raise SystemExit(f"n={n} D={d}: the unmasked sum differs from the plain sum")
    if len(result.contributors) != n - len(dropped):
        raise SystemExit(f"n={n} D={d}: wrong contributors")
    node_mask = statistics.median(mask)
    return {
        "impl": "federation",
        "n": n,
        "d": d,
        "k": k,
        "t": params.threshold,
        "dropped": len(dropped),
        "mode": "batch" if batch else "stream",
        "plain_ms": _ms(plain_time),
        "keygen_ms": _ms(statistics.median(keygen)),
        "share_ms": _ms(statistics.median(share)),
        "mask_ms": _ms(node_mask),
        "mask_total_ms": _ms(sum(mask)),
        "coord_sum_ms": _ms(coord_sum),
        "coord_unmask_ms": _ms(unmask),
        "coord_relay_ms": _ms(relay),
        "critical_ms": _ms(node_mask + unmask),
        "end_to_end_ms": _ms(node_mask + coord_sum + unmask),
    }


def share_breakdown(k: int, t: int) -> Row:
    """Per-node cost of the share round's parts for k neighbours (primitives only)."""
    from federation.crypto.keys import X25519KeyPair, seal, transport_key
    from federation.crypto.prg import Label, derive_key
    from federation.crypto.shamir import split_secret

    own, peers = X25519KeyPair.generate(), [X25519KeyPair.generate() for _ in range(k)]
    reps = 20
    start = time.perf_counter()
    for _ in range(reps):
        for p in peers:
            derive_key(own.exchange(p.public_bytes), Label.PAIRWISE_MASK, "job", 0, 1)
            own.exchange(p.public_bytes)
    agree = (time.perf_counter() - start) / reps
    secret = os.urandom(32)
    start = time.perf_counter()
    for _ in range(reps):
        split_secret(secret, t, range(1, k + 2))
        split_secret(secret, t, range(1, k + 2))
    shamir = (time.perf_counter() - start) / reps
    key = transport_key(secret, job_id="job", sender=0, recipient=1)
    start = time.perf_counter()
    for _ in range(reps):
        for _ in range(k):
            seal(key, bytes(140), job_id="job", sender=0, recipient=1)
    aead = (time.perf_counter() - start) / reps
    return {"k": k, "t": t, "agree_ms": _ms(agree), "shamir_ms": _ms(shamir), "seal_ms": _ms(aead)}


# --------------------------------------------------------------------------- Flower


def run_flower(n: int, d: int, k: int, t: int, *, sample: int) -> Row:
    """Time Flower's SecAgg+ helpers on the same pipeline (nodes beyond ``sample`` not masked)."""
    # Imported by name so that this file type-checks without flwr installed.
    shamir = importlib.import_module("flwr.common.secure_aggregation.crypto.shamir")
    symmetric = importlib.import_module(
        "flwr.common.secure_aggregation.crypto.symmetric_encryption"
    )
    arithmetic = importlib.import_module("flwr.common.secure_aggregation.ndarrays_arithmetic")
    utils = importlib.import_module("flwr.common.secure_aggregation.secaggplus_utils")
    asymmetric = importlib.import_module("flwr.supercore.primitives.asymmetric")
    create_shares, combine_shares = shamir.create_shares, shamir.combine_shares
    encrypt, decrypt = symmetric.encrypt, symmetric.decrypt
    generate_shared_key = symmetric.generate_shared_key
    parameters_addition = arithmetic.parameters_addition
    parameters_subtraction = arithmetic.parameters_subtraction
    parameters_mod = arithmetic.parameters_mod
    pseudo_rand_gen = utils.pseudo_rand_gen
    share_keys_plaintext_concat = utils.share_keys_plaintext_concat
    share_keys_plaintext_separate = utils.share_keys_plaintext_separate
    generate_key_pairs = asymmetric.generate_key_pairs
    private_key_to_bytes = asymmetric.private_key_to_bytes
    public_key_to_bytes = asymmetric.public_key_to_bytes
    bytes_to_private_key = asymmetric.bytes_to_private_key
    bytes_to_public_key = asymmetric.bytes_to_public_key

    mod_range = 2**32  # Flower's default and maximum modulus
    dims = [(d,)]
    # Ring neighbourhoods of the same size k as ours.
    neighbours = [
        sorted({(u + s) % n for s in range(-(k // 2), k // 2 + 1)} - {u})
        if k < n - 1
        else [v for v in range(n) if v != u]
        for u in range(n)
    ]
    masked_nodes = min(n, sample)
    keygen: list[float] = []
    sk1, pk1, sk2, pk2 = [], [], [], []
    for _ in range(n):
        start = time.perf_counter()
        a, pa = generate_key_pairs()
        b, pb = generate_key_pairs()
        sk1.append(private_key_to_bytes(a))
        pk1.append(public_key_to_bytes(pa))
        sk2.append(private_key_to_bytes(b))
        pk2.append(public_key_to_bytes(pb))
        keygen.append(time.perf_counter() - start)
    seeds = [os.urandom(32) for _ in range(n)]
    # Share round: node u's group is u + neighbours; share index = rank in the group.
    seed_share: dict[tuple[int, int], bytes] = {}  # (owner, holder) -> share
    inbox: dict[int, dict[int, bytes]] = {u: {} for u in range(n)}
    share: list[float] = []
    for u in range(n):
        group = sorted([u, *neighbours[u]])
        start = time.perf_counter()
        b_shares = create_shares(seeds[u], t, k + 1)
        if u < masked_nodes:
            sk_shares = create_shares(sk1[u], t, k + 1)
            for idx, v in enumerate(group):
                if v == u:
                    continue
                key = generate_shared_key(bytes_to_private_key(sk2[u]), bytes_to_public_key(pk2[v]))
                plaintext = share_keys_plaintext_concat(u, v, b_shares[idx], sk_shares[idx])
                inbox[v][u] = encrypt(key, plaintext)
            share.append(time.perf_counter() - start)
        for idx, v in enumerate(group):
            seed_share[(u, v)] = b_shares[idx]
    # Masking round (as secaggplus_mod._collect_masked_vectors).
    mask: list[float] = []
    plain: list[Any] = [np.zeros(d, dtype=np.int64)]
    masked_sum: list[Any] | None = None
    coord_sum = 0.0
    for u, x in enumerate(_inputs(n, d, np.int64, mod_range)):
        vec = [x]
        plain = parameters_mod(parameters_addition(plain, vec), mod_range)
        if u < masked_nodes:
            start = time.perf_counter()
            for src, ct in inbox[u].items():
                key = generate_shared_key(
                    bytes_to_private_key(sk2[u]), bytes_to_public_key(pk2[src])
                )
                share_keys_plaintext_separate(decrypt(key, ct))
            q = parameters_addition(vec, pseudo_rand_gen(seeds[u], mod_range, dims))
            for v in neighbours[u]:
                key = generate_shared_key(bytes_to_private_key(sk1[u]), bytes_to_public_key(pk1[v]))
                pairwise = pseudo_rand_gen(key, mod_range, dims)
                q = (
                    parameters_addition(q, pairwise)
                    if u > v
                    else parameters_subtraction(q, pairwise)
                )
            q = parameters_mod(q, mod_range)
            mask.append(time.perf_counter() - start)
        else:
            q = vec  # not timed; stands in for the masked vector in the coordinator's sum
        start = time.perf_counter()
        masked_sum = q if masked_sum is None else parameters_addition(masked_sum, q)
        coord_sum += time.perf_counter() - start
    start = time.perf_counter()
    masked_sum = parameters_mod(masked_sum, mod_range)
    coord_sum += time.perf_counter() - start
    # Unmask (as SecAggPlusWorkflow.unmask_stage, no dropouts): t shares per seed.
    start = time.perf_counter()
    for u in range(n):
        holders = sorted([u, *neighbours[u]])[:t]
        secret = combine_shares([seed_share[(u, h)] for h in holders])
        masked_sum = parameters_subtraction(masked_sum, pseudo_rand_gen(secret, mod_range, dims))
    total = parameters_mod(masked_sum, mod_range)
    unmask = time.perf_counter() - start
    verified = masked_nodes == n and bool(np.array_equal(total[0], plain[0]))
    if masked_nodes == n and not verified:
        raise SystemExit(f"Flower n={n} D={d}: the unmasked sum differs from the plain sum")
    node_mask = statistics.median(mask)
    return {
        "impl": "flower",
        "n": n,
        "d": d,
        "k": k,
        "t": t,
        "masked_nodes": masked_nodes,
        "verified": verified,
        "keygen_ms": _ms(statistics.median(keygen)),
        "share_ms": _ms(statistics.median(share)),
        "mask_ms": _ms(node_mask),
        "mask_total_ms": _ms(node_mask * n),
        "coord_sum_ms": _ms(coord_sum),
        "coord_unmask_ms": _ms(unmask),
        "critical_ms": _ms(node_mask + unmask),
        "end_to_end_ms": _ms(node_mask + coord_sum + unmask),
    }


def flower_rows(cells: list[tuple[int, int, int, int]], args: argparse.Namespace) -> list[Row]:
    """Run the Flower cells here if flwr imports, else in ``--flower-python``; [] if neither."""
    if importlib.util.find_spec("flwr") is not None:
        return [run_flower(n, d, k, t, sample=args.flower_sample) for n, d, k, t in cells]
    if not args.flower_python:
        print(
            "\nflwr is not importable: Flower comparison skipped. To include it:\n"
            "  python3 -m venv /tmp/flwr-venv && "
            "/tmp/flwr-venv/bin/pip install flwr numpy cryptography\n"
            "  and pass --flower-python /tmp/flwr-venv/bin/python"
        )
        return []
    spec = json.dumps({"cells": cells, "sample": args.flower_sample})
    done = subprocess.run(
        [args.flower_python, __file__, "--flower-worker", spec],
        check=True,
        capture_output=True,
        text=True,
    )
    return list(json.loads(done.stdout))


# --------------------------------------------------------------------------- report


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def report(ours: list[Row], flower: list[Row], breakdown: list[Row]) -> None:
    """Print markdown tables."""
    print("\n### federation SecAgg+ (ms; ratios against the plain sum of the same vectors)\n")
    print(
        "| n | D | k | t | mode | plain sum | node mask | coord sum | coord unmask "
        "| critical (mask+unmask) | ratio | end-to-end | ratio | all nodes' masking | ratio |"
    )
    print("|" + "---|" * 15)
    for r in ours:
        print(
            f"| {r['n']} | {r['d']:.0e} | {r['k']} | {r['t']} | {r['mode']} | {r['plain_ms']} "
            f"| {r['mask_ms']} | {r['coord_sum_ms']} | {r['coord_unmask_ms']} "
            f"| {r['critical_ms']} | {_ratio(r['critical_ms'], r['plain_ms'])}x "
            f"| {r['end_to_end_ms']} | {_ratio(r['end_to_end_ms'], r['plain_ms'])}x "
            f"| {r['mask_total_ms']} | {_ratio(r['mask_total_ms'], r['plain_ms'])}x |"
        )
    print("\n### Per node, outside the masking path (ms)\n")
    print("| n | k | t | keygen | share_keys (measured in the run) |")
    print("|---|---|---|---|---|")
    seen = set()
    for r in ours:
        if r["n"] not in seen:
            seen.add(r["n"])
            print(f"| {r['n']} | {r['k']} | {r['t']} | {r['keygen_ms']} | {r['share_ms']} |")
    if breakdown:
        print("\nshare_keys parts (primitives alone, per node):\n")
        print("| k | t | key agreement (2k X25519 + HKDF) | Shamir (2 secrets) | AEAD (k seals) |")
        print("|---|---|---|---|---|")
        for b in breakdown:
            print(f"| {b['k']} | {b['t']} | {b['agree_ms']} | {b['shamir_ms']} | {b['seal_ms']} |")
    if flower:
        print("\n### Flower SecAgg+ helpers on the same n, D, k, t (ms)\n")
        print(
            "| n | D | nodes masked | node mask | coord unmask | critical | ours | speedup "
            "| node share_keys | ours | speedup |"
        )
        print("|" + "---|" * 11)
        by_cell = {(r["n"], r["d"]): r for r in ours}
        for f in flower:
            o = by_cell[(f["n"], f["d"])]
            masked = f"{f['masked_nodes']}" + (" (sum verified)" if f["verified"] else "")
            print(
                f"| {f['n']} | {f['d']:.0e} | {masked} | {f['mask_ms']} | {f['coord_unmask_ms']} "
                f"| {f['critical_ms']} | {o['critical_ms']} "
                f"| {_ratio(f['critical_ms'], o['critical_ms'])}x | {f['share_ms']} "
                f"| {o['share_ms']} | {_ratio(f['share_ms'], o['share_ms'])}x |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n in {10, 100}, D in {1e4, 1e5}")
    parser.add_argument("--n", type=int, nargs="+", help="numbers of nodes")
    parser.add_argument("--d", type=int, nargs="+", help="vector lengths")
    parser.add_argument(
        "--repeat", type=int, default=5, help="protocol runs per cell (1 if n * D > 1e8)"
    )
    parser.add_argument("--drop", type=float, default=0.0, help="fraction dropping before upload")
    parser.add_argument("--flower-python", help="interpreter with flwr installed")
    parser.add_argument("--flower-sample", type=int, default=100, help="Flower nodes masked")
    parser.add_argument("--no-flower", action="store_true", help="skip the Flower comparison")
    parser.add_argument("--json", help="also write all rows to this file")
    parser.add_argument("--flower-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flower_worker:
        spec = json.loads(args.flower_worker)
        rows = [run_flower(*cell, sample=spec["sample"]) for cell in spec["cells"]]
        json.dump(rows, sys.stdout)
        return
    ns = args.n or (QUICK_N if args.quick else FULL_N)
    ds = args.d or (QUICK_D if args.quick else FULL_D)
    ours: list[Row] = []
    for n in ns:
        for d in ds:
            row = run_ours(n, d, repeat=args.repeat, drop=args.drop)
            print(json.dumps(row), file=sys.stderr)
            ours.append(row)
    breakdown = [share_breakdown(k, t) for k, t in sorted({(r["k"], r["t"]) for r in ours})]
    flower: list[Row] = []
    if not args.no_flower:
        cells = [(r["n"], r["d"], r["k"], r["t"]) for r in ours]
        flower = flower_rows(cells, args)
    report(ours, flower, breakdown)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"ours": ours, "flower": flower, "breakdown": breakdown}, out, indent=1)


if __name__ == "__main__":
    main()
