"""Zero-sum masks cancel in the full sum and hide every partial sum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.crypto.keys import X25519KeyPair
from federation.errors import ProtocolError
from federation.protocols.he import SumSpec, mask_values, ring_mask


def _masked_all(values: list[np.ndarray], spec: SumSpec) -> list[np.ndarray]:
    keys = [X25519KeyPair.generate() for _ in values]
    public = {i: k.public_bytes for i, k in enumerate(keys)}
    return [
        mask_values(v, spec, i, keys[i], {j: pk for j, pk in public.items() if j != i})
        for i, v in enumerate(values)
    ]


@settings(max_examples=30, deadline=None)
@given(
    st.integers(min_value=2, max_value=6),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=8, max_value=48),
    st.data(),
)
def test_masks_cancel_exactly_in_the_full_sum(
    parties: int, length: int, value_bits: int, data: st.DataObject
) -> None:
    spec = SumSpec.for_signed_values("job-x", length, value_bits, parties)
    bound = 2 ** (value_bits - 1)
    values = [
        np.array(
            data.draw(
                st.lists(st.integers(-bound + 1, bound - 1), min_size=length, max_size=length)
            ),
            dtype=np.int64,
        )
        for _ in range(parties)
    ]
    masked = _masked_all(values, spec)
    total = np.zeros(length, dtype=np.uint64)
    for m in masked:
        assert int(m.max()) < 2**spec.ring_bits
        total += m
    total &= ring_mask(spec)
    # interpret in two's complement of ring_bits: the exact signed sum
    half = 2 ** (spec.ring_bits - 1)
    got = [int(t) - 2**spec.ring_bits if int(t) >= half else int(t) for t in total]
    assert got == [int(x) for x in sum(v.astype(object) for v in values)]


def test_a_single_nodes_masked_values_are_not_its_values() -> None:
    spec = SumSpec.for_signed_values("job-y", 1000, 32, 3)
    values = [np.arange(1000, dtype=np.int64) * k for k in (1, 2, 3)]
    masked = _masked_all(values, spec)
    for v, m in zip(values, masked, strict=True):
        assert np.count_nonzero((v.view(np.uint64) & ring_mask(spec)) == m) < 5
    partial = (masked[0] + masked[1]) & ring_mask(spec)
    assert (
        np.count_nonzero(partial == ((values[0] + values[1]).view(np.uint64) & ring_mask(spec))) < 5
    )


def test_bad_inputs_are_refused() -> None:
    spec = SumSpec.for_signed_values("j", 4, 16, 2)
    key = X25519KeyPair.generate()
    with pytest.raises(ProtocolError, match="expected 4 values"):
        mask_values(np.zeros(3, dtype=np.int64), spec, 0, key, {1: key.public_bytes})
    with pytest.raises(ProtocolError, match="own peers"):
        mask_values(np.zeros(4, dtype=np.int64), spec, 0, key, {0: key.public_bytes})
    with pytest.raises(ProtocolError, match="slot 1"):
        mask_values(np.zeros(4, dtype=np.int64), spec, 0, key, {1: b"short"})
    with pytest.raises(ProtocolError, match="at least one party"):
        SumSpec("j", 4, 16, 0)
