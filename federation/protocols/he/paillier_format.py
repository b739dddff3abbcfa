"""Paillier sums on the wire: slot packing and the versioned ciphertext-bundle format.

**Packing.** A plaintext holds ``slots = floor((bits(n) - 1) / slot_bits)`` values,
value ``j`` at bits ``[j * slot_bits, (j + 1) * slot_bits)``, with ``slot_bits =
spec.sum_bits = ring_bits + party_bits``: each value is below ``2**ring_bits`` and at
most ``spec.parties`` of them are added, so a slot's unreduced sum stays below
``2**slot_bits`` and never carries into its neighbour, and the packed plaintext
stays below ``2**(bits(n) - 1) <= n``. Values are unsigned (zero-sum masks are
already applied), so no sign handling is needed; the analyst keeps the low
``ring_bits`` of each slot (the sum modulo ``2**ring_bits``). For a 2048-bit key and
the 32-bit fixed-point values of the benchmark (``ring_bits = 36``, 10 nodes,
``slot_bits = 40``) that is 51 values per 512-byte ciphertext: about 10 bytes per
value. The analyst also sees each slot's unreduced sum, i.e. the carries of the sum
of the *masked* values; the masked values are uniform given their sum, so the
carries say nothing about any node's values.

**Bundles.** A node's contribution and the coordinator's aggregate share one format
(big-endian)::

    magic             4 bytes   b"FPCB"
    version           u8        1
    key fingerprint   32 bytes  SHA-256 of the public key's encoding
    spec digest       32 bytes  SHA-256 of the SumSpec (job id, length, ring, parties)
    ciphertext size   u16       2 * bits(n) / 8
    slot bits         u16
    slots             u16       values per ciphertext
    contributions     u32       node ciphertexts summed (1 for a node's bundle)
    count             u32       ciphertexts
    ciphertexts       count * ciphertext size bytes

Readers recompute every field from the key and the spec and reject any difference,
and any truncation or trailing bytes, with a :class:`ProtocolError` naming the field
(fingerprints are public and may be named; bytes and values never are).
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from federation.errors import ProtocolError
from federation.protocols.he.spec import SumSpec

__all__ = [
    "BUNDLE_MAGIC",
    "BUNDLE_VERSION",
    "HEADER",
    "SlotLayout",
    "pack",
    "read_bundle",
    "spec_digest",
    "unpack",
    "write_bundle",
]

Ring = npt.NDArray[np.uint64]

BUNDLE_MAGIC = b"FPCB"
BUNDLE_VERSION = 1
HEADER = struct.Struct(">4sB32s32sHHHII")
_SPEC_LABEL = b"federation/he/paillier/sum-spec/v1\x00"


def spec_digest(spec: SumSpec) -> bytes:
    """SHA-256 of the spec's canonical encoding (binds bundles to one job and shape)."""
    job = spec.job_id.encode("utf-8")
    return hashlib.sha256(
        b"".join(
            [
                _SPEC_LABEL,
                struct.pack(">I", len(job)),
                job,
                struct.pack(">QHQ", spec.length, spec.ring_bits, spec.parties),
            ]
        )
    ).digest()


@dataclass(frozen=True)
class SlotLayout:
    """How a sum's values are packed into plaintexts of one key size.

    Attributes:
        slot_bits: Width of a slot (``spec.sum_bits``).
        slots: Values per plaintext.
        ciphertexts: Plaintexts (ciphertexts) per bundle.
        ciphertext_size: Bytes per ciphertext.
    """

    slot_bits: int
    slots: int
    ciphertexts: int
    ciphertext_size: int

    @classmethod
    def for_key(cls, modulus_bits: int, spec: SumSpec) -> SlotLayout:
        """The layout for a ``modulus_bits``-bit key.

        Raises:
            ProtocolError: Not even one slot fits a plaintext.
        """
        slots = (modulus_bits - 1) // spec.sum_bits
        if slots < 1:
            raise ProtocolError(
                f"a {spec.sum_bits}-bit slot does not fit a {modulus_bits}-bit Paillier key"
            )
        return cls(spec.sum_bits, slots, math.ceil(spec.length / slots), 2 * modulus_bits // 8)

    @property
    def packed_bits(self) -> int:
        """Bits a packed plaintext (and any valid sum of them) occupies."""
        return self.slot_bits * self.slots

    @property
    def bundle_size(self) -> int:
        """Bytes of a bundle with this layout."""
        return HEADER.size + self.ciphertexts * self.ciphertext_size


def pack(values: Ring, layout: SlotLayout) -> list[int]:
    """Pack uint64 values (each below ``2**slot_bits``) into plaintext integers."""
    w, s, count = layout.slot_bits, layout.slots, layout.ciphertexts
    padded = np.zeros(count * s, dtype="<u8")
    padded[: values.size] = values
    bits = np.unpackbits(padded.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    bits = bits[:, :w] if w <= 64 else np.pad(bits, ((0, 0), (0, w - 64)))
    rows = np.packbits(bits.reshape(count, s * w), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in rows]


def unpack(plaintexts: list[int], layout: SlotLayout, spec: SumSpec) -> Ring:
    """The low ``ring_bits`` of every slot (the slot sums mod ``2**ring_bits``).

    Raises:
        ProtocolError: A plaintext is wider than the packed layout (the aggregate was
            not formed from valid contributions of this layout).
    """
    w, s = layout.slot_bits, layout.slots
    if any(m.bit_length() > layout.packed_bits for m in plaintexts):
        raise ProtocolError(
            "a decrypted plaintext overflows its packed slots: the aggregate was not formed "
            "from at most `parties` valid contributions"
        )
    nbytes = -(-s * w // 8)
    raw = b"".join(int(m).to_bytes(nbytes, "little") for m in plaintexts)
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(len(plaintexts), nbytes)
    bits = np.unpackbits(rows, axis=1, bitorder="little")[:, : s * w].reshape(-1, w)
    low = np.zeros((bits.shape[0], 64), dtype=np.uint8)
    low[:, : spec.ring_bits] = bits[:, : spec.ring_bits]
    sums = np.packbits(low, axis=1, bitorder="little").view("<u8").reshape(-1)
    return sums[: spec.length].astype(np.uint64)


def write_bundle(
    fingerprint: str, spec: SumSpec, layout: SlotLayout, contributions: int, body: bytes
) -> bytes:
    """Prefix ciphertexts with their header."""
    header = HEADER.pack(
        BUNDLE_MAGIC,
        BUNDLE_VERSION,
        bytes.fromhex(fingerprint),
        spec_digest(spec),
        layout.ciphertext_size,
        layout.slot_bits,
        layout.slots,
        contributions,
        layout.ciphertexts,
    )
    return header + body


def read_bundle(
    data: bytes, fingerprint: str, spec: SumSpec, layout: SlotLayout, *, what: str
) -> tuple[int, memoryview]:
    """Check a bundle's header and length against the key, spec and layout.

    Args:
        data: The bundle.
        fingerprint: Hex fingerprint of the key it must be under.
        spec: The sum it must belong to.
        layout: The layout ``spec`` has under that key.
        what: How to name the bundle in errors (e.g. ``"bundle 3 of 10"``).

    Returns:
        The number of contributions it sums and a view of its ciphertexts.

    Raises:
        ProtocolError: Any mismatch, truncation, padding or count out of range.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"{what} must be bytes, got {type(data).__name__}")
    if len(data) < HEADER.size:
        raise ProtocolError(
            f"{what} is truncated: {len(data)} bytes, shorter than its {HEADER.size}-byte header"
        )
    magic, version, key_fp, digest, size, slot_bits, slots, contributions, count = (
        HEADER.unpack_from(data)
    )
    if magic != BUNDLE_MAGIC:
        raise ProtocolError(f"{what} is not a Paillier ciphertext bundle (wrong magic)")
    if version != BUNDLE_VERSION:
        raise ProtocolError(
            f"{what} has bundle format version {version}; this library reads {BUNDLE_VERSION}"
        )
    if key_fp.hex() != fingerprint:
        raise ProtocolError(
            f"{what} is encrypted under public key {key_fp.hex()[:16]}..., not the job's key "
            f"{fingerprint[:16]}... (a stale or wrong key)"
        )
    if digest != spec_digest(spec):
        raise ProtocolError(
            f"{what} was made for a different sum: its job id, length, ring or party count "
            "differs from this job's"
        )
    found = (size, slot_bits, slots, count)
    expected = (layout.ciphertext_size, layout.slot_bits, layout.slots, layout.ciphertexts)
    if found != expected:
        raise ProtocolError(
            f"{what} declares {count} ciphertexts of {size} bytes with {slots} slots of "
            f"{slot_bits} bits; this key and sum need {layout.ciphertexts} of "
            f"{layout.ciphertext_size} bytes with {layout.slots} slots of {layout.slot_bits} bits"
        )
    if not 1 <= contributions <= spec.parties:
        raise ProtocolError(
            f"{what} sums {contributions} contributions; this sum allows 1 to {spec.parties}"
        )
    if len(data) != layout.bundle_size:
        state = "truncated" if len(data) < layout.bundle_size else "padded"
        raise ProtocolError(f"{what} is {state}: {len(data)} bytes, expected {layout.bundle_size}")
    return int(contributions), memoryview(data)[HEADER.size :]
