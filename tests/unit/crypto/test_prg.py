"""HKDF key derivation and the AES-CTR mask applier: behaviour and negative matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from federation.crypto.prg import (
    KEY_SIZE,
    MASK_KEY_SIZE,
    MAX_MASK_LENGTH,
    Label,
    MaskApplier,
    derive_key,
    derive_keys,
    expand_mask,
    hkdf_info,
)

SECRET = bytes(range(32))
KEY_A = bytes(range(16))
KEY_B = bytes(range(1, 17))


def test_derive_key_is_deterministic_with_label_sizes() -> None:
    key = derive_key(SECRET, Label.SELF_MASK, "job", 0)
    assert len(key) == MASK_KEY_SIZE == 16
    assert key == derive_key(SECRET, Label.SELF_MASK, "job", 0)
    assert len(derive_key(SECRET, Label.PAIRWISE_MASK, "job", 0, 1)) == 16
    transport = derive_key(SECRET, Label.SHARE_TRANSPORT, "job", 0, 1)
    assert len(transport) == KEY_SIZE == 32
    assert [label.key_size for label in Label] == [16, 16, 32, 16]


@pytest.mark.parametrize(
    "other",
    [
        (Label.SELF_MASK, "job", (1,)),
        (Label.SELF_MASK, "job2", (0,)),
        (Label.PAIRWISE_MASK, "job", (0, 1)),
        (Label.SHARE_TRANSPORT, "job", (0, 1)),
    ],
)
def test_derive_key_separates_domains(other: tuple[Label, str, tuple[int, ...]]) -> None:
    base = derive_key(SECRET, Label.SELF_MASK, "job", 0)
    label, job, context = other
    assert derive_key(SECRET, label, job, *context) != base


def test_transport_direction_is_bound() -> None:
    there = derive_key(SECRET, Label.SHARE_TRANSPORT, "job", 1, 2)
    back = derive_key(SECRET, Label.SHARE_TRANSPORT, "job", 2, 1)
    assert there != back


def test_info_encoding_is_unambiguous() -> None:
    # A job id cannot absorb context bytes: lengths are prefixed.
    a = hkdf_info(Label.PAIRWISE_MASK, "j", (1, 2))
    b = hkdf_info(Label.PAIRWISE_MASK, "j\x00\x00\x00\x01", (2, 3))
    assert a != b
    assert a.startswith(b"federation/secagg+/v1/pairwise-mask\x00\x00\x00\x00\x01j")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("not bytes", Label.SELF_MASK, "job", 0), TypeError),
        ((bytearray(32), Label.SELF_MASK, "job", 0), TypeError),
        ((None, Label.SELF_MASK, "job", 0), TypeError),
        ((bytes(15), Label.SELF_MASK, "job", 0), ValueError),
        ((b"", Label.SELF_MASK, "job", 0), ValueError),
        ((SECRET, "self-mask", "job", 0), TypeError),
        ((SECRET, Label.SELF_MASK, b"job", 0), TypeError),
        ((SECRET, Label.SELF_MASK, "job"), ValueError),
        ((SECRET, Label.SELF_MASK, "job", 0, 1), ValueError),
        ((SECRET, Label.PAIRWISE_MASK, "job", 0), ValueError),
        ((SECRET, Label.SELF_MASK, "job", -1), ValueError),
        ((SECRET, Label.SELF_MASK, "job", 2**32), ValueError),
        ((SECRET, Label.SELF_MASK, "job", 1.0), TypeError),
        ((SECRET, Label.SELF_MASK, "job", True), TypeError),
    ],
)
def test_derive_key_rejects(args: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        derive_key(*args)


def test_expand_mask_is_uniform_looking() -> None:
    mask = expand_mask(KEY_A, 100_000)
    assert mask.dtype == np.uint64
    # Each bit is set about half the time; a broken (e.g. zero or folded) stream fails.
    ones = np.unpackbits(mask.view(np.uint8)).mean()
    assert 0.49 < ones < 0.51
    assert len(np.unique(mask)) == mask.size
    assert not np.array_equal(mask, expand_mask(KEY_B, 100_000))


def test_expand_mask_prefix_property() -> None:
    long = expand_mask(KEY_A, 50_000)
    assert np.array_equal(expand_mask(KEY_A, 123), long[:123])


@pytest.mark.parametrize(
    ("key", "length", "error"),
    [
        (bytes(15), 10, ValueError),
        (bytes(17), 10, ValueError),
        (bytes(32), 10, ValueError),
        ("k" * 16, 10, TypeError),
        (KEY_A, 0, ValueError),
        (KEY_A, -1, ValueError),
        (KEY_A, MAX_MASK_LENGTH + 1, ValueError),
        (KEY_A, 10.0, TypeError),
        (KEY_A, True, TypeError),
    ],
)
def test_expand_mask_rejects(key: Any, length: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        expand_mask(key, length)


@pytest.mark.parametrize("length", [1, 2, 3, 16383, 16384, 16385, 40_001])
def test_apply_matches_expansion_across_block_boundaries(length: int) -> None:
    applier = MaskApplier(length)
    acc = np.arange(length, dtype=np.uint64)
    applier.apply(acc, add=[KEY_A, KEY_B], subtract=[KEY_B])
    expected = np.arange(length, dtype=np.uint64) + expand_mask(KEY_A, length)
    assert np.array_equal(acc, expected)


@pytest.mark.parametrize("length", [5, 16384, 40_001])
def test_apply_from_source_overwrites_the_accumulator(length: int) -> None:
    source = np.arange(length, dtype=np.uint64) * 3
    acc = np.full(length, 99, dtype=np.uint64)  # previous contents must not matter
    MaskApplier(length).apply(acc, add=[KEY_A], subtract=[KEY_B], source=source)
    expected = source + expand_mask(KEY_A, length) - expand_mask(KEY_B, length)
    assert np.array_equal(acc, expected)
    assert np.array_equal(source, np.arange(length, dtype=np.uint64) * 3)
    plain = np.zeros(length, dtype=np.uint64)
    MaskApplier(length).apply(plain, source=source)  # no keys: a copy
    assert np.array_equal(plain, source)


def test_apply_rejects_bad_source() -> None:
    acc = np.zeros(10, dtype=np.uint64)
    with pytest.raises(TypeError, match="source"):
        MaskApplier(10).apply(acc, add=[KEY_A], source=np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match="source"):
        MaskApplier(10).apply(acc, add=[KEY_A], source=np.zeros(9, dtype=np.uint64))
    assert not acc.any()


def test_apply_add_then_subtract_is_identity_mod_2_64() -> None:
    applier = MaskApplier(1000)
    start = np.full(1000, 2**64 - 1, dtype=np.uint64)
    acc = start.copy()
    applier.apply(acc, add=[KEY_A, KEY_B])
    assert not np.array_equal(acc, start)
    applier.apply(acc, subtract=[KEY_B, KEY_A])
    assert np.array_equal(acc, start)


def test_apply_without_keys_changes_nothing() -> None:
    acc = np.arange(10, dtype=np.uint64)
    MaskApplier(10).apply(acc)
    assert np.array_equal(acc, np.arange(10, dtype=np.uint64))


def test_apply_wraps_modulo_2_64() -> None:
    mask = expand_mask(KEY_A, 8)
    acc = np.full(8, 2**64 - 1, dtype=np.uint64)
    MaskApplier(8).apply(acc, add=[KEY_A])
    assert [int(a) for a in acc] == [(int(m) + 2**64 - 1) % 2**64 for m in mask]


@pytest.mark.parametrize(
    "accumulator",
    [
        np.zeros(10, dtype=np.int64),
        np.zeros(10, dtype=np.float64),
        np.zeros(10, dtype=np.uint32),
        [0] * 10,
    ],
)
def test_apply_rejects_wrong_type(accumulator: Any) -> None:
    with pytest.raises(TypeError):
        MaskApplier(10).apply(accumulator, add=[KEY_A])


def test_apply_rejects_wrong_shape_and_layout() -> None:
    applier = MaskApplier(10)
    with pytest.raises(ValueError, match="shape"):
        applier.apply(np.zeros(11, dtype=np.uint64), add=[KEY_A])
    with pytest.raises(ValueError, match="shape"):
        applier.apply(np.zeros((2, 5), dtype=np.uint64), add=[KEY_A])
    strided = np.zeros(20, dtype=np.uint64)[::2]
    with pytest.raises(ValueError, match="contiguous"):
        applier.apply(strided, add=[KEY_A])
    frozen = np.zeros(10, dtype=np.uint64)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        applier.apply(frozen, add=[KEY_A])


@pytest.mark.parametrize("bad", [bytes(32), "x" * 16, None])
def test_apply_checks_all_keys_before_touching_the_accumulator(bad: Any) -> None:
    acc = np.arange(10, dtype=np.uint64)
    with pytest.raises((TypeError, ValueError)):
        MaskApplier(10).apply(acc, add=[KEY_A], subtract=[bad])
    assert np.array_equal(acc, np.arange(10, dtype=np.uint64))


def test_applier_length_validation_and_repr() -> None:
    with pytest.raises(ValueError, match="mask length"):
        MaskApplier(0)
    with pytest.raises(TypeError):
        MaskApplier(2.5)  # type: ignore[arg-type]
    applier = MaskApplier(7)
    assert applier.length == 7
    assert repr(applier) == "MaskApplier(length=7)"


def test_derive_keys_equals_derive_key_per_context() -> None:
    contexts = [(0, 1), (1, 0), (7, 2**32 - 1)]
    keys = derive_keys(SECRET, Label.SHARE_TRANSPORT, "job", contexts)
    assert keys == [derive_key(SECRET, Label.SHARE_TRANSPORT, "job", *c) for c in contexts]
    assert derive_keys(SECRET, Label.SELF_MASK, "job", []) == []


@pytest.mark.parametrize(
    ("contexts", "error"),
    [([(0, 1), (0,)], ValueError), ([(0, 1), (0, True)], TypeError), ([(0, -1)], ValueError)],
)
def test_derive_keys_checks_every_context(contexts: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        derive_keys(SECRET, Label.PAIRWISE_MASK, "job", contexts)


def test_str_subclass_job_ids_derive_like_str() -> None:
    class JobId(str):
        __slots__ = ()

    plain = derive_key(SECRET, Label.SELF_MASK, "job-7", 3)
    assert derive_key(SECRET, Label.SELF_MASK, JobId("job-7"), 3) == plain
    assert hkdf_info(Label.SELF_MASK, JobId("job-7"), (3,)) == hkdf_info(
        Label.SELF_MASK, "job-7", (3,)
    )


def test_derivation_with_cached_prefixes_matches_fresh_encoding() -> None:
    # The per-(label, job) cache must not mix jobs or labels up.
    for job in ("a", "b", "a" * 256, "\u00e9t\u00e9"):
        for label, context in ((Label.SELF_MASK, (5,)), (Label.PAIRWISE_MASK, (1, 2))):
            info = hkdf_info(label, job, context)
            encoded = job.encode()
            assert info == (
                b"federation/secagg+/v1/"
                + label.value.encode()
                + b"\x00"
                + len(encoded).to_bytes(4, "big")
                + encoded
                + b"".join(c.to_bytes(4, "big") for c in context)
            )


@pytest.mark.parametrize("length", [16384 * 3 + 1, 100_000])
def test_applier_reused_across_calls_restarts_the_counter(length: int) -> None:
    # The counter blocks are rewritten per block of the vector; a second call on the
    # same applier must start again at counter 0.
    applier = MaskApplier(length)
    first = np.zeros(length, dtype=np.uint64)
    second = np.zeros(length, dtype=np.uint64)
    applier.apply(first, add=[KEY_A])
    applier.apply(second, add=[KEY_A])
    assert np.array_equal(first, expand_mask(KEY_A, length))
    assert np.array_equal(second, first)


def test_applier_keystream_is_the_ctr_keystream_for_many_keys() -> None:
    keys = [bytes([i]) * 16 for i in range(12)]
    length = 20_001
    acc = np.zeros(length, dtype=np.uint64)
    MaskApplier(length).apply(acc, add=keys[:7], subtract=keys[7:])
    expected = np.zeros(length, dtype=np.uint64)
    for key in keys[:7]:
        expected += expand_mask(key, length)
    for key in keys[7:]:
        expected -= expand_mask(key, length)
    assert np.array_equal(acc, expected)
