"""CKKS key pairs and ciphertexts (TenSEAL/SEAL): presets, versioned encodings, validation.

With :mod:`federation.crypto.ckks_context` and :mod:`federation.crypto.ckks_ciphertexts`,
the only code that imports ``tenseal``. It encrypts float64 vectors, adds
ciphertexts, multiplies them by public float weights and decrypts; packing,
bundles and the meaning of the values live in :mod:`federation.protocols.he.ckks`.

**Presets** (:class:`~federation.crypto.ckks_presets.CkksPreset`; 128-bit classical
security by the Homomorphic Encryption Standard table: ``N = 4096`` allows 109 bits of
coefficient modulus). TenSEAL always generates relinearization keys, so SEAL needs a
key-switching ("special") prime at the end of the chain even for a pure sum; one data prime
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
ten parties is about 1e-5 of the value bound (see
:attr:`~federation.crypto.ckks_presets.CkksPreset.fresh_noise`);
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

This module holds the key pairs (:class:`CkksPublicKey`, :class:`CkksPrivateKey`), their
encodings, and what is done under them (:func:`encrypt`, :func:`combine`,
:meth:`CkksPrivateKey.decrypt`); the presets and their prime chains are in
:mod:`federation.crypto.ckks_presets`, TenSEAL contexts and their parameter checks in
:mod:`federation.crypto.ckks_context`, and the parsing and checks of one ciphertext in
:mod:`federation.crypto.ckks_ciphertexts`.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal as ts

from federation.crypto.ckks_ciphertexts import load_ciphertext
from federation.crypto.ckks_context import check_parameters, load_context, new_context
from federation.crypto.ckks_presets import CkksPreset, primes
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

Floats = npt.NDArray[np.float64]


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
        context = load_context(body, "public key")
        if context.has_secret_key() or context.is_private():
            raise ValueError("the CKKS public key contains a secret key; send only the public one")
        if not context.has_public_key():
            raise ValueError("the CKKS public key has no public key inside")
        if context.has_relin_keys() or context.has_galois_keys():
            raise ValueError(
                "the CKKS public key carries relinearization or Galois keys; a sum needs neither"
            )
        check_parameters(context, preset, "public key")
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


def _weight_factor(preset: CkksPreset, scale: float) -> float:
    """TenSEAL encodes a weight at the vector's scale and relabels the rescaled result
    with that scale; multiplying by ``w * q1 / scale`` makes the result exactly ``w * x``
    up to rounding ``w * q1`` to an integer (error at most ``|x| / (2 q1)``)."""
    return primes(preset)[1] / scale


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
                    vector = load_ciphertext(
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
        public = load_context(body, "public key")
        self.public = CkksPublicKey(preset, _encode_key(PUBLIC_MAGIC, preset, body), public)
        self._context = context
        self._lock = threading.Lock()

    @classmethod
    def generate(cls, preset: CkksPreset = CkksPreset.CKKS_4096_SUM) -> CkksPrivateKey:
        """A fresh key pair (SEAL's key generation, seeded from the OS)."""
        if not isinstance(preset, CkksPreset):
            raise TypeError(f"expected a CkksPreset, got {type(preset).__name__}")
        return cls(preset, new_context(preset))

    @classmethod
    def from_private_bytes(cls, data: bytes) -> CkksPrivateKey:
        """Rebuild a key from :meth:`export_private` output.

        Raises:
            TypeError: ``data`` is not bytes.
            ValueError: Malformed encoding, no secret key, or not the preset's parameters.
        """
        preset, body = _read_key(data, PRIVATE_MAGIC, "private key")
        context = load_context(body, "private key")
        if not context.has_secret_key() or not context.has_public_key():
            raise ValueError("the CKKS private key encoding lacks its secret or public key")
        check_parameters(context, preset, "private key")
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
                    vector = load_ciphertext(
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
