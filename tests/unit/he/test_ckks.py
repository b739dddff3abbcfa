"""CKKS sums: exactness against Python ints, float precision, and the negative matrix."""

from __future__ import annotations

import copy
import pickle
import struct

import numpy as np
import pytest
import tenseal as ts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.crypto.ckks import CkksPreset
from federation.errors import ProtocolError
from federation.protocols.he.ckks import (
    CKKS,
    CkksScheme,
    CkksSecretKey,
    FloatSumSpec,
    float_error_bound,
)
from federation.protocols.he.ckks_format import HEADER, ChunkLayout
from federation.protocols.he.registry import generate_secret_key, scheme
from federation.protocols.he.spec import SumSpec

SLOTS = CkksPreset.CKKS_4096_SUM.slots


@pytest.fixture(scope="module")
def key() -> CkksSecretKey:
    return CkksSecretKey.generate()


@pytest.fixture(scope="module")
def other() -> CkksSecretKey:
    return CkksSecretKey.generate()


@pytest.fixture(scope="module")
def wkey() -> CkksSecretKey:
    return CkksSecretKey.generate(CkksPreset.CKKS_4096_WEIGHTED)


def _ring(gen: np.random.Generator, spec: SumSpec) -> np.ndarray:
    return gen.integers(0, 2**spec.ring_bits, spec.length, dtype=np.uint64, endpoint=False)


def _expected(parts: list[np.ndarray], spec: SumSpec) -> list[int]:
    return [sum(int(p[i]) for p in parts) % 2**spec.ring_bits for i in range(spec.length)]


def _run(key: CkksSecretKey, parts: list[np.ndarray], spec: SumSpec) -> list[int]:
    pk = key.public_bytes()
    bundles = [CKKS.encrypt(pk, p, spec) for p in parts]
    return [int(v) for v in key.decrypt_sum(CKKS.aggregate(pk, bundles, spec), spec)]


# ------------------------------------------------------------------ exact integers


def test_registry_names_ckks(key: CkksSecretKey) -> None:
    assert scheme("ckks") is CKKS
    assert isinstance(generate_secret_key("ckks"), CkksSecretKey)
    assert CKKS.check_public_key(key.public_bytes()) == key.fingerprint


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ring_bits=st.integers(1, 64),
    length=st.sampled_from([1, 2, 7, 1000, SLOTS, SLOTS + 1, 2 * SLOTS + 3]),
    parties=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_exact_sums_match_python_ints(
    key: CkksSecretKey, ring_bits: int, length: int, parties: int, seed: int
) -> None:
    spec = SumSpec("job", length, ring_bits, parties)
    gen = np.random.default_rng(seed)
    parts = [_ring(gen, spec) for _ in range(gen.integers(1, parties, endpoint=True))]
    assert _run(key, parts, spec) == _expected(parts, spec)


@pytest.mark.parametrize(
    ("ring_bits", "length", "parties", "fill"),
    [
        (64, 1, 1, "max"),
        (64, 3 * SLOTS + 5, 3, "max"),
        (1, 5, 4, "max"),
        (1, 5, 4, "zero"),
        (52, 2 * SLOTS, 16, "max"),
        (58, 17, 1000, "max"),
        (64, 2, 2, "zero"),
    ],
)
def test_exact_extremes(
    key: CkksSecretKey, ring_bits: int, length: int, parties: int, fill: str
) -> None:
    spec = SumSpec("job", length, ring_bits, parties)
    value = 2**ring_bits - 1 if fill == "max" else 0
    parts = [np.full(length, value, dtype=np.uint64) for _ in range(min(parties, 4))]
    assert _run(key, parts, spec) == _expected(parts, spec)


@pytest.mark.parametrize("parties", [1024, 2**18])
def test_worst_case_noise_at_most_parties_with_maximal_chunks(
    key: CkksSecretKey, parties: int
) -> None:
    # The same ciphertext added `n` times adds its noise coherently (the worst case for
    # the linear bound n * fresh_noise), with every chunk at its maximum.
    n = min(parties, 1024)
    spec = SumSpec("job", 3, 64, parties)
    layout = CKKS.layout(key.public_bytes(), spec)
    assert layout.chunk_bits == 37 - 2 * spec.party_bits
    one = CKKS.encrypt(key.public_bytes(), np.full(3, 2**64 - 1, dtype=np.uint64), spec)
    total = CKKS.aggregate(key.public_bytes(), [one] * n, spec)
    assert key.decrypt_sum(total, spec).tolist() == [n * (2**64 - 1) % 2**64] * 3


def test_chunk_layout_of_the_query_path() -> None:
    preset = CkksPreset.CKKS_4096_SUM
    for parties, chunk_bits in [(3, 33), (10, 29), (1000, 17)]:
        spec = SumSpec.for_signed_values("job", 10, 48, parties)
        layout = ChunkLayout.for_spec(preset, spec)
        assert layout.chunk_bits == chunk_bits
        assert layout.chunks == -(-spec.ring_bits // chunk_bits)
        # The bound the chunk width is derived from, with the margin stated.
        assert parties * preset.fresh_noise / 2**layout.scale_bits <= 0.25
        assert 2 ** (layout.scale_bits + chunk_bits) * parties <= 2**53


def test_too_many_parties_for_exact_sums(key: CkksSecretKey) -> None:
    with pytest.raises(ProtocolError, match="too many"):
        CKKS.layout(key.public_bytes(), SumSpec("job", 1, 64, 2**19 + 1))


@pytest.mark.parametrize(
    "values",
    [
        np.array([1, 2, 3], dtype=np.int64),
        np.array([1.0, 2.0, 3.0]),
        [1, 2, 3],
        np.array([1, 2], dtype=np.uint64),
        np.array([[1, 2, 3]], dtype=np.uint64),
        np.array([1, 2, 2**16], dtype=np.uint64),
    ],
)
def test_encrypt_rejects_bad_values(key: CkksSecretKey, values: object) -> None:
    with pytest.raises(ProtocolError):
        CKKS.encrypt(key.public_bytes(), values, SumSpec("job", 3, 16, 2))  # type: ignore[arg-type]


# ------------------------------------------------------------------ bundles


@pytest.fixture(scope="module")
def bundle(key: CkksSecretKey) -> tuple[SumSpec, bytes]:
    spec = SumSpec("job", SLOTS + 10, 40, 1)
    return spec, CKKS.encrypt(key.public_bytes(), np.arange(spec.length, dtype=np.uint64), spec)


def test_single_bundle_decrypts(key: CkksSecretKey, bundle: tuple[SumSpec, bytes]) -> None:
    spec, data = bundle
    assert key.decrypt_sum(data, spec).tolist() == list(range(spec.length))


def test_wrong_and_stale_keys(
    key: CkksSecretKey, other: CkksSecretKey, bundle: tuple[SumSpec, bytes]
) -> None:
    spec, data = bundle
    with pytest.raises(ProtocolError, match="stale or wrong key"):
        CKKS.aggregate(other.public_bytes(), [data], spec)
    with pytest.raises(ProtocolError, match="stale or wrong key"):
        other.decrypt_sum(data, spec)


@pytest.mark.parametrize(
    "spec",
    [SumSpec("job2", SLOTS + 10, 40, 1), SumSpec("job", SLOTS + 11, 40, 1)],
    ids=["job id", "length"],
)
def test_wrong_spec(key: CkksSecretKey, bundle: tuple[SumSpec, bytes], spec: SumSpec) -> None:
    with pytest.raises(ProtocolError, match="different sum"):
        CKKS.aggregate(key.public_bytes(), [bundle[1]], spec)


def test_every_header_flip_is_refused(key: CkksSecretKey, bundle: tuple[SumSpec, bytes]) -> None:
    spec, data = bundle
    for i in range(HEADER.size):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(ProtocolError):
            CKKS.aggregate(key.public_bytes(), [bytes(bad)], spec)


def test_framing_flips_truncation_and_padding(
    key: CkksSecretKey, bundle: tuple[SumSpec, bytes]
) -> None:
    spec, data = bundle
    pk = key.public_bytes()
    for cut in (0, 3, HEADER.size - 1, HEADER.size, HEADER.size + 4, len(data) // 2, len(data) - 1):
        with pytest.raises(ProtocolError, match="truncated"):
            CKKS.aggregate(pk, [data[:cut]], spec)
    for extra in (b"\0", b"x" * 100):
        with pytest.raises(ProtocolError, match="padded"):
            CKKS.aggregate(pk, [data + extra], spec)
    (length,) = struct.unpack_from(">I", data, HEADER.size)
    for value in (0, length + 1, 2**31):
        bad = data[: HEADER.size] + struct.pack(">I", value) + data[HEADER.size + 4 :]
        with pytest.raises(ProtocolError):
            CKKS.aggregate(pk, [bad], spec)
    with pytest.raises(ProtocolError, match="must be bytes"):
        CKKS.aggregate(pk, ["text"], spec)  # type: ignore[list-item]
    with pytest.raises(ProtocolError, match="no ciphertext"):
        CKKS.aggregate(pk, [], spec)


def test_body_flips_never_escape_as_other_errors(
    key: CkksSecretKey, bundle: tuple[SumSpec, bytes]
) -> None:
    # The ciphertext bodies carry no MAC: a flip either breaks TenSEAL/SEAL parsing
    # (ProtocolError), pushes a slot off the integers (ProtocolError), or garbles the
    # sum (what a lying node could do anyway; the masks keep it meaningless).
    spec, data = bundle
    pk = key.public_bytes()
    expected = list(range(spec.length))
    refused = 0
    for offset in range(HEADER.size + 4, len(data), len(data) // 40):
        bad = bytearray(data)
        bad[offset] ^= 0x40
        try:
            got = key.decrypt_sum(CKKS.aggregate(pk, [bytes(bad)], spec), spec).tolist()
        except ProtocolError:
            refused += 1
        else:
            assert len(got) == spec.length
            refused += got != expected
    assert refused >= 30  # nearly every flip is detected or visibly garbles the sum


def test_too_many_contributions(key: CkksSecretKey) -> None:
    spec = SumSpec("job", 2, 8, 2)
    pk = key.public_bytes()
    one = CKKS.encrypt(pk, np.array([1, 2], dtype=np.uint64), spec)
    two = CKKS.aggregate(pk, [one, one], spec)
    with pytest.raises(ProtocolError, match="at most 2"):
        CKKS.aggregate(pk, [two, one], spec)


# ------------------------------------------------------------------ keys


def test_public_key_decoding_rejects_malformed(key: CkksSecretKey) -> None:
    pk = key.public_bytes()
    fresh = CkksScheme()
    bad_keys: list[object] = [
        b"",
        b"not a key at all",
        pk[:10],
        pk[:-1],
        pk + b"\0",
        b"XXXX" + pk[4:],
        pk[:4] + b"\x02" + pk[5:],
        pk[:5] + b"\x09" + pk[6:],
        pk[:10] + bytes(len(pk) - 10),
        pk.decode("latin-1"),
    ]
    for bad in bad_keys:
        with pytest.raises(ProtocolError):
            fresh.check_public_key(bad)  # type: ignore[arg-type]


def _wrap(
    context: ts.Context,
    code: int = 1,
    *,
    public: bool = True,
    secret: bool = False,
    relin: bool = False,
) -> bytes:
    body: bytes = context.serialize(
        save_public_key=public,
        save_secret_key=secret,
        save_galois_keys=False,
        save_relin_keys=relin,
    )
    return b"FCPK" + struct.pack(">BBI", 1, code, len(body)) + body


def test_public_key_with_secret_or_relin_keys_or_other_parameters_is_refused() -> None:
    mine = ts.context(ts.SCHEME_TYPE.CKKS, 4096, coeff_mod_bit_sizes=[56, 20], n_threads=1)
    fresh = CkksScheme()
    assert len(fresh.check_public_key(_wrap(mine))) == 64
    # A context with a secret key (alone, or too large to be a public one) is refused.
    with pytest.raises(ProtocolError, match="contains a secret key"):
        fresh.check_public_key(_wrap(mine, public=False, secret=True))
    with pytest.raises(ProtocolError, match=r"secret key|at most"):
        fresh.check_public_key(_wrap(mine, secret=True))
    with pytest.raises(ProtocolError, match=r"relinearization|at most"):
        fresh.check_public_key(_wrap(mine, relin=True))
    with pytest.raises(ProtocolError, match="parameters"):
        fresh.check_public_key(_wrap(mine, code=2))
    for n, bits in [(4096, [40, 20]), (2048, [40, 14]), (4096, [56, 30, 20])]:
        weak = ts.context(ts.SCHEME_TYPE.CKKS, n, coeff_mod_bit_sizes=bits, n_threads=1)
        with pytest.raises(ProtocolError, match="parameters"):
            fresh.check_public_key(_wrap(weak))


def test_secret_key_is_not_picklable_and_repr_is_redacted(key: CkksSecretKey) -> None:
    with pytest.raises(TypeError, match="export_private"):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.deepcopy(key)
    with pytest.raises(TypeError):
        pickle.dumps(key._key)
    text = repr(key) + str(key) + repr(key._key)
    assert "redacted" in text
    assert key.fingerprint[:16] in text
    assert len(text) < 300


def test_export_needs_explicit_opt_in_and_round_trips(key: CkksSecretKey) -> None:
    with pytest.raises(ValueError, match="unprotected=True"):
        key.export_private(unprotected=False)
    data = key.export_private(unprotected=True)
    again = CkksSecretKey.from_private_bytes(data)
    assert again.fingerprint == key.fingerprint
    spec = SumSpec("job", 4, 20, 1)
    bundle = CKKS.encrypt(key.public_bytes(), np.arange(4, dtype=np.uint64), spec)
    assert again.decrypt_sum(bundle, spec).tolist() == [0, 1, 2, 3]
    for bad in (key.public_bytes(), data[:-5], b"FCSK", data[:5] + b"\x07" + data[6:]):
        with pytest.raises(ProtocolError):
            CkksSecretKey.from_private_bytes(bad)


# ------------------------------------------------------------------ floats


@pytest.mark.parametrize("bound", [1e-3, 1.0, 1e6])
def test_float_sums_within_stated_precision(key: CkksSecretKey, bound: float) -> None:
    parties, length = 5, SLOTS + 100
    spec = FloatSumSpec("job", length, bound, parties)
    gen = np.random.default_rng(1)
    parts = [gen.uniform(-bound, bound, length) for _ in range(parties)]
    parts[0][:10] = bound  # the extremes of the range
    parts[1][:10] = bound
    pk = key.public_bytes()
    total = CKKS.aggregate_floats(pk, [CKKS.encrypt_floats(pk, p, spec) for p in parts], spec)
    error = np.max(np.abs(key.decrypt_floats(total, spec) - np.sum(parts, axis=0)))
    stated = float_error_bound(key.preset, spec)
    assert error <= stated <= 1e-6 * max(1.0, bound)


def test_weighted_float_sums_within_stated_precision(wkey: CkksSecretKey) -> None:
    parties, length, bound = 4, 300, 10.0
    spec = FloatSumSpec("job", length, bound, parties, weight_bound=100.0)
    gen = np.random.default_rng(2)
    parts = [gen.uniform(-bound, bound, length) for _ in range(parties)]
    weights = [0.25, -3.5, 100.0, 0.0]
    pk = wkey.public_bytes()
    bundles = [CKKS.encrypt_floats(pk, p, spec) for p in parts]
    total = CKKS.aggregate_floats(pk, bundles, spec, weights)
    got = wkey.decrypt_floats(total, spec, weighted=True)
    want = sum(w * p for w, p in zip(weights, parts, strict=True))
    stated = float_error_bound(wkey.preset, spec)
    assert np.max(np.abs(got - want)) <= stated <= 1e-6 * spec.magnitude
    # Weighted aggregates still add up (same level), and an unweighted sum still works.
    half = CKKS.aggregate_floats(pk, bundles[:2], spec, weights[:2])
    rest = CKKS.aggregate_floats(pk, bundles[2:], spec, weights[2:])
    both = CKKS.aggregate_floats(pk, [half, rest], spec, weighted_inputs=True)
    assert np.max(np.abs(wkey.decrypt_floats(both, spec, weighted=True) - want)) <= stated
    plain = CKKS.aggregate_floats(pk, bundles, spec)
    assert np.max(np.abs(wkey.decrypt_floats(plain, spec) - sum(parts))) <= stated
    with pytest.raises(ProtocolError, match=r"wrong level|declares"):
        wkey.decrypt_floats(total, spec)


def test_weighted_misuse(key: CkksSecretKey, wkey: CkksSecretKey) -> None:
    spec = FloatSumSpec("job", 3, 1.0, 2, weight_bound=2.0)
    with pytest.raises(ProtocolError, match="weighted sums need"):
        CKKS.encrypt_floats(key.public_bytes(), np.zeros(3), spec)
    pk = wkey.public_bytes()
    one = CKKS.encrypt_floats(pk, np.ones(3), spec)
    for weights in ([1.0], [1.0, 3.0], [1.0, float("nan")]):
        with pytest.raises(ProtocolError, match="weights"):
            CKKS.aggregate_floats(pk, [one, one], spec, weights)
    plain = FloatSumSpec("job", 3, 1.0, 2)
    with pytest.raises(ProtocolError, match="weights apply once"):
        CKKS.aggregate_floats(pk, [CKKS.encrypt_floats(pk, np.ones(3), plain)], plain, [1.0])


@pytest.mark.parametrize(
    "values",
    [
        np.array([0.0, 1.5, 0.0]),
        np.array([0.0, np.nan, 0.0]),
        np.array([0.0, -np.inf, 0.0]),
        np.array([0, 1, 0], dtype=np.float32),
        np.zeros(4),
    ],
)
def test_float_values_out_of_range_or_malformed(key: CkksSecretKey, values: np.ndarray) -> None:
    with pytest.raises(ProtocolError):
        CKKS.encrypt_floats(key.public_bytes(), values, FloatSumSpec("job", 3, 1.0, 2))


def test_float_spec_validation_and_range_limit(key: CkksSecretKey) -> None:
    for args in [("", 1, 1.0, 1), ("j", 0, 1.0, 1), ("j", 1, 0.0, 1), ("j", 1, np.inf, 1)]:
        with pytest.raises(ProtocolError):
            FloatSumSpec(*args)
    with pytest.raises(ProtocolError, match="too large"):
        CKKS.encrypt_floats(key.public_bytes(), np.zeros(1), FloatSumSpec("j", 1, 2.0**40, 10))


def test_float_bundle_is_not_an_exact_bundle(key: CkksSecretKey) -> None:
    pk = key.public_bytes()
    fspec = FloatSumSpec("job", 3, 1.0, 1)
    data = CKKS.encrypt_floats(pk, np.zeros(3), fspec)
    with pytest.raises(ProtocolError):
        key.decrypt_sum(data, SumSpec("job", 3, 16, 1))
    with pytest.raises(ProtocolError, match="different sum"):
        key.decrypt_floats(data, FloatSumSpec("job", 3, 2.0, 1))


def test_all_zero_weights_are_refused(wkey: CkksSecretKey) -> None:
    spec = FloatSumSpec("job", 2, 1.0, 2, weight_bound=1.0)
    pk = wkey.public_bytes()
    one = CKKS.encrypt_floats(pk, np.ones(2), spec)
    with pytest.raises(ProtocolError, match="rounds to zero"):
        CKKS.aggregate_floats(pk, [one, one], spec, [0.0, 1e-12])
