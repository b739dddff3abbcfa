"""CKKS sums on the wire: exact-integer chunking, float scales and the bundle format.

**Exact integers** (:class:`ChunkLayout`). CKKS is approximate: a sum of ``n <=
parties`` fresh ciphertexts decrypts to ``sum + e / scale`` with ``|e| <= n *
fresh_noise`` (:attr:`~federation.crypto.ckks_presets.CkksPreset.fresh_noise`). With
``scale = 2**(noise_bits + 2 + party_bits)`` (``noise_bits = ceil(log2
fresh_noise)``) the error stays below ``parties * fresh_noise / scale <= 1/4``, so
rounding recovers the exact integer sum of each slot. Each value below
``2**ring_bits`` is split into ``chunks`` pieces of ``chunk_bits`` bits (chunk ``j``
of value ``i`` in slot ``j * length + i``); a slot's sum is below
``2**(chunk_bits + party_bits)``, so ``scale * sum <= 2**capacity_bits`` (53: the
decrypted coefficients are exact float64 and far below the 56-bit prime) gives
``chunk_bits = capacity_bits - noise_bits - 2 - 2 * party_bits``: 33 bits for up
to 4 parties, 29 for 16, so the query path's 50- to 52-bit rings take 2 chunks
(2 slots, about 60 bytes a value). The analyst rounds, checks that each slot lies
within 1/4 of an integer in ``[0, contributions * (2**chunk_bits - 1)]`` (anything
else was not formed from valid contributions) and recombines
``sum_j chunk_j * 2**(j * chunk_bits) mod 2**ring_bits``.

**Floats** (:class:`FloatSumSpec`). Values ``|x| <= bound`` are encrypted at the
largest power-of-two scale with ``scale * parties * bound * max(1, weight_bound) <=
2**(capacity_bits - 1)`` (and, for weighted sums, at most ``2**41``: the weight is
encoded at the same scale and the product's scale must fit the fresh modulus);
:func:`float_error_bound` is the stated absolute error.

**Bundles.** A node's contribution and the coordinator's aggregate share one format
(big-endian)::

    magic             4 bytes   b"FCKB"
    version           u8        1
    mode              u8        1 exact integers, 2 floats
    preset            u8        the key's preset code
    rescaled          u8        1 if weighted (one rescale done), else 0
    key fingerprint   32 bytes  SHA-256 of the public key's encoding
    spec digest       32 bytes  SHA-256 of the spec
    scale bits        u16
    chunk bits        u8        (0 for floats)
    contributions     u32       node bundles summed (1 for a node's bundle)
    count             u32       ciphertexts
    count times:      u32 length || TenSEAL-serialized CKKS vector

Readers recompute every field from the key and the spec and reject any difference,
truncation or trailing bytes with a :class:`ProtocolError` naming the field. The
ciphertext bodies are not authenticated: a flipped bit inside one is caught only
when it breaks SEAL's parsing or validity checks or pushes a slot off an integer
(exact mode); otherwise it garbles the sum, as a lying node could. Integrity
against the coordinator comes from the transport; the zero-sum masks keep any
garbled or partial sum meaningless rather than revealing.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

from federation.crypto.ckks import CkksPreset
from federation.errors import ProtocolError
from federation.protocols.he.spec import SumSpec

__all__ = [
    "BUNDLE_MAGIC",
    "BUNDLE_VERSION",
    "HEADER",
    "Bundle",
    "BundleHeader",
    "ChunkLayout",
    "FloatLayout",
    "FloatSumSpec",
    "float_error_bound",
    "read_bundle",
    "write_bundle",
]

BUNDLE_MAGIC = b"FCKB"
BUNDLE_VERSION = 1
HEADER = struct.Struct(">4sBBBB32s32sHBII")
_LENGTH = struct.Struct(">I")
MODE_EXACT = 1
MODE_FLOAT = 2
MIN_FLOAT_SCALE_BITS = 20
"""Float sums whose bound leaves a smaller scale are refused (too imprecise)."""


def _noise_bits(preset: CkksPreset) -> int:
    return math.ceil(math.log2(preset.fresh_noise))


def _spec_digest(label: bytes, job_id: str, fields: bytes) -> bytes:
    job = job_id.encode("utf-8")
    return hashlib.sha256(b"".join([label, struct.pack(">I", len(job)), job, fields])).digest()


@dataclass(frozen=True)
class BundleHeader:
    mode: int
    scale_bits: int
    chunk_bits: int
    sizes: tuple[int, ...]
    rescaled: bool
    digest: bytes


@dataclass(frozen=True)
class ChunkLayout:
    """How an exact sum's values are split into chunks and ciphertexts.

    Attributes:
        scale_bits: ``log2`` of the encoding scale.
        chunk_bits: Bits per chunk.
        chunks: Chunks (slots) per value.
        sizes: Slots held by each ciphertext.
    """

    scale_bits: int
    chunk_bits: int
    chunks: int
    sizes: tuple[int, ...]

    @classmethod
    def for_spec(cls, preset: CkksPreset, spec: SumSpec) -> ChunkLayout:
        """The layout of ``spec`` under ``preset``.

        Raises:
            ProtocolError: So many parties that not even one-bit chunks are exact.
        """
        pb = spec.party_bits
        scale_bits = _noise_bits(preset) + 2 + pb
        room = preset.capacity_bits - scale_bits - pb
        if room < 1:
            raise ProtocolError(
                f"{spec.parties} parties are too many for exact CKKS sums under "
                f"{preset.name}; use at most {2 ** ((preset.capacity_bits - scale_bits + pb) // 2)}"
            )
        chunk_bits = min(room, spec.ring_bits)
        chunks = math.ceil(spec.ring_bits / chunk_bits)
        total = chunks * spec.length
        sizes = tuple(min(preset.slots, total - s) for s in range(0, total, preset.slots))
        return cls(scale_bits, chunk_bits, chunks, sizes)

    def header(self, spec: SumSpec) -> BundleHeader:
        """What a bundle of this layout declares."""
        digest = _spec_digest(
            b"federation/he/ckks/sum-spec/v1\x00",
            spec.job_id,
            struct.pack(">QHQ", spec.length, spec.ring_bits, spec.parties),
        )
        return BundleHeader(MODE_EXACT, self.scale_bits, self.chunk_bits, self.sizes, False, digest)


@dataclass(frozen=True)
class FloatSumSpec:
    """A (weighted) sum of ``length`` floats ``|x| <= bound`` from at most ``parties`` nodes.

    Attributes:
        job_id: The job; bound into bundle headers.
        length: Values per node.
        bound: The largest magnitude a node may contribute (finite, positive).
        parties: Largest number of contributions summed.
        weight_bound: ``None`` for plain sums; else the largest ``|weight|`` the
            coordinator may apply (needs the weighted preset).
    """

    job_id: str
    length: int
    bound: float
    parties: int
    weight_bound: float | None = None

    def __post_init__(self) -> None:
        if not self.job_id:
            raise ProtocolError("a float sum spec needs a job id")
        if self.length < 1:
            raise ProtocolError(f"a float sum spec needs at least one value, got {self.length}")
        if not (math.isfinite(self.bound) and self.bound > 0):
            raise ProtocolError("a float sum spec needs a finite, positive value bound")
        if self.parties < 1:
            raise ProtocolError(f"a sum needs at least one party, got {self.parties}")
        wb = self.weight_bound
        if wb is not None and not (math.isfinite(wb) and wb > 0):
            raise ProtocolError("the weight bound must be finite and positive (or None)")

    @property
    def magnitude(self) -> float:
        """Largest ``|result|``: ``parties * bound * max(1, weight_bound)``."""
        return self.parties * self.bound * max(1.0, self.weight_bound or 1.0)

    def digest(self) -> bytes:
        """SHA-256 of the spec's canonical encoding."""
        fields = struct.pack(
            ">QdQBd",
            self.length,
            self.bound,
            self.parties,
            self.weight_bound is not None,
            self.weight_bound or 0.0,
        )
        return _spec_digest(b"federation/he/ckks/float-spec/v1\x00", self.job_id, fields)


@dataclass(frozen=True)
class FloatLayout:
    """Scale and ciphertext sizes of a float sum.

    Attributes:
        scale_bits: ``log2`` of the encoding scale.
        sizes: Values held by each ciphertext.
    """

    scale_bits: int
    sizes: tuple[int, ...]

    @classmethod
    def for_spec(cls, preset: CkksPreset, spec: FloatSumSpec) -> FloatLayout:
        """The layout of ``spec`` under ``preset``.

        Raises:
            ProtocolError: A weighted spec under a preset without a rescale level, or
                a bound so large that the scale would drop below ``2**20``.
        """
        if spec.weight_bound is not None and not preset.weighted:
            raise ProtocolError(
                f"weighted sums need the {CkksPreset.CKKS_4096_WEIGHTED.name} preset; "
                f"this key is {preset.name}"
            )
        scale_bits = math.floor(preset.capacity_bits - 1 - math.log2(spec.magnitude))
        if scale_bits < MIN_FLOAT_SCALE_BITS:
            raise ProtocolError(
                f"parties * bound * weight bound = {spec.magnitude:.3g} is too large for "
                f"{preset.name}: at most 2**{preset.capacity_bits - 1 - MIN_FLOAT_SCALE_BITS}"
            )
        scale_bits = min(scale_bits, preset.capacity_bits - 1)  # small bounds: SEAL's limit
        if spec.weight_bound is not None:
            # TenSEAL encodes a weight at the vector's scale: the product's scale (its
            # square) must stay below the fresh modulus (86 bits), 2**41 for the preset.
            scale_bits = min(scale_bits, (sum(preset.coeff_bits[:-1]) - 1) // 2 - 1)
        n = spec.length
        sizes = tuple(min(preset.slots, n - s) for s in range(0, n, preset.slots))
        return cls(scale_bits, sizes)

    def header(self, spec: FloatSumSpec, *, rescaled: bool) -> BundleHeader:
        """What a bundle of this layout declares."""
        return BundleHeader(MODE_FLOAT, self.scale_bits, 0, self.sizes, rescaled, spec.digest())


def float_error_bound(preset: CkksPreset, spec: FloatSumSpec) -> float:
    """The absolute error bound of every decrypted position of a float sum.

    Plain sums: ``parties * fresh_noise / scale + parties * bound * 2**-45`` (noise,
    then float64 encoding and decoding). Weighted sums add ``(parties * weight_bound
    + 1) * fresh_noise / scale`` (weighted noise and the rescale) and ``parties *
    bound / 2**30`` (each weight is rounded to a multiple of ``1 / q1``, ``q1 >
    2**29``). With ``scale >= 2**(capacity_bits - 2) / magnitude`` this is at most about
    ``2**-37 * parties**2 * bound`` for plain sums under ``CKKS_4096_SUM`` (7e-10 *
    bound for 10 parties, 7e-6 * bound for 1000).
    """
    layout = FloatLayout.for_spec(preset, spec)
    noise = spec.parties * preset.fresh_noise
    extra = spec.parties * spec.bound * 2.0**-45
    if spec.weight_bound is not None:
        noise += (spec.parties * spec.weight_bound + 1) * preset.fresh_noise
        extra += spec.parties * spec.bound * 2.0**-30
    return noise / 2.0**layout.scale_bits + extra


@dataclass(frozen=True)
class Bundle:
    """A parsed bundle: how many contributions it sums, and its ciphertexts."""

    contributions: int
    ciphertexts: list[bytes]


def write_bundle(
    fingerprint: str,
    preset: CkksPreset,
    layout: BundleHeader,
    contributions: int,
    ciphertexts: list[bytes],
) -> bytes:
    """Prefix length-framed ciphertexts with their header."""
    header = HEADER.pack(
        BUNDLE_MAGIC,
        BUNDLE_VERSION,
        layout.mode,
        preset.code,
        int(layout.rescaled),
        bytes.fromhex(fingerprint),
        layout.digest,
        layout.scale_bits,
        layout.chunk_bits,
        contributions,
        len(ciphertexts),
    )
    return b"".join([header, *(_LENGTH.pack(len(c)) + c for c in ciphertexts)])


def read_bundle(
    data: bytes,
    fingerprint: str,
    preset: CkksPreset,
    layout: BundleHeader,
    parties: int,
    *,
    what: str,
) -> Bundle:
    """Check a bundle's header and framing against the key, spec and layout.

    Raises:
        ProtocolError: Any mismatch, truncation, padding, oversized ciphertext or
            contribution count out of range.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"{what} must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER.size:
        raise ProtocolError(
            f"{what} is truncated: {len(data)} bytes, shorter than its {HEADER.size}-byte header"
        )
    (magic, version, mode, code, rescaled, key_fp, digest, scale_bits, chunk_bits, contributions,
     count) = HEADER.unpack_from(data)  # fmt: skip
    if magic != BUNDLE_MAGIC:
        raise ProtocolError(f"{what} is not a CKKS ciphertext bundle (wrong magic)")
    if version != BUNDLE_VERSION:
        raise ProtocolError(
            f"{what} has bundle format version {version}; this library reads {BUNDLE_VERSION}"
        )
    if key_fp.hex() != fingerprint:
        raise ProtocolError(
            f"{what} is encrypted under public key {key_fp.hex()[:16]}..., not the job's key "
            f"{fingerprint[:16]}... (a stale or wrong key)"
        )
    if (mode, code) != (layout.mode, preset.code):
        raise ProtocolError(
            f"{what} declares mode {mode} and preset {code}; expected mode {layout.mode} "
            f"and preset {preset.code}"
        )
    if digest != layout.digest:
        raise ProtocolError(
            f"{what} was made for a different sum: its job id, length, range or party count "
            "differs from this job's"
        )
    found = (scale_bits, chunk_bits, bool(rescaled), count)
    expected = (layout.scale_bits, layout.chunk_bits, layout.rescaled, len(layout.sizes))
    if found != expected or rescaled > 1:
        raise ProtocolError(
            f"{what} declares scale 2**{scale_bits}, {chunk_bits}-bit chunks, rescaled="
            f"{rescaled} and {count} ciphertexts; this key and sum need 2**{layout.scale_bits}, "
            f"{layout.chunk_bits}, {int(layout.rescaled)} and {len(layout.sizes)}"
        )
    if not 1 <= contributions <= parties:
        raise ProtocolError(
            f"{what} sums {contributions} contributions; this sum allows 1 to {parties}"
        )
    return Bundle(int(contributions), _split(data, preset, layout, what))


def _split(data: bytes, preset: CkksPreset, layout: BundleHeader, what: str) -> list[bytes]:
    """The length-framed ciphertexts after the header (sizes checked before any parsing)."""
    count = len(layout.sizes)
    limit = preset.max_ciphertext_bytes(rescaled=layout.rescaled)
    offset = HEADER.size
    ciphertexts: list[bytes] = []
    for position in range(count):
        if offset + _LENGTH.size > len(data):
            raise ProtocolError(f"{what} is truncated at ciphertext {position} of {count}")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if not 0 < length <= limit:
            raise ProtocolError(
                f"{what}: ciphertext {position} declares {length} bytes; at most {limit}"
            )
        if offset + length > len(data):
            raise ProtocolError(f"{what} is truncated at ciphertext {position} of {count}")
        ciphertexts.append(data[offset : offset + length])
        offset += length
    if offset != len(data):
        raise ProtocolError(f"{what} is padded: {len(data) - offset} bytes after its ciphertexts")
    return ciphertexts
