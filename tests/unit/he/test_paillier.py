"""The Paillier homomorphic-sum scheme: packing, bundles, end-to-end sums and refusals.

Expected sums are Python-int sums of the inputs reduced mod ``2**ring_bits``; expected
packings are built with Python int shifts, independently of the numpy bit twiddling.
"""

from __future__ import annotations

import copy
import doctest
import hashlib
import math
import pickle
import struct
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import federation.crypto.paillier_keys as paillier_keys_module
import federation.protocols.he.paillier as paillier_module
from federation.errors import ProtocolError, WeakParametersError
from federation.protocols.he import SumSpec
from federation.protocols.he.paillier import (
    PAILLIER,
    PaillierPreset,
    PaillierScheme,
    PaillierSecretKey,
    weak_keys_allowed,
)
from federation.protocols.he.paillier_format import (
    HEADER,
    SlotLayout,
    pack,
    spec_digest,
    unpack,
)
from federation.protocols.he.registry import generate_secret_key, scheme

SPEC = SumSpec("job-paillier", 40, 36, 3)
MARKERS = (987_654_321, 123_456_789, 555_555_555)
"""Distinctive values the nodes encrypt: no error message may contain them."""


@pytest.fixture(scope="module")
def key() -> PaillierSecretKey:
    with weak_keys_allowed():  # speed: the 1024-bit test-only preset
        return PaillierSecretKey.generate(PaillierPreset.TEST_ONLY_1024)


@pytest.fixture(scope="module")
def other_key() -> PaillierSecretKey:
    with weak_keys_allowed():  # speed: the 1024-bit test-only preset
        return PaillierSecretKey.generate(PaillierPreset.TEST_ONLY_1024)


@pytest.fixture(scope="module")
def key2048() -> PaillierSecretKey:
    return PaillierSecretKey.generate()  # the real default preset, once per module


@pytest.fixture
def weak() -> Iterator[None]:
    with weak_keys_allowed():  # speed: the tests use the 1024-bit test-only keys
        yield


def _vectors(spec: SumSpec, nodes: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = [rng.integers(0, 2**spec.ring_bits, spec.length, dtype=np.uint64) for _ in range(nodes)]
    for v, marker in zip(out, MARKERS, strict=False):
        v[0] = marker % 2**spec.ring_bits
    return out


def _expected(vectors: list[np.ndarray], ring_bits: int) -> list[int]:
    return [sum(int(v[i]) for v in vectors) % 2**ring_bits for i in range(len(vectors[0]))]


def _factors(key: PaillierSecretKey) -> tuple[int, int]:
    data = key.export_private(unprotected=True)
    half = (len(data) - 7) // 2
    return int.from_bytes(data[7 : 7 + half], "big"), int.from_bytes(data[7 + half :], "big")


def _refused(call: Callable[[], object], match: str, *secret: bytes) -> ProtocolError:
    """``call`` raises a ProtocolError matching ``match`` that shows no value or bytes."""
    with pytest.raises(ProtocolError, match=match) as info:
        call()
    message = str(info.value)
    for marker in MARKERS:
        assert str(marker) not in message
    for data in secret:
        for i in range(0, len(data) - 8, 97):
            chunk = data[i : i + 8]
            if any(chunk):
                assert chunk.hex() not in message
    return info.value


# ----------------------------------------------------------------------------- packing


@st.composite
def _packing_case(draw: st.DrawFn) -> tuple[SumSpec, SlotLayout, np.ndarray]:
    slot_bits = draw(st.integers(2, 65))
    ring_bits = draw(st.integers(1, min(64, slot_bits)))
    slots = draw(st.integers(1, 12))
    length = draw(st.integers(1, slots * 4))
    top = 2**ring_bits - 1
    values = draw(
        st.lists(
            st.one_of(st.just(0), st.just(top), st.integers(0, top)),
            min_size=length,
            max_size=length,
        )
    )
    layout = SlotLayout(slot_bits, slots, -(-length // slots), 0)
    return SumSpec("pack", length, ring_bits, 1), layout, np.array(values, dtype=np.uint64)


@settings(max_examples=150, deadline=None)
@given(_packing_case())
def test_pack_unpack_roundtrip_against_int_arithmetic(
    case: tuple[SumSpec, SlotLayout, np.ndarray],
) -> None:
    spec, layout, values = case
    packed = pack(values, layout)
    assert len(packed) == layout.ciphertexts
    w, s = layout.slot_bits, layout.slots
    expected = [
        sum(int(v) << (w * j) for j, v in enumerate(values[c * s : (c + 1) * s]))
        for c in range(layout.ciphertexts)
    ]
    assert packed == expected
    assert all(m < 2**layout.packed_bits for m in packed)
    assert unpack(packed, layout, spec).tolist() == values.tolist()
    assert unpack(packed, layout, spec).dtype == np.uint64


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 64),
    st.integers(1, 40),
    st.sampled_from([1024, 2048, 3072]),
    st.integers(1, 130),
    st.integers(0, 2**32),
    st.floats(0.0, 1.0),
)
@example(64, 40, 2048, 130, 0, 1.0)  # every party at the maximum of the widest ring
@example(36, 10, 2048, 51, 0, 1.0)  # the benchmark layout, one full plaintext
@example(1, 2, 1024, 7, 0, 1.0)
@example(33, 9, 1024, 60, 0, 0.0)
def test_sum_of_parties_packings_has_no_carries(
    ring_bits: int, parties: int, bits: int, length: int, seed: int, at_max: float
) -> None:
    spec = SumSpec("carry", length, ring_bits, parties)
    layout = SlotLayout.for_key(bits, spec)
    top = 2**ring_bits - 1
    rng = np.random.default_rng(seed)
    vectors = []
    for _ in range(parties):  # uniform values, a fraction `at_max` of them at the maximum
        v = rng.integers(0, top, length, dtype=np.uint64, endpoint=True)
        v[rng.random(length) < at_max] = top
        vectors.append(v)
    packed = [pack(v, layout) for v in vectors]
    sums = [sum(column) for column in zip(*packed, strict=True)]
    assert all(m < 2 ** (bits - 1) for m in sums)  # below any n of that size: no wrap mod n
    got = unpack(sums, layout, spec).tolist()
    assert got == _expected(vectors, ring_bits)


def test_slot_layouts() -> None:
    bench = SumSpec("bench", 10**5, 36, 10)
    layout = SlotLayout.for_key(2048, bench)
    assert (layout.slot_bits, layout.slots, layout.ciphertext_size) == (40, 51, 512)
    assert layout.ciphertexts == -(-(10**5) // 51) == 1961
    assert layout.bundle_size == HEADER.size + 1961 * 512
    assert SlotLayout.for_key(3072, bench).slots == 76
    assert SlotLayout.for_key(1024, bench).slots == 25
    assert SlotLayout.for_key(2048, SumSpec("j", 1, 64, 2**20)).slot_bits == 84
    with pytest.raises(ProtocolError, match="does not fit"):
        SlotLayout.for_key(40, bench)


def test_unpack_detects_overflow() -> None:
    spec = SumSpec("overflow", 6, 8, 4)  # slots of 10 bits
    layout = SlotLayout(10, 3, 2, 0)
    fine = unpack([2**30 - 1, 0], layout, spec)
    assert fine.tolist() == [255, 255, 255, 0, 0, 0]
    with pytest.raises(ProtocolError, match="overflows its packed slots"):
        unpack([2**30, 0], layout, spec)
    with pytest.raises(ProtocolError, match="overflows"):
        unpack([0, 2**200], layout, spec)


def test_spec_digest_binds_every_field() -> None:
    base = SumSpec("job", 10, 36, 10)
    variants = [
        SumSpec("job2", 10, 36, 10),
        SumSpec("jo", 10, 36, 10),
        SumSpec("job", 11, 36, 10),
        SumSpec("job", 10, 37, 10),
        SumSpec("job", 10, 36, 9),
    ]
    digests = {spec_digest(s) for s in [base, *variants]}
    assert len(digests) == 6
    assert spec_digest(SumSpec("job", 10, 36, 10)) == spec_digest(base)
    # Known answer: pins the wire encoding of the digest (label, u32 job length, job,
    # u64 length, u16 ring bits, u64 parties).
    encoded = (
        b"federation/he/paillier/sum-spec/v1\x00"
        + struct.pack(">I", 3)
        + b"job"
        + struct.pack(">QHQ", 10, 36, 10)
    )
    assert spec_digest(base) == hashlib.sha256(encoded).digest()
    assert spec_digest(base).hex().startswith(hashlib.sha256(encoded).hexdigest()[:8])


# ----------------------------------------------------------------------------- end to end


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 64),
    st.integers(1, 90),
    st.data(),
)
def test_sum_of_random_vectors(
    key: PaillierSecretKey, parties: int, ring_bits: int, length: int, data: st.DataObject
) -> None:
    # speed: the 1024-bit test-only preset (key made once per module)
    spec = SumSpec("job-random", length, ring_bits, parties)
    nodes = data.draw(st.integers(1, parties))
    top = 2**ring_bits - 1
    value = st.one_of(st.just(0), st.just(top), st.integers(0, top))
    vectors = [
        np.array(data.draw(st.lists(value, min_size=length, max_size=length)), dtype=np.uint64)
        for _ in range(nodes)
    ]
    with weak_keys_allowed():
        public = key.public_bytes()
        bundles = [PAILLIER.encrypt(public, v, spec) for v in vectors]
        total = PAILLIER.aggregate(public, bundles, spec)
    got = key.decrypt_sum(total, spec)
    assert got.dtype == np.uint64
    assert got.shape == (length,)
    assert got.tolist() == _expected(vectors, ring_bits)


@pytest.mark.parametrize(
    ("ring_bits", "parties"), [(1, 1), (1, 2), (36, 10), (36, 16), (63, 3), (64, 7), (64, 2)]
)
def test_every_party_at_the_maximum(
    key: PaillierSecretKey, weak: None, ring_bits: int, parties: int
) -> None:
    # speed: the 1024-bit test-only preset
    spec = SumSpec("job-max", 60, ring_bits, parties)
    top = np.full(spec.length, 2**ring_bits - 1, dtype=np.uint64)
    bundles = [PAILLIER.encrypt(key.public_bytes(), top, spec) for _ in range(parties)]
    # two-level aggregation (coordinator relays) gives the same total
    half = PAILLIER.aggregate(key.public_bytes(), bundles[: parties // 2 or 1], spec)
    rest = bundles[parties // 2 or 1 :]
    total = PAILLIER.aggregate(key.public_bytes(), [half, *rest], spec)
    expected = parties * (2**ring_bits - 1) % 2**ring_bits
    assert key.decrypt_sum(total, spec).tolist() == [expected] * spec.length
    assert key.decrypt_sum(total, spec, workers=1).tolist() == [expected] * spec.length


def test_sum_at_the_real_2048_bit_default(key2048: PaillierSecretKey) -> None:
    assert key2048.preset is PaillierPreset.PAILLIER_2048
    public = key2048.public_bytes()
    spec = SumSpec("job-2048", 2 * 51, 36, 10)  # the benchmark layout: 2 full ciphertexts
    vectors = _vectors(spec, 9)
    vectors.append(np.full(spec.length, 2**36 - 1, dtype=np.uint64))
    bundles = [PAILLIER.encrypt(public, v, spec) for v in vectors]
    assert {len(b) for b in bundles} == {HEADER.size + 2 * 512}
    total = PAILLIER.aggregate(public, bundles, spec)
    assert key2048.decrypt_sum(total, spec).tolist() == _expected(vectors, 36)


def test_bytes_per_value_of_the_benchmark_layout(key2048: PaillierSecretKey) -> None:
    # 10 nodes, 32-bit values plus zero-sum masks: ring_bits = 36, 2048-bit key. The
    # bundle of 1e5 values is not encrypted here (seconds); its length follows from
    # the layout, which the small bundle above checks against real bundles.
    spec = SumSpec("bench", 10**5, 36, 10)
    layout = PAILLIER.layout(key2048.public_bytes(), spec)
    small = SumSpec("bench", 51 * 3 + 1, 36, 10)
    bundle = PAILLIER.encrypt(key2048.public_bytes(), np.zeros(small.length, np.uint64), small)
    assert len(bundle) == PAILLIER.layout(key2048.public_bytes(), small).bundle_size
    assert len(bundle) == HEADER.size + 4 * 512
    per_value = layout.bundle_size / spec.length
    assert per_value <= 16
    assert per_value == pytest.approx(10.04, abs=0.01)


def test_bundle_header_layout(key: PaillierSecretKey, weak: None) -> None:
    vectors = _vectors(SPEC, 3)
    bundles = [PAILLIER.encrypt(key.public_bytes(), v, SPEC) for v in vectors]
    total = PAILLIER.aggregate(key.public_bytes(), bundles, SPEC)
    layout = SlotLayout.for_key(1024, SPEC)  # slots of 38 bits, 26 a plaintext
    assert (layout.slot_bits, layout.slots, layout.ciphertexts) == (38, 26, 2)
    for bundle, contributions in ((bundles[0], 1), (total, 3)):
        fields = struct.unpack_from(">4sB32s32sHHHII", bundle)
        assert fields == (
            b"FPCB",
            1,
            bytes.fromhex(key.fingerprint),
            spec_digest(SPEC),
            256,
            38,
            26,
            contributions,
            2,
        )
        assert len(bundle) == 83 + 2 * 256 == HEADER.size + 512


def test_registry_and_key_properties(key: PaillierSecretKey) -> None:
    assert scheme("paillier") is PAILLIER
    assert PAILLIER.name == "paillier"
    assert key.fingerprint == hashlib.sha256(key.public_bytes()).hexdigest()
    with weak_keys_allowed():
        assert PAILLIER.check_public_key(key.public_bytes()) == key.fingerprint
    assert key.public_bytes()[:5] == b"FPPK\x01"


def test_registry_generates_the_full_size_default() -> None:
    generated = generate_secret_key("paillier")
    assert isinstance(generated, PaillierSecretKey)
    assert generated.preset is PaillierPreset.PAILLIER_2048


def test_docstring_examples_run() -> None:
    for module in (paillier_module, paillier_keys_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0
        assert result.failed == 0


def test_pooled_obfuscators_are_used_once(key: PaillierSecretKey, weak: None) -> None:
    own = PaillierScheme(pool_size=5, cached_keys=1)
    public = key.public_bytes()
    pool = own.obfuscator_pool(public)
    assert own.obfuscator_pool(public) is pool
    assert pool.fill() == 5
    spec = SumSpec("job-pool", 26 * 3, 36, 3)  # 3 ciphertexts
    first = own.encrypt(public, np.ones(spec.length, np.uint64), spec)
    assert pool.available == 2
    second = own.encrypt(public, np.ones(spec.length, np.uint64), spec)  # 2 pooled + 1 fresh
    assert pool.available == 0
    body = HEADER.size
    cts = [first[body + i * 256 : body + (i + 1) * 256] for i in range(3)]
    cts += [second[body + i * 256 : body + (i + 1) * 256] for i in range(3)]
    assert len(set(cts)) == 6  # same plaintexts, never the same ciphertext
    total = own.aggregate(public, [first, second], spec)
    assert key.decrypt_sum(total, spec).tolist() == [2] * spec.length


def test_key_cache_evicts_and_clears_pools(
    key: PaillierSecretKey, other_key: PaillierSecretKey, weak: None
) -> None:
    own = PaillierScheme(pool_size=3, cached_keys=1)
    pool = own.obfuscator_pool(key.public_bytes())
    pool.fill()
    own.check_public_key(other_key.public_bytes())  # evicts the first key
    assert pool.available == 0
    assert own.obfuscator_pool(key.public_bytes()) is not pool


# ----------------------------------------------------------------------------- secret key


@pytest.mark.parametrize(
    "operation", [pickle.dumps, copy.copy, copy.deepcopy], ids=["pickle", "copy", "deepcopy"]
)
def test_secret_key_cannot_be_pickled_or_copied(
    key: PaillierSecretKey, operation: Callable[[object], object]
) -> None:
    with pytest.raises(TypeError, match=r"export_private\(unprotected=True\)"):
        operation(key)


def test_secret_key_repr_and_export(key: PaillierSecretKey, weak: None) -> None:
    p, q = _factors(key)
    for text in (repr(key), str(key), repr([key])):
        assert "redacted" in text
        for secret in (p, q):
            assert str(secret)[:24] not in text
            assert f"{secret:x}"[:24] not in text
    with pytest.raises(ValueError, match="unprotected=True"):
        key.export_private(unprotected=False)
    again = PaillierSecretKey.from_private_bytes(key.export_private(unprotected=True))
    assert again.fingerprint == key.fingerprint
    vectors = _vectors(SPEC, 2)
    total = PAILLIER.aggregate(
        key.public_bytes(), [PAILLIER.encrypt(key.public_bytes(), v, SPEC) for v in vectors], SPEC
    )
    assert again.decrypt_sum(total, SPEC).tolist() == _expected(vectors, 36)
    for bad in (b"FPSK", key.public_bytes(), "text"):
        _refused(
            lambda bad=bad: PaillierSecretKey.from_private_bytes(bad),
            "invalid Paillier private key",
        )  # type: ignore[misc]
    with pytest.raises(TypeError, match="PaillierPrivateKey"):
        PaillierSecretKey(p)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def job(key: PaillierSecretKey) -> tuple[list[np.ndarray], list[bytes], bytes]:
    with weak_keys_allowed():  # speed: the 1024-bit test-only preset
        vectors = _vectors(SPEC, 3)
        bundles = [PAILLIER.encrypt(key.public_bytes(), v, SPEC) for v in vectors]
        return vectors, bundles, PAILLIER.aggregate(key.public_bytes(), bundles, SPEC)


def test_wrong_or_stale_key_is_refused(
    key: PaillierSecretKey,
    other_key: PaillierSecretKey,
    job: tuple[list[np.ndarray], list[bytes], bytes],
    weak: None,
) -> None:
    vectors, bundles, total = job
    public = key.public_bytes()
    # A bundle under another key (e.g. the analyst's previous, now stale key).
    stale = PAILLIER.encrypt(other_key.public_bytes(), vectors[0], SPEC)
    error = _refused(
        lambda: PAILLIER.aggregate(public, [bundles[0], stale], SPEC),
        r"ciphertext bundle 1 \(of 2\) is encrypted under public key .*stale or wrong key",
        stale,
    )
    assert other_key.fingerprint[:16] in str(error)
    stale_total = PAILLIER.aggregate(other_key.public_bytes(), [stale], SPEC)
    _refused(lambda: key.decrypt_sum(stale_total, SPEC), "the aggregate .*stale or wrong key")
    _refused(lambda: other_key.decrypt_sum(total, SPEC), "stale or wrong key", total)
    # the right key still works
    assert key.decrypt_sum(total, SPEC).tolist() == _expected(vectors, 36)


@pytest.mark.parametrize(
    "other",
    [
        SumSpec("another-job", 40, 36, 3),
        SumSpec("job-paillier", 41, 36, 3),
        SumSpec("job-paillier", 40, 35, 3),
        SumSpec("job-paillier", 40, 36, 4),
    ],
    ids=["job", "length", "ring", "parties"],
)
def test_bundle_for_another_sum_is_refused(
    key: PaillierSecretKey,
    job: tuple[list[np.ndarray], list[bytes], bytes],
    weak: None,
    other: SumSpec,
) -> None:
    _, bundles, total = job
    public = key.public_bytes()
    foreign = PAILLIER.encrypt(public, np.zeros(other.length, np.uint64), other)
    _refused(
        lambda: PAILLIER.aggregate(public, [*bundles[:2], foreign], SPEC),
        r"ciphertext bundle 2 \(of 3\) was made for a different sum",
    )
    _refused(lambda: PAILLIER.aggregate(public, bundles, other), "different sum")
    _refused(lambda: key.decrypt_sum(total, other), "the aggregate was made for a different sum")


def test_malformed_bundles_are_refused(
    key: PaillierSecretKey, job: tuple[list[np.ndarray], list[bytes], bytes], weak: None
) -> None:
    _, bundles, total = job
    public = key.public_bytes()
    bundle = bundles[1]
    cases = [
        (bundle[:-1], f"truncated: {len(bundle) - 1} bytes, expected {len(bundle)}"),
        (bundle[: HEADER.size - 1], "truncated: 82 bytes, shorter than its 83-byte header"),
        (b"", "truncated"),
        (bundle + b"\0", "padded"),
        (bundle + bundle[HEADER.size :], "padded"),
        (b"XXXX" + bundle[4:], "wrong magic"),
        (bundle[:4] + b"\x02" + bundle[5:], "bundle format version 2; this library reads 1"),
        ("not bytes", "must be bytes, got str"),
    ]
    for bad, match in cases:
        _refused(lambda bad=bad: PAILLIER.aggregate(public, [bundles[0], bad], SPEC), match)  # type: ignore[misc]
        _refused(lambda bad=bad: key.decrypt_sum(bad, SPEC), match)  # type: ignore[misc]
    # Every header byte matters: flipping any of them is refused, in a node's bundle
    # and in the aggregate.
    for i in range(HEADER.size):
        flipped = bytearray(bundle)
        flipped[i] ^= 0xFF
        _refused(
            lambda f=bytes(flipped): PAILLIER.aggregate(public, [f], SPEC),
            r"^ciphertext bundle 0 \(of 1\) ",
        )  # type: ignore[misc]
        flipped = bytearray(total)
        flipped[i] ^= 0xFF
        _refused(lambda f=bytes(flipped): key.decrypt_sum(f, SPEC), "the aggregate")  # type: ignore[misc]


def _with_ciphertext(bundle: bytes, index: int, value: int, size: int = 256) -> bytes:
    start = HEADER.size + index * size
    return bundle[:start] + value.to_bytes(size, "big") + bundle[start + size :]


def test_invalid_ciphertexts_are_refused(
    key: PaillierSecretKey, job: tuple[list[np.ndarray], list[bytes], bytes], weak: None
) -> None:
    _, bundles, total = job
    public = key.public_bytes()
    p, q = _factors(key)
    n = p * q
    for value, problem in (
        (n * n, "is not below n"),
        (2**2048 - 1, "is not below n"),
        (p * 0xC0FFEE, "is not coprime with n"),  # a multiple of a factor: not a unit
        (q, "is not coprime with n"),
        (0, "is not coprime with n"),
    ):
        bad = _with_ciphertext(bundles[2], 1, value)
        error = _refused(
            lambda bad=bad: PAILLIER.aggregate(public, [bundles[0], bundles[1], bad], SPEC),  # type: ignore[misc]
            rf"^ciphertext bundle 2 \(of 3\): ciphertext 1 {problem}",
            bad,
        )
        for secret in (str(value), f"{value:x}", str(p), str(q)):
            assert secret[:20] not in str(error)
        bad_total = _with_ciphertext(total, 0, value)
        _refused(
            lambda b=bad_total: key.decrypt_sum(b, SPEC),  # type: ignore[misc]
            rf"^the aggregate: ciphertext 0 {problem}",
            bad_total,
        )


def test_contribution_counts(
    key: PaillierSecretKey, job: tuple[list[np.ndarray], list[bytes], bytes], weak: None
) -> None:
    _, bundles, total = job
    public = key.public_bytes()
    _refused(lambda: PAILLIER.aggregate(public, [], SPEC), "no ciphertexts to aggregate")
    _refused(
        lambda: PAILLIER.aggregate(public, [*bundles, bundles[0]], SPEC),
        "sum 4 contributions; this sum allows at most 3",
    )
    _refused(lambda: PAILLIER.aggregate(public, [total, bundles[0]], SPEC), "at most 3")
    # A header claiming 0 contributions, or more than parties, is refused on its own.
    for count in (0, 4):
        claimed = bytearray(bundles[0])
        struct.pack_into(">I", claimed, HEADER.size - 8, count)
        _refused(
            lambda c=bytes(claimed): PAILLIER.aggregate(public, [c], SPEC),  # type: ignore[misc]
            f"sums {count} contributions; this sum allows 1 to 3",
        )


def test_values_of_wrong_range_type_or_shape_are_refused(
    key: PaillierSecretKey, weak: None
) -> None:
    public = key.public_bytes()
    good = np.zeros(SPEC.length, np.uint64)
    over = good.copy()
    over[5] = 2**36
    _refused(lambda: PAILLIER.encrypt(public, over, SPEC), r"below 2\*\*36")
    over[5] = 2**64 - 1
    _refused(lambda: PAILLIER.encrypt(public, over, SPEC), r"below 2\*\*36")
    wide = SumSpec("job-64", 3, 64, 2)
    top = np.full(3, 2**64 - 1, np.uint64)
    assert key.decrypt_sum(PAILLIER.encrypt(public, top, wide), wide).tolist() == top.tolist()
    for bad in (
        good.astype(np.int64),
        good.astype(np.float64),
        good.astype(np.uint32),
        good.astype(">u8"),
        good.tolist(),
    ):
        _refused(lambda bad=bad: PAILLIER.encrypt(public, bad, SPEC), "numpy uint64 array")  # type: ignore[misc]
    for shape in ((39,), (41,), (40, 1), (2, 20), ()):
        bad = np.zeros(shape, np.uint64)
        _refused(lambda bad=bad: PAILLIER.encrypt(public, bad, SPEC), "expected 40 values")  # type: ignore[misc]


def test_invalid_public_keys_are_refused(key: PaillierSecretKey, weak: None) -> None:
    public = key.public_bytes()
    zeros = np.zeros(SPEC.length, np.uint64)
    cases: list[tuple[object, str]] = [
        (b"garbage", "invalid Paillier public key"),
        (public[:-1], "invalid Paillier public key: a 1024-bit"),
        (public + b"\0", "invalid Paillier public key"),
        (b"FPSK" + public[4:], "wrong magic"),
        (public[:4] + b"\x09" + public[5:], "version 9"),
        (public[:-1] + bytes([public[-1] ^ 1]), "invalid Paillier public key: .*odd"),
        (bytearray(public), "must be bytes, got bytearray"),
        ([1, 2], "must be bytes, got list"),
        ("FPPK", "must be bytes, got str"),
    ]
    for bad, match in cases:
        _refused(lambda bad=bad: PAILLIER.check_public_key(bad), match, public)  # type: ignore[misc]
        _refused(lambda bad=bad: PAILLIER.encrypt(bad, zeros, SPEC), match, public)  # type: ignore[misc]
        _refused(lambda bad=bad: PAILLIER.aggregate(bad, [b""], SPEC), match, public)  # type: ignore[misc]


def test_weak_key_refused_without_opt_in_even_when_cached(key: PaillierSecretKey) -> None:
    public = key.public_bytes()
    zeros = np.zeros(SPEC.length, np.uint64)
    with weak_keys_allowed():
        PAILLIER.check_public_key(public)  # validated and cached while allowed
        fresh = PaillierScheme()
        paillier_module.allow_weak_keys(False)  # restored when the block exits
        for scheme_ in (PAILLIER, fresh):
            with pytest.raises(WeakParametersError, match="allow_weak_keys"):
                scheme_.encrypt(public, zeros, SPEC)
            with pytest.raises(WeakParametersError):
                scheme_.check_public_key(public)
        with pytest.raises(WeakParametersError):
            PaillierSecretKey.generate(PaillierPreset.TEST_ONLY_1024)


def test_tampered_ciphertext_body_gives_garbage_not_the_sum(
    key: PaillierSecretKey, job: tuple[list[np.ndarray], list[bytes], bytes], weak: None
) -> None:
    # Integrity against a malicious coordinator is not this scheme's job: Paillier is
    # malleable, and the coordinator may change ciphertexts. What it gets is noise, not
    # a chosen result: the nodes' zero-sum masks (federation.protocols.he.masks) make
    # any sum other than the complete, untouched one meaningless, and the transport
    # (TLS-capable) protects the bytes between honest parties. This test documents that
    # a tampered body that is still a valid unit is accepted and decrypts to something
    # other than the true sum (or, most often, to a plaintext that overflows the packed
    # slots, which decryption refuses).
    vectors, bundles, _ = job
    public = key.public_bytes()
    p, q = _factors(key)
    n = p * q
    expected = _expected(vectors, 36)
    flipped = bytearray(bundles[0])
    position = HEADER.size + 100  # inside ciphertext 0
    flipped[position] ^= 0x01
    c = int.from_bytes(flipped[HEADER.size : HEADER.size + 256], "big")
    assert c < n * n
    assert math.gcd(c, n) == 1  # a flip leaves a unit, except with odds of about 2**-500
    total = PAILLIER.aggregate(public, [bytes(flipped), *bundles[1:]], SPEC)  # accepted
    outcome: list[int] | str
    try:
        outcome = key.decrypt_sum(total, SPEC).tolist()
    except ProtocolError as exc:
        outcome = str(exc)
    if isinstance(outcome, str):
        assert "overflows its packed slots" in outcome
    else:
        assert outcome != expected
    # A homomorphic tamper (multiply by an encryption of 1, i.e. (1 + n)) stays in range:
    # decryption succeeds, and the result differs from the true sum.
    body = HEADER.size
    c0 = int.from_bytes(bundles[0][body : body + 256], "big")
    shifted = _with_ciphertext(bundles[0], 0, c0 * (1 + n) % (n * n))
    total = PAILLIER.aggregate(public, [shifted, *bundles[1:]], SPEC)
    got = key.decrypt_sum(total, SPEC).tolist()
    assert got != expected
    assert got[0] == (expected[0] + 1) % 2**36
    assert got[1:] == expected[1:]


def test_prepare_refills_the_pool_for_the_next_job(key: PaillierSecretKey, weak: None) -> None:
    # A private scheme instance: its pool starts empty and is not shared with other tests.
    he = PaillierScheme(pool_size=64)
    spec = SumSpec("job-next", 200, 36, 3)  # several ciphertexts at 1024 bits
    needed = he.layout(key.public_bytes(), spec).ciphertexts
    pool = he.obfuscator_pool(key.public_bytes())
    assert pool.available == 0
    he.prepare(key.public_bytes(), spec)
    deadline = time.monotonic() + 30
    while pool.available < needed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.available == needed
    values = np.arange(spec.length, dtype=np.uint64)
    bundle = he.encrypt(key.public_bytes(), values, spec)
    assert pool.available == 0  # each pooled obfuscator was used once, then gone
    assert key.decrypt_sum(bundle, spec).tolist() == list(range(spec.length))
    he.prepare(b"not a key", spec)  # ignored here; encrypt() is where a bad key is reported
