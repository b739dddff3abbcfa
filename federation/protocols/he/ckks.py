"""Homomorphic sums under the analyst's CKKS key: exact integers and float vectors.

Roles: the *analyst* makes a :class:`CkksSecretKey` and sends
:meth:`~CkksSecretKey.public_bytes` (a public context: public key only, no secret,
relinearization or Galois keys) with the query; each *node* encrypts once; the
*coordinator* adds (or weights and adds) ciphertexts without any secret; the analyst
decrypts. Privacy contract as for Paillier: nodes and the coordinator learn nothing
(RLWE at 128-bit security); the analyst learns the sums, and the zero-sum masks
(:mod:`federation.protocols.he.masks`) hide single nodes in the exact-integer mode.

Two modes:

- **Exact integers** (:class:`CkksScheme`, the :class:`~federation.protocols.he.scheme.HEScheme`
  interface): masked ring values are split into chunks whose sum decrypts with an
  error below 1/4, so rounding gives the exact sums mod ``2**ring_bits``
  (:class:`~federation.protocols.he.ckks_format.ChunkLayout`).
- **Floats** (:meth:`CkksScheme.encrypt_floats`, :meth:`CkksScheme.aggregate_floats`,
  :meth:`CkksSecretKey.decrypt_floats`): long vectors (model updates, histograms) of
  values ``|x| <= spec.bound``, summed or weighted by public float weights, decrypted
  with absolute error at most
  :func:`~federation.protocols.he.ckks_format.float_error_bound` (e.g. ``7e-10 *
  bound`` for 10 parties under the default preset).

Sizes (``CKKS_4096_SUM``, measured in ``benchmarks/ckks_bench.py``): 2048 values per
ciphertext of about 62 KB, i.e. about 30 bytes per float; the query path's 50-bit
rings take 2 chunks (about 60 bytes per value). The weighted preset's fresh
ciphertexts carry one more prime (about 47 bytes per float).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from federation.crypto.ckks import (
    CiphertextError,
    CkksPreset,
    CkksPrivateKey,
    CkksPublicKey,
    combine,
    encrypt,
)
from federation.crypto.secret import SecretHolder
from federation.errors import ProtocolError
from federation.protocols.he.ckks_format import (
    BundleHeader,
    ChunkLayout,
    FloatLayout,
    FloatSumSpec,
    float_error_bound,
    read_bundle,
    write_bundle,
)
from federation.protocols.he.spec import SumSpec

__all__ = [
    "CKKS",
    "CkksPreset",
    "CkksScheme",
    "CkksSecretKey",
    "FloatSumSpec",
    "float_error_bound",
]

Ring = npt.NDArray[np.uint64]
Floats = npt.NDArray[np.float64]
_ROUNDING_SLACK = 0.25
"""Largest distance from an integer an exact slot may decrypt to (the noise bound)."""


def _public_key(public_key: bytes) -> CkksPublicKey:
    if not isinstance(public_key, bytes):
        raise ProtocolError(f"a CKKS public key must be bytes, got {type(public_key).__name__}")
    try:
        return CkksPublicKey.from_bytes(public_key)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"invalid CKKS public key: {exc}") from None


def _problem(exc: CiphertextError, what: str) -> ProtocolError:
    return ProtocolError(f"{what}: ciphertext {exc.position} {exc.problem}")


def _chunk(values: Ring, layout: ChunkLayout) -> Floats:
    """Chunk ``j`` of value ``i`` at position ``j * length + i`` (exact in float64)."""
    c = np.uint64(layout.chunk_bits)
    low = np.uint64((1 << layout.chunk_bits) - 1)
    planes = [(values >> (c * np.uint64(j))) & low for j in range(layout.chunks)]
    return np.concatenate(planes).astype(np.float64)


def _recombine(slots: Floats, layout: ChunkLayout, spec: SumSpec, contributions: int) -> Ring:
    """Round the slot sums, check them, and add the chunks back up mod ``2**ring_bits``."""
    rounded = np.rint(slots)
    top = contributions * float((1 << layout.chunk_bits) - 1)
    if not np.all(np.abs(slots - rounded) <= _ROUNDING_SLACK):
        raise ProtocolError(
            "a decrypted slot lies off an integer by more than the noise bound allows: the "
            "aggregate was not formed from valid contributions of this sum"
        )
    if not np.all((rounded >= 0) & (rounded <= top)):
        raise ProtocolError(
            "a decrypted slot lies outside [0, contributions * chunk maximum]: the aggregate "
            "was not formed from valid contributions of this sum"
        )
    sums = rounded.astype(np.uint64).reshape(layout.chunks, spec.length)
    out = np.zeros(spec.length, dtype=np.uint64)
    for j in range(layout.chunks):
        out += sums[j] << np.uint64(j * layout.chunk_bits)  # wraps mod 2**64
    if spec.ring_bits < 64:
        out &= np.uint64((1 << spec.ring_bits) - 1)
    return out


class CkksScheme:
    """The node and coordinator side (public key only); :data:`CKKS` is the instance.

    Validated public contexts are cached per encoded key (the most recent
    ``cached_keys``), since parsing one takes a few milliseconds.
    """

    name = "ckks"

    def __init__(self, *, cached_keys: int = 4) -> None:
        self._cached = cached_keys
        self._keys: OrderedDict[bytes, CkksPublicKey] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, public_key: bytes) -> CkksPublicKey:
        with self._lock:
            key = self._keys.get(public_key) if isinstance(public_key, bytes) else None
            if key is not None:
                self._keys.move_to_end(public_key)
                return key
        key = _public_key(public_key)
        with self._lock:
            key = self._keys.setdefault(public_key, key)
            while len(self._keys) > self._cached:
                self._keys.popitem(last=False)
            return key

    def check_public_key(self, public_key: bytes) -> str:
        """Validate a serialized public key; returns its fingerprint (hex SHA-256 of it).

        Raises:
            ProtocolError: Not bytes, malformed, not exactly a preset's parameters, or
                carrying a secret, relinearization or Galois key.
        """
        return self._key(public_key).fingerprint

    def prepare(self, public_key: bytes, spec: SumSpec) -> None:
        """Nothing to precompute: a CKKS encryption draws all its randomness fresh."""
        del public_key, spec

    def preset(self, public_key: bytes) -> CkksPreset:
        """The preset of a public key."""
        return self._key(public_key).preset

    def layout(self, public_key: bytes, spec: SumSpec) -> ChunkLayout:
        """How ``spec``'s values are chunked under ``public_key``."""
        return ChunkLayout.for_spec(self._key(public_key).preset, spec)

    def encrypt(self, public_key: bytes, values: Ring, spec: SumSpec) -> bytes:
        """Encrypt one node's values (each below ``2**spec.ring_bits``) into a bundle.

        Raises:
            ProtocolError: Invalid key, or values of the wrong type, shape or range.
        """
        key = self._key(public_key)
        if not isinstance(values, np.ndarray) or values.dtype != np.uint64:
            raise ProtocolError("CKKS exact sums encrypt a numpy uint64 array")
        if values.shape != (spec.length,):
            raise ProtocolError(f"expected {spec.length} values, got shape {values.shape}")
        if spec.ring_bits < 64 and int(values.max()) >> spec.ring_bits:
            raise ProtocolError(
                f"values must lie below 2**{spec.ring_bits} (reduce them modulo the ring first)"
            )
        layout = ChunkLayout.for_spec(key.preset, spec)
        ciphertexts = encrypt(key, _chunk(values, layout), layout.scale_bits)
        return write_bundle(key.fingerprint, key.preset, layout.header(spec), 1, ciphertexts)

    def aggregate(self, public_key: bytes, ciphertexts: Sequence[bytes], spec: SumSpec) -> bytes:
        """Combine exact-mode bundles into one bundle of their sum (no secret involved).

        Raises:
            ProtocolError: Invalid key; no bundles; a bundle that is malformed, under
                another key, for another sum, or holds an invalid ciphertext (named by
                index); more contributions in total than ``spec.parties``.
        """
        key = self._key(public_key)
        layout = ChunkLayout.for_spec(key.preset, spec)
        header = layout.header(spec)
        return self._combine(key, ciphertexts, header, spec.parties)

    def _combine(
        self,
        key: CkksPublicKey,
        bundles: Sequence[bytes],
        header: BundleHeader,
        parties: int,
        *,
        weights: Sequence[float] | None = None,
        out_header: BundleHeader | None = None,
    ) -> bytes:
        if isinstance(bundles, bytes | str) or not bundles:
            raise ProtocolError("there are no ciphertext bundles to aggregate")
        total = 0
        bodies: list[list[bytes]] = []
        for i, bundle in enumerate(bundles):
            what = f"ciphertext bundle {i} (of {len(bundles)})"
            parsed = read_bundle(bundle, key.fingerprint, key.preset, header, parties, what=what)
            total += parsed.contributions
            bodies.append(parsed.ciphertexts)
        if total > parties:
            raise ProtocolError(
                f"the bundles sum {total} contributions; this sum allows at most {parties}"
            )
        try:
            combined = combine(
                key,
                bodies,
                header.sizes,
                header.scale_bits,
                rescaled=header.rescaled,
                weights=weights,
            )
        except CiphertextError as exc:
            block = exc.block if exc.block is not None else 0
            raise _problem(exc, f"ciphertext bundle {block} (of {len(bundles)})") from None
        except ValueError as exc:
            raise ProtocolError(f"cannot weight these bundles: {exc}") from None
        final = out_header if out_header is not None else header
        return write_bundle(key.fingerprint, key.preset, final, total, combined)

    # ----------------------------------------------------------------------- floats

    def encrypt_floats(self, public_key: bytes, values: Floats, spec: FloatSumSpec) -> bytes:
        """Encrypt one node's float64 vector (every ``|x| <= spec.bound``) into a bundle.

        Costs about 30 bytes on the wire per value under ``CKKS_4096_SUM`` (47 under
        ``CKKS_4096_WEIGHTED``).

        Raises:
            ProtocolError: Invalid key; not a float64 array of ``spec.length``; a value
                that is not finite or exceeds the bound; a weighted spec under a
                preset without a rescale level.
        """
        key = self._key(public_key)
        if not isinstance(values, np.ndarray) or values.dtype != np.float64:
            raise ProtocolError("CKKS float sums encrypt a numpy float64 array")
        if values.shape != (spec.length,):
            raise ProtocolError(f"expected {spec.length} values, got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ProtocolError("CKKS float sums take finite values only (no NaN or infinity)")
        if np.max(np.abs(values)) > spec.bound:
            raise ProtocolError(
                f"a value exceeds the stated bound {spec.bound:g} in magnitude; clip or "
                "rescale the vector, or state a larger bound"
            )
        layout = FloatLayout.for_spec(key.preset, spec)
        ciphertexts = encrypt(key, values, layout.scale_bits)
        header = layout.header(spec, rescaled=False)
        return write_bundle(key.fingerprint, key.preset, header, 1, ciphertexts)

    def aggregate_floats(
        self,
        public_key: bytes,
        ciphertexts: Sequence[bytes],
        spec: FloatSumSpec,
        weights: Sequence[float] | None = None,
        *,
        weighted_inputs: bool = False,
    ) -> bytes:
        """Sum float bundles, or ``sum_i weights[i] * bundle_i`` (one rescale).

        Args:
            public_key: The analyst's key.
            ciphertexts: The node bundles (fresh), or already weighted aggregates
                (``weighted_inputs=True``, no ``weights``).
            spec: The float sum.
            weights: Public plaintext weights, one per bundle, ``|w| <= spec.weight_bound``
                (a weight below ``2**-31`` in magnitude drops its bundle; not all may).
            weighted_inputs: Whether the bundles are already weighted aggregates.

        Raises:
            ProtocolError: Invalid key, spec or weights; a malformed bundle, under
                another key, for another sum; too many contributions.
        """
        key = self._key(public_key)
        layout = FloatLayout.for_spec(key.preset, spec)
        header = layout.header(spec, rescaled=weighted_inputs)
        if weights is None:
            return self._combine(key, ciphertexts, header, spec.parties)
        if weighted_inputs or spec.weight_bound is None:
            raise ProtocolError(
                "weights apply once, to fresh node bundles of a spec with a weight bound"
            )
        w = [float(x) for x in weights]
        if len(w) != len(ciphertexts):
            raise ProtocolError(f"got {len(w)} weights for {len(ciphertexts)} bundles")
        if not all(np.isfinite(x) and abs(x) <= spec.weight_bound for x in w):
            raise ProtocolError(f"weights must be finite with |w| <= {spec.weight_bound:g}")
        out = layout.header(spec, rescaled=True)
        return self._combine(key, ciphertexts, header, spec.parties, weights=w, out_header=out)


CKKS = CkksScheme()
"""The CKKS scheme, as the registry (:mod:`federation.protocols.he.registry`) names it."""


class CkksSecretKey(SecretHolder):
    """The analyst's CKKS key pair; never printed, pickled or copied.

    >>> spec = SumSpec("job", 3, 16, 2)
    >>> key = CkksSecretKey.generate()
    >>> parts = [CKKS.encrypt(key.public_bytes(), np.array(v, np.uint64), spec)
    ...          for v in ([1, 2, 3], [10, 20, 65535])]
    >>> key.decrypt_sum(CKKS.aggregate(key.public_bytes(), parts, spec), spec).tolist()
    [11, 22, 2]
    """

    __slots__ = ("_key",)

    def __init__(self, key: CkksPrivateKey) -> None:
        if not isinstance(key, CkksPrivateKey):
            raise TypeError(f"expected a CkksPrivateKey, got {type(key).__name__}")
        self._key = key

    @classmethod
    def generate(cls, preset: CkksPreset = CkksPreset.CKKS_4096_SUM) -> CkksSecretKey:
        """A fresh key pair (``CKKS_4096_WEIGHTED`` if the coordinator will weight sums)."""
        return cls(CkksPrivateKey.generate(preset))

    @classmethod
    def from_private_bytes(cls, data: bytes) -> CkksSecretKey:
        """Load a key saved with :meth:`export_private`.

        Raises:
            ProtocolError: Malformed data, or not a private context of a preset.
        """
        try:
            return cls(CkksPrivateKey.from_private_bytes(data))
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"invalid CKKS private key: {exc}") from None

    @property
    def preset(self) -> CkksPreset:
        """The key's parameter preset."""
        return self._key.public.preset

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of :meth:`public_bytes` (what bundles carry)."""
        return self._key.public.fingerprint

    def public_bytes(self) -> bytes:
        """The versioned public context: ``b"FCPK" || u8 1 || u8 preset || u32 n || context``."""
        return self._key.public.encoding

    def _decrypt(self, aggregate: bytes, header: BundleHeader, parties: int) -> tuple[int, Floats]:
        key = self._key.public
        bundle = read_bundle(
            aggregate, key.fingerprint, key.preset, header, parties, what="the aggregate"
        )
        try:
            values = self._key.decrypt(
                bundle.ciphertexts,
                header.sizes,
                header.scale_bits,
                rescaled=header.rescaled,
            )
        except CiphertextError as exc:
            raise _problem(exc, "the aggregate") from None
        return bundle.contributions, values

    def decrypt_sum(self, aggregate: bytes, spec: SumSpec) -> Ring:
        """Decrypt an exact-mode aggregate: the per-position sums mod ``2**spec.ring_bits``.

        Raises:
            ProtocolError: The bundle is malformed, under another key, for another sum,
                holds an invalid ciphertext, or decrypts off the integers it must hold.
        """
        layout = ChunkLayout.for_spec(self.preset, spec)
        contributions, slots = self._decrypt(aggregate, layout.header(spec), spec.parties)
        return _recombine(slots, layout, spec, contributions)

    def decrypt_floats(
        self, aggregate: bytes, spec: FloatSumSpec, *, weighted: bool = False
    ) -> Floats:
        """Decrypt a float aggregate (``weighted``: made with weights).

        Each position is within :func:`float_error_bound` of the exact (weighted) sum.

        Raises:
            ProtocolError: The bundle is malformed, under another key, for another sum,
                holds an invalid ciphertext, or decrypts beyond the possible magnitude.
        """
        layout = FloatLayout.for_spec(self.preset, spec)
        n, values = self._decrypt(aggregate, layout.header(spec, rescaled=weighted), spec.parties)
        limit = n * spec.bound * max(1.0, spec.weight_bound or 1.0)
        if not np.all(np.abs(values) <= limit + float_error_bound(self.preset, spec)):
            raise ProtocolError(
                "a decrypted value exceeds contributions * bound: the aggregate was not formed "
                "from valid contributions of this sum"
            )
        return values

    def export_private(self, *, unprotected: bool) -> bytes:
        """The encoded private context (``b"FCSK" || u8 1 || u8 preset || u32 n || context``).

        ``unprotected=True`` acknowledges the key leaves this object unencrypted.

        Raises:
            ValueError: If ``unprotected`` is not ``True``.
        """
        return self._key.export_private(unprotected=unprotected)

    def __repr__(self) -> str:
        return (
            f"CkksSecretKey(preset={self.preset.name}, "
            f"fingerprint={self.fingerprint[:16]}..., private=<redacted>)"
        )
