"""CKKS key pairs and ciphertexts (TenSEAL/SEAL): presets, versioned encodings, validation.

The only module that imports ``tenseal``. It encrypts float64 vectors, adds
ciphertexts, multiplies them by public float weights and decrypts; packing,
bundles and the meaning of the values live in :mod:`federation.protocols.he.ckks`.

**Presets** (:class:`CkksPreset`; 128-bit classical security by the Homomorphic
Encryption Standard table: ``N = 4096`` allows 109 bits of coefficient modulus).
TenSEAL always generates relinearization keys, so SEAL needs a key-switching
("special") prime at the end of the chain even for a pure sum; one data prime
alone (``N = 2048``, one 54-bit prime) is refused ("keyswitching is not supported
by the context"). The special prime is never part of a ciphertext on the wire and
also divides the fresh encryption noise (SEAL encrypts at the key level, then
switches down), so it is kept small:

=====================  =====  ================  ====================================
preset                 N      chain (bits)      use
=====================  =====  ================  ====================================
``CKKS_4096_SUM``      4096   56, 20            sums (default); ~30 bytes per slot
``CKKS_4096_WEIGHTED`` 4096   56, 30, 20        weighted sums: one rescale by the 30-bit
                                                prime; ~47 bytes per slot fresh
=====================  =====  ================  ====================================

``N = 2048`` (54 bits at most) would leave a 40-bit data prime, whose precision for
ten parties is about 1e-5 of the value bound (see :attr:`CkksPreset.fresh_noise`);
``benchmarks/ckks_bench.py`` measures it for comparison.

**Noise.** A fresh ciphertext decrypts to ``value * scale + e`` with
``|e| <= fresh_noise`` in every slot (canonical-embedding bound of Cheon, Kim, Kim
and Song 2017, Lemmas 1-2, for the mod-switch rounding ``sqrt(N/3) * (3 + 8 sqrt(h))``
with ``h = 2N/3``, plus the fresh noise divided by the special prime; measured maxima
are about half of it). Sums add the noises; a multiplication by a weight ``w``
multiplies it by ``|w|`` and the rescale adds at most ``fresh_noise`` again.

Encodings (big-endian, no pickle; the body is TenSEAL's own protobuf serialization)::

    public key   b"FCPK" || u8 version=1 || u8 preset || u32 length || public context
    private key  b"FCSK" || u8 version=1 || u8 preset || u32 length || private context

A public key's fingerprint is the SHA-256 of its encoding (hex). Decoding checks
the sizes before TenSEAL parses anything, wraps every TenSEAL failure, and checks
that the context is exactly the preset's parameters (SEAL's parameter hash), holds
a public key and no secret, relinearization or Galois keys.
"""

from __future__ import annotations

import enum
import hashlib
import math
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import gmpy2
import numpy as np
import numpy.typing as npt
import tenseal as ts

from federation.crypto.secret import SecretHolder

__all__ = [
    "CiphertextError",
    "CkksPreset",
    "CkksPrivateKey",
    "CkksPublicKey",
    "combine",
    "encrypt",
]

PUBLIC_MAGIC = b"FCPK"
PRIVATE_MAGIC = b"FCSK"
KEY_VERSION = 1
_KEY_HEADER = struct.Struct(">4sBBI")
_OVERHEAD = 4096
"""Bytes a serialization may carry beyond its raw coefficients (protobuf and SEAL headers)."""

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Params:
    code: int
    degree: int
    bits: tuple[int, ...]


class CkksPreset(enum.Enum):
    """Named CKKS parameter sets at 128-bit security."""

    CKKS_4096_SUM = _Params(1, 4096, (56, 20))
    """Sums: one 56-bit data prime (and a 20-bit key-switching prime). The default."""
    CKKS_4096_WEIGHTED = _Params(2, 4096, (56, 30, 20))
    """Weighted sums: one rescale level (the 30-bit prime) for the plaintext weights."""

    @property
    def code(self) -> int:
        """The preset's byte in encodings."""
        return self.value.code

    @property
    def poly_modulus_degree(self) -> int:
        """The ring degree ``N``."""
        return self.value.degree

    @property
    def coeff_bits(self) -> tuple[int, ...]:
        """Bit sizes of the modulus chain (the last prime is the key-switching one)."""
        return self.value.bits

    @property
    def slots(self) -> int:
        """Values per ciphertext (``N / 2``)."""
        return self.value.degree // 2

    @property
    def data_bits(self) -> int:
        """Bits of the prime left after every rescale: what a result must fit in."""
        return self.value.bits[0]

    @property
    def weighted(self) -> bool:
        """True if ciphertexts can be multiplied by a plaintext weight (one rescale)."""
        return len(self.value.bits) > 2

    @property
    def fresh_noise(self) -> float:
        """Bound on a fresh ciphertext's (and on a rescale's) noise in any slot.

        ``sqrt(N/3) * (3 + 8 sqrt(h)) + 1`` with ``h = 2N/3``: the mod-switch rounding
        bound of CKKS (Cheon et al. 2017, Lemma 2), plus 1 for the key-level
        encryption noise divided by the special prime. Divide by the scale for the
        error in the decrypted value.
        """
        n = self.poly_modulus_degree
        return math.sqrt(n / 3) * (3 + 8 * math.sqrt(2 * n / 3)) + 1

    @property
    def capacity_bits(self) -> int:
        """``scale * |value|`` of any result must stay below ``2**capacity_bits``.

        Three bits below the data prime (room for the noise and the sign), and at
        most 53 so that every decrypted coefficient is an exact float64.
        """
        return min(self.data_bits - 3, 53)

    def max_ciphertext_bytes(self, *, rescaled: bool) -> int:
        """Largest plausible serialized ciphertext (raw coefficients plus headers)."""
        primes = 1 if rescaled or not self.weighted else len(self.coeff_bits) - 1
        return 2 * self.poly_modulus_degree * primes * 8 + _OVERHEAD

    def max_key_bytes(self, *, private: bool) -> int:
        """Largest plausible serialized context of this preset."""
        polys = 3 if private else 2
        return polys * self.poly_modulus_degree * len(self.coeff_bits) * 8 + _OVERHEAD

    @classmethod
    def for_code(cls, code: int) -> CkksPreset:
        """The preset with encoding byte ``code``.

        Raises:
            ValueError: No preset has that code.
        """
        for preset in cls:
            if preset.code == code:
                return preset
        raise ValueError(f"unknown CKKS preset {code}; known: {[p.code for p in cls]}")


def _top_prime(bits: int, degree: int, below: int) -> int:
    """SEAL's choice: the largest prime ``< below`` of ``bits`` bits that is 1 mod 2N."""
    step = 2 * degree
    candidate = below - (below - 1) % step
    if candidate == below:
        candidate -= step
    while candidate.bit_length() == bits:
        if gmpy2.is_prime(candidate, 40):
            return candidate
        candidate -= step
    raise ValueError(f"no {bits}-bit prime for N = {degree}")  # pragma: no cover


@cache
def _primes(preset: CkksPreset) -> tuple[int, ...]:
    """The chain's primes, as SEAL's ``CoeffModulus::Create`` picks them."""
    out: list[int] = []
    for bits in preset.coeff_bits:
        below = min([p for p in out if p.bit_length() == bits], default=1 << bits)
        out.append(_top_prime(bits, preset.poly_modulus_degree, below))
    return tuple(out)


def _new_context(preset: CkksPreset) -> Any:
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        preset.poly_modulus_degree,
        coeff_mod_bit_sizes=list(preset.coeff_bits),
        n_threads=1,
    )
    _configure(context)
    return context


def _configure(context: Any) -> None:
    context.auto_rescale = True
    context.auto_relin = False
    context.auto_mod_switch = False


@cache
def _reference(preset: CkksPreset) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """SEAL's parameter hashes (key level, fresh level, last level) for ``preset``."""
    seal = _new_context(preset).seal_context().data
    primes = _primes(preset)
    first = seal.first_context_data()
    product = math.prod(primes[:-1])
    if seal.last_context_data().total_coeff_modulus() != primes[
        0
    ] or first.total_coeff_modulus() != product % (
        1 << 64
    ):  # pragma: no cover - SEAL changed its prime selection
        raise RuntimeError("SEAL picked other primes than expected for the CKKS preset")
    return (
        tuple(seal.key_parms_id()),
        tuple(seal.first_parms_id()),
        tuple(seal.last_parms_id()),
    )


def _check_parameters(context: Any, preset: CkksPreset, what: str) -> None:
    seal = context.seal_context().data
    if tuple(seal.key_parms_id()) != _reference(preset)[0]:
        raise ValueError(f"the {what} does not have the parameters of preset {preset.name}")


def _read_key(data: bytes, magic: bytes, what: str) -> tuple[CkksPreset, bytes]:
    if not isinstance(data, bytes):
        raise TypeError(f"a CKKS {what} must be bytes, got {type(data).__name__}")
    if len(data) < _KEY_HEADER.size:
        raise ValueError(f"a CKKS {what} has at least {_KEY_HEADER.size} bytes, got {len(data)}")
    found, version, code, length = _KEY_HEADER.unpack_from(data)
    if found != magic:
        raise ValueError(f"not an encoded CKKS {what} (wrong magic)")
    if version != KEY_VERSION:
        raise ValueError(f"CKKS {what} encoding version {version}; expected {KEY_VERSION}")
    preset = CkksPreset.for_code(code)
    limit = preset.max_key_bytes(private=magic == PRIVATE_MAGIC)
    if length > limit:
        raise ValueError(f"a {preset.name} {what} has at most {limit} bytes, declares {length}")
    if len(data) != _KEY_HEADER.size + length:
        state = "truncated" if len(data) < _KEY_HEADER.size + length else "padded"
        raise ValueError(
            f"the CKKS {what} is {state}: {len(data)} bytes, expected {_KEY_HEADER.size + length}"
        )
    return preset, data[_KEY_HEADER.size :]


def _load_context(body: bytes, what: str) -> Any:
    try:
        context = ts.context_from(body, n_threads=1)
    except Exception:  # TenSEAL raises bare RuntimeError/ValueError/protobuf errors
        raise ValueError(f"the CKKS {what} does not parse as a TenSEAL context") from None
    _configure(context)
    return context


def _encode_key(magic: bytes, preset: CkksPreset, body: bytes) -> bytes:
    return _KEY_HEADER.pack(magic, KEY_VERSION, preset.code, len(body)) + body


class CiphertextError(ValueError):
    """A ciphertext of a bundle is invalid (``block``: which bundle, ``position``: which one)."""

    def __init__(self, position: int, problem: str, block: int | None = None) -> None:
        super().__init__(f"ciphertext {position} {problem}")
        self.position = position
        self.problem = problem
        self.block = block


class CkksPublicKey:
    """A validated public CKKS context (public key only).

    Attributes:
        preset: The parameter preset.
        encoding: The versioned encoding (what travels).
        fingerprint: Hex SHA-256 of ``encoding``.
    """

    __slots__ = ("_context", "_lock", "encoding", "fingerprint", "preset")

    def __init__(self, preset: CkksPreset, encoding: bytes, context: Any) -> None:
        self.preset = preset
        self.encoding = encoding
        self.fingerprint = hashlib.sha256(encoding).hexdigest()
        self._context = context
        self._lock = threading.Lock()

    @classmethod
    def from_bytes(cls, data: bytes) -> CkksPublicKey:
        """Decode and validate an encoded public key.

        Raises:
            TypeError: ``data`` is not bytes.
            ValueError: Wrong magic, version, preset or length; not a TenSEAL context;
                other parameters than the preset's; a secret key inside; no public
                key; relinearization or Galois keys inside.
        """
        preset, body = _read_key(data, PUBLIC_MAGIC, "public key")
        context = _load_context(body, "public key")
        if context.has_secret_key() or context.is_private():
            raise ValueError("the CKKS public key contains a secret key; send only the public one")
        if not context.has_public_key():
            raise ValueError("the CKKS public key has no public key inside")
        if context.has_relin_keys() or context.has_galois_keys():
            raise ValueError(
                "the CKKS public key carries relinearization or Galois keys; a sum needs neither"
            )
        _check_parameters(context, preset, "public key")
        return cls(preset, bytes(data), context)

    def __repr__(self) -> str:
        return f"CkksPublicKey(preset={self.preset.name}, fingerprint={self.fingerprint[:16]}...)"


def encrypt(key: CkksPublicKey, values: Floats, scale_bits: int) -> list[bytes]:
    """Encrypt a float64 vector, ``key.preset.slots`` values per ciphertext.

    The caller has checked that ``2**scale_bits * |value|`` stays below
    ``2**preset.capacity_bits``.

    Returns:
        The serialized ciphertexts (the last one may hold fewer values).
    """
    slots = key.preset.slots
    scale = float(2**scale_bits)
    out: list[bytes] = []
    context = key._context.data
    with key._lock:
        for start in range(0, values.size, slots):
            block = values[start : start + slots].tolist()
            # The C++ constructor directly: the Python wrapper first copies the list
            # into a PlainTensor, which costs about 40% of the encryption time.
            out.append(ts._ts_cpp.CKKSVector(context, block, scale).serialize())
    return out


def _level(preset: CkksPreset, rescaled: bool) -> tuple[int, ...]:
    return _reference(preset)[2 if rescaled else 1]


def _load(
    context: Any, preset: CkksPreset, blob: bytes, *, size: int, scale: float, rescaled: bool
) -> Any:
    """Parse one ciphertext and check it is exactly what the bundle header promises."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise ValueError("is not bytes")
    limit = preset.max_ciphertext_bytes(rescaled=rescaled)
    if not 0 < len(blob) <= limit:
        raise ValueError(f"has {len(blob)} bytes; a {preset.name} ciphertext has 1 to {limit}")
    try:
        vector = ts.ckks_vector_from(context, bytes(blob))
        parts = vector.ciphertext()
        found_size = vector.size()
    except Exception:  # TenSEAL/SEAL reject malformed input with assorted exceptions
        raise ValueError("does not parse as a CKKS ciphertext of this key") from None
    if len(parts) != 1 or found_size != size:
        raise ValueError(f"holds {found_size} values in {len(parts)} parts; expected {size} in 1")
    ct = parts[0]
    if (
        ct.size() != 2
        or not ct.is_ntt_form()
        or ct.poly_modulus_degree() != (preset.poly_modulus_degree)
    ):
        raise ValueError("is not a fresh two-component ciphertext of this preset")
    if tuple(ct.parms_id()) != _level(preset, rescaled):
        raise ValueError(f"is at the wrong level (expected {'rescaled' if rescaled else 'fresh'})")
    if ct.scale != scale:
        raise ValueError("has another scale than its bundle declares")
    return vector


def _weight_factor(preset: CkksPreset, scale: float) -> float:
    """TenSEAL encodes a weight at the vector's scale and relabels the rescaled result
    with that scale; multiplying by ``w * q1 / scale`` makes the result exactly ``w * x``
    up to rounding ``w * q1`` to an integer (error at most ``|x| / (2 q1)``)."""
    return _primes(preset)[1] / scale


def combine(
    key: CkksPublicKey,
    bundles: Sequence[Sequence[bytes]],
    sizes: Sequence[int],
    scale_bits: int,
    *,
    rescaled: bool,
    weights: Sequence[float] | None = None,
) -> list[bytes]:
    """Sum bundles of ciphertexts position by position, optionally weighting each bundle.

    Args:
        key: The public key they are under.
        bundles: Each bundle's serialized ciphertexts (same count as ``sizes``).
        sizes: Values each ciphertext position holds.
        scale_bits: The scale every ciphertext must carry.
        rescaled: Whether the inputs are already rescaled (weighted) ones.
        weights: One plaintext weight per bundle (needs a weighted preset and fresh
            inputs); the outputs are then rescaled.

    Raises:
        CiphertextError: A ciphertext is malformed, of another key, level or scale.
        ValueError: Weights without a weighted preset, or all of them zero.
    """
    preset = key.preset
    scale = float(2**scale_bits)
    if weights is not None and (rescaled or not preset.weighted):
        raise ValueError("weights need fresh ciphertexts under a weighted preset")
    factor = _weight_factor(preset, scale) if weights is not None else 0.0
    out: list[bytes] = []
    with key._lock:
        for position, size in enumerate(sizes):
            total: Any = None
            for block, bundle in enumerate(bundles):
                try:
                    vector = _load(
                        key._context,
                        preset,
                        bundle[position],
                        size=size,
                        scale=scale,
                        rescaled=rescaled,
                    )
                except ValueError as exc:
                    raise CiphertextError(position, str(exc), block) from None
                if weights is not None:
                    weight = float(weights[block]) * factor
                    if round(weight * scale) == 0:
                        continue  # a zero weight: TenSEAL would skip the rescale
                    vector = vector * weight
                total = vector if total is None else total + vector
            if total is None:
                raise ValueError("every weight rounds to zero: there is nothing to sum")
            out.append(total.serialize())
    return out


class CkksPrivateKey(SecretHolder):
    """The analyst's CKKS context with its secret key; never printed, pickled or copied."""

    __slots__ = ("_context", "_lock", "public")

    def __init__(self, preset: CkksPreset, context: Any) -> None:
        body = context.serialize(
            save_public_key=True,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        public = _load_context(body, "public key")
        self.public = CkksPublicKey(preset, _encode_key(PUBLIC_MAGIC, preset, body), public)
        self._context = context
        self._lock = threading.Lock()

    @classmethod
    def generate(cls, preset: CkksPreset = CkksPreset.CKKS_4096_SUM) -> CkksPrivateKey:
        """A fresh key pair (SEAL's key generation, seeded from the OS)."""
        if not isinstance(preset, CkksPreset):
            raise TypeError(f"expected a CkksPreset, got {type(preset).__name__}")
        return cls(preset, _new_context(preset))

    @classmethod
    def from_private_bytes(cls, data: bytes) -> CkksPrivateKey:
        """Rebuild a key from :meth:`export_private` output.

        Raises:
            TypeError: ``data`` is not bytes.
            ValueError: Malformed encoding, no secret key, or not the preset's parameters.
        """
        preset, body = _read_key(data, PRIVATE_MAGIC, "private key")
        context = _load_context(body, "private key")
        if not context.has_secret_key() or not context.has_public_key():
            raise ValueError("the CKKS private key encoding lacks its secret or public key")
        _check_parameters(context, preset, "private key")
        return cls(preset, context)

    def export_private(self, *, unprotected: bool) -> bytes:
        """The encoded private context; ``unprotected=True`` acknowledges it leaves this object.

        Raises:
            ValueError: If ``unprotected`` is not ``True``.
        """
        if unprotected is not True:
            raise ValueError("pass unprotected=True to export a private key deliberately")
        body = self._context.serialize(
            save_public_key=True,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        return _encode_key(PRIVATE_MAGIC, self.public.preset, body)

    def decrypt(
        self, blobs: Sequence[bytes], sizes: Sequence[int], scale_bits: int, *, rescaled: bool
    ) -> Floats:
        """Decrypt a bundle's ciphertexts into one float64 vector (their values in order).

        Raises:
            CiphertextError: A ciphertext is malformed, of another key, level or scale.
        """
        preset = self.public.preset
        scale = float(2**scale_bits)
        parts: list[Floats] = []
        with self._lock:
            for position, (blob, size) in enumerate(zip(blobs, sizes, strict=True)):
                try:
                    vector = _load(
                        self._context, preset, blob, size=size, scale=scale, rescaled=rescaled
                    )
                except ValueError as exc:
                    raise CiphertextError(position, str(exc)) from None
                try:
                    parts.append(np.asarray(vector.decrypt(), dtype=np.float64))
                except Exception:  # SEAL refuses e.g. a transparent ciphertext
                    raise CiphertextError(position, "does not decrypt under this key") from None
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)

    def __repr__(self) -> str:
        return (
            f"CkksPrivateKey(preset={self.public.preset.name}, "
            f"fingerprint={self.public.fingerprint[:16]}..., secret=<redacted>)"
        )
