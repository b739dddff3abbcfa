"""Benchmark of CKKS float sums (federation.protocols.he.ckks) against baselines in the same run.

n nodes each encrypt a float64 vector of length D (values in [-1, 1]); the
coordinator adds the n bundles (or weights and adds them); the analyst decrypts and
the result is checked against the numpy sum within the stated error bound
(``float_error_bound``). Everything runs on one thread: every TenSEAL context is
made with ``n_threads=1``, so "per second" figures are per core. Times:

- encrypt: one node's ``encrypt_floats`` (encode, encrypt, serialize), median over
  nodes; reported as floats per second per core;
- wire: bytes of one node's bundle per value;
- coordinator: parsing the bundles (TenSEAL deserialization and validation) apart
  from the additions (and weightings), and the whole ``aggregate_floats`` call;
- decrypt: the analyst's ``decrypt_floats``.

Baselines measured in the same run: the plain numpy sum of the same vectors, and
TenSEAL with its tutorial parameters (N = 8192, chain [60, 40, 40, 60], scale
2**40) and with N = 2048, chain [40, 14] (the smallest chain TenSEAL accepts; less
precise), driven directly (encrypt + serialize per node, deserialize + add).

Usage::

    python benchmarks/ckks_bench.py              # 10 nodes x 1e5 floats
    python benchmarks/ckks_bench.py --quick      # 3 nodes x 2e4 floats
    python benchmarks/ckks_bench.py --n 10 --d 100000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import tenseal as ts

from federation.crypto.ckks import CkksPreset
from federation.protocols.he.ckks import CKKS, CkksSecretKey, FloatSumSpec, float_error_bound
from federation.protocols.he.ckks_format import FloatLayout, read_bundle

Row = dict[str, Any]
clock = time.perf_counter


def _inputs(n: int, d: int) -> list[np.ndarray]:
    return [np.random.default_rng(1_000_003 * i + d).uniform(-1, 1, d) for i in range(n)]


def run_ours(n: int, d: int, *, weighted: bool) -> Row:
    """Our scheme, end to end, with the precision check."""
    preset = CkksPreset.CKKS_4096_WEIGHTED if weighted else CkksPreset.CKKS_4096_SUM
    start = clock()
    key = CkksSecretKey.generate(preset)
    keygen = clock() - start
    pk = key.public_bytes()
    spec = FloatSumSpec("bench", d, 1.0, n, weight_bound=2.0 if weighted else None)
    xs = _inputs(n, d)
    weights = [1.0 + i / n for i in range(n)] if weighted else None
    CKKS.check_public_key(pk)  # parse and cache the context once, as a node does per job
    bundles, enc = [], []
    for x in xs:
        start = clock()
        bundles.append(CKKS.encrypt_floats(pk, x, spec))
        enc.append(clock() - start)

    # Coordinator: parsing alone, then the whole aggregation (parse + add + serialize).
    layout = FloatLayout.for_spec(preset, spec)
    header = layout.header(spec, rescaled=False)
    fp = key.fingerprint
    context = ts.context_from(pk[10:], n_threads=1)
    start = clock()
    vectors = [
        [
            ts.ckks_vector_from(context, c)
            for c in read_bundle(b, fp, preset, header, n, what="b").ciphertexts
        ]
        for b in bundles
    ]
    parse = clock() - start
    start = clock()
    for position in range(len(vectors[0])):
        total = vectors[0][position]
        for i in range(1, n):
            total = total + vectors[i][position]
    add = clock() - start
    start = clock()
    aggregate = CKKS.aggregate_floats(pk, bundles, spec, weights)
    aggregate_all = clock() - start

    start = clock()
    got = key.decrypt_floats(aggregate, spec, weighted=weighted)
    dec = clock() - start
    want = sum(w * x for w, x in zip(weights, xs, strict=True)) if weights else np.sum(xs, axis=0)
    error = float(np.max(np.abs(got - want)))
    bound = float_error_bound(preset, spec)
    if error > bound:
        raise SystemExit(f"precision check failed: error {error:.3g} > stated bound {bound:.3g}")
    per_node = statistics.median(enc)
    return {
        "scheme": f"ours {preset.name}" + (" weighted" if weighted else ""),
        "n": n,
        "d": d,
        "keygen_ms": keygen * 1e3,
        "public_key_bytes": len(pk),
        "encrypt_ms": per_node * 1e3,
        "floats_per_s": d / per_node,
        "bytes_per_value": len(bundles[0]) / d,
        "coord_parse_ms": parse * 1e3,
        "coord_add_ms": add * 1e3,
        "coord_aggregate_ms": aggregate_all * 1e3,
        "decrypt_ms": dec * 1e3,
        "max_error": error,
        "stated_bound": bound,
    }


def run_tenseal(n: int, d: int, degree: int, bits: list[int], scale_bits: int) -> Row:
    """TenSEAL driven directly with given parameters (no bundle format, no checks).

    Encrypts through the same C++ constructor as ours, so the ratios isolate the
    parameters (the Python ``ts.ckks_vector`` wrapper alone costs about 40% more).
    """
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, degree, coeff_mod_bit_sizes=bits, n_threads=1)
    public = ts.context_from(
        ctx.serialize(save_public_key=True, save_secret_key=False, save_relin_keys=False),
        n_threads=1,
    )
    slots = degree // 2
    xs = _inputs(n, d)
    blobs, enc = [], []
    for x in xs:
        start = clock()
        blobs.append(
            [
                ts._ts_cpp.CKKSVector(
                    public.data, x[s : s + slots].tolist(), 2.0**scale_bits
                ).serialize()
                for s in range(0, d, slots)
            ]
        )
        enc.append(clock() - start)
    start = clock()
    vectors = [[ts.ckks_vector_from(public, b) for b in node] for node in blobs]
    parse = clock() - start
    start = clock()
    totals = []
    for position in range(len(vectors[0])):
        total = vectors[0][position]
        for i in range(1, n):
            total = total + vectors[i][position]
        totals.append(total)
    add = clock() - start
    start = clock()
    got = np.concatenate(
        [np.array(ts.ckks_vector_from(ctx, t.serialize()).decrypt()) for t in totals]
    )
    dec = clock() - start
    per_node = statistics.median(enc)
    return {
        "scheme": f"tenseal N={degree} {bits}",
        "n": n,
        "d": d,
        "encrypt_ms": per_node * 1e3,
        "floats_per_s": d / per_node,
        "bytes_per_value": sum(len(b) for b in blobs[0]) / d,
        "coord_parse_ms": parse * 1e3,
        "coord_add_ms": add * 1e3,
        "decrypt_ms": dec * 1e3,
        "max_error": float(np.max(np.abs(got - np.sum(xs, axis=0)))),
    }


def run_numpy(n: int, d: int) -> Row:
    xs = _inputs(n, d)
    acc = np.zeros(d)
    start = clock()
    for x in xs:
        np.add(acc, x, out=acc)
    return {"scheme": "plain numpy sum", "n": n, "d": d, "coord_add_ms": (clock() - start) * 1e3}


COLUMNS = [
    ("scheme", "{:<34}"),
    ("floats_per_s", "{:>12.3g}"),
    ("bytes_per_value", "{:>8.1f}"),
    ("encrypt_ms", "{:>10.1f}"),
    ("coord_parse_ms", "{:>10.1f}"),
    ("coord_add_ms", "{:>10.2f}"),
    ("coord_aggregate_ms", "{:>10.1f}"),
    ("decrypt_ms", "{:>10.1f}"),
    ("max_error", "{:>10.2g}"),
    ("stated_bound", "{:>10.2g}"),
]


def _print(rows: list[Row]) -> None:
    heads = ["scheme", "floats/s", "B/value", "enc ms", "parse ms", "add ms", "agg ms",
             "dec ms", "max err", "bound"]  # fmt: skip
    widths = [34, 12, 8, 10, 10, 10, 10, 10, 10, 10]
    print(
        " ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(heads, widths, strict=True))
        )
    )
    for row in rows:
        cells = []
        for (name, fmt), width in zip(COLUMNS, widths, strict=True):
            value = row.get(name)
            cells.append(fmt.format(value) if value is not None else "-".rjust(width))
        print(" ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="nodes (default 10)")
    parser.add_argument("--d", type=int, default=100_000, help="floats per node (default 1e5)")
    parser.add_argument("--quick", action="store_true", help="3 nodes x 2e4 floats")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    n, d = (3, 20_000) if args.quick else (args.n, args.d)
    print(f"CKKS float sums: {n} nodes x {d} floats, one thread")
    ours = run_ours(n, d, weighted=False)
    weighted = run_ours(n, d, weighted=True)
    tutorial = run_tenseal(n, d, 8192, [60, 40, 40, 60], 40)
    small = run_tenseal(n, d, 2048, [40, 14], 33)
    plain = run_numpy(n, d)
    rows = [ours, weighted, tutorial, small, plain]
    _print(rows)
    print()
    print(f"public key: {ours['public_key_bytes']} bytes ({weighted['public_key_bytes']} weighted)")
    speed = ours["floats_per_s"] / tutorial["floats_per_s"]
    size = tutorial["bytes_per_value"] / ours["bytes_per_value"]
    coord = (tutorial["coord_parse_ms"] + tutorial["coord_add_ms"]) / (
        ours["coord_parse_ms"] + ours["coord_add_ms"]
    )
    print(
        f"ours vs tenseal tutorial: encrypt {speed:.2f}x faster, {size:.2f}x fewer bytes, "
        f"coordinator parse+add {coord:.2f}x faster"
    )
    slower = ours["coord_aggregate_ms"] / plain["coord_add_ms"]
    print(f"ours vs plain numpy sum: coordinator aggregate call {slower:.0f}x slower")
    print(
        f"targets: >= 5e5 floats/s/core: {ours['floats_per_s']:.3g} "
        f"({'met' if ours['floats_per_s'] >= 5e5 else 'MISSED'}); <= 40 B/value: "
        f"{ours['bytes_per_value']:.1f} ({'met' if ours['bytes_per_value'] <= 40 else 'MISSED'})"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
