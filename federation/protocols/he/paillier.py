"""Exact homomorphic sums under the analyst's Paillier key (packed, DJN-accelerated).

Roles: the *analyst* makes a :class:`PaillierSecretKey` and sends
:meth:`~PaillierSecretKey.public_bytes` with the query; each *node* masks its values
(:func:`~federation.protocols.he.masks.mask_values`) and calls
:meth:`PaillierScheme.encrypt` once; the *coordinator* calls
:meth:`PaillierScheme.aggregate`; the analyst calls
:meth:`~PaillierSecretKey.decrypt_sum`. Privacy contract: given every node's
values below ``2**spec.ring_bits`` and at most ``spec.parties`` contributions, the
analyst learns the per-position sums modulo ``2**spec.ring_bits`` and nothing else
about single nodes (zero-sum masks); nodes and the coordinator learn nothing
(semantic security of Paillier under DCRA plus the DJN short-exponent assumption,
see :mod:`federation.crypto.paillier_obfuscation`).

How values are packed and how bundles look on the wire:
:mod:`federation.protocols.he.paillier_format`. Cost at 2048 bits (benchmarks/README.md,
"Paillier"): one ciphertext per 51 values of the benchmark (about 10 bytes a value),
one multiplication per ciphertext at a node whose obfuscator pool is filled.

A node keeps one :class:`~federation.crypto.paillier.ObfuscatorPool` per analyst key
(:meth:`PaillierScheme.obfuscator_pool`); fill it while idle, e.g.
``PAILLIER.obfuscator_pool(public_key).fill_in_background()`` after a job.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from federation.crypto.paillier import (
    DEFAULT_POOL_SIZE,
    CiphertextError,
    ObfuscatorPool,
    PaillierPreset,
    PaillierPrivateKey,
    PaillierPublicKey,
    allow_weak_keys,
    combine_blocks,
    decrypt_block,
    encrypt_block,
    weak_keys_allowed,
)
from federation.crypto.secret import SecretHolder
from federation.errors import ProtocolError
from federation.protocols.he.paillier_format import (
    SlotLayout,
    pack,
    read_bundle,
    unpack,
    write_bundle,
)
from federation.protocols.he.spec import SumSpec

__all__ = [
    "PAILLIER",
    "PaillierPreset",
    "PaillierScheme",
    "PaillierSecretKey",
    "allow_weak_keys",
    "weak_keys_allowed",
]

Ring = npt.NDArray[np.uint64]


def _public_key(public_key: bytes) -> PaillierPublicKey:
    if not isinstance(public_key, bytes):
        raise ProtocolError(f"a Paillier public key must be bytes, got {type(public_key).__name__}")
    try:
        return PaillierPublicKey.from_bytes(public_key)
    except ValueError as exc:
        raise ProtocolError(f"invalid Paillier public key: {exc}") from None


def _ciphertext_problem(exc: CiphertextError, what: str) -> ProtocolError:
    return ProtocolError(f"{what}: ciphertext {exc.position} {exc.problem}")


class PaillierScheme:
    """The node and coordinator side (public key only); :data:`PAILLIER` is the instance.

    Validated keys and their obfuscator pools are cached per public key (the most
    recent ``cached_keys`` ones; a pool's table takes about 18 MB at 2048 bits).
    """

    name = "paillier"

    def __init__(self, *, pool_size: int = DEFAULT_POOL_SIZE, cached_keys: int = 4) -> None:
        self._pool_size = pool_size
        self._cached = cached_keys
        self._keys: OrderedDict[bytes, tuple[PaillierPublicKey, ObfuscatorPool]] = OrderedDict()
        self._lock = threading.Lock()

    def _state(self, public_key: bytes) -> tuple[PaillierPublicKey, ObfuscatorPool]:
        if not isinstance(public_key, bytes):  # before the cache lookup: it may be unhashable
            raise ProtocolError(
                f"a Paillier public key must be bytes, got {type(public_key).__name__}"
            )
        with self._lock:
            state = self._keys.get(public_key)
            if state is not None:
                self._keys.move_to_end(public_key)
        if state is not None:
            # A weak key validated while weak keys were allowed stays refused afterwards.
            state[0].preset.check_allowed()
            return state
        key = _public_key(public_key)
        with self._lock:
            state = self._keys.setdefault(public_key, (key, ObfuscatorPool(key, self._pool_size)))
            while len(self._keys) > self._cached:
                _, (_, evicted) = self._keys.popitem(last=False)
                evicted.stop_filling()
                evicted.clear()
            return state

    def check_public_key(self, public_key: bytes) -> str:
        """Validate a serialized public key; returns its fingerprint (hex SHA-256 of it).

        Raises:
            ProtocolError: Not bytes, malformed, or not a plausible modulus of a preset size.
            WeakParametersError: The test-only size without :func:`allow_weak_keys`.
        """
        return self._state(public_key)[0].fingerprint

    def obfuscator_pool(self, public_key: bytes) -> ObfuscatorPool:
        """This process's obfuscator pool for ``public_key`` (to fill ahead of jobs)."""
        return self._state(public_key)[1]

    def prepare(self, public_key: bytes, spec: SumSpec) -> None:
        """Refill the key's pool on a background thread with what a job like ``spec`` uses.

        The pool keeps at least as many obfuscators as the job needed ciphertexts (up
        to its size), so the next such job encrypts with one multiplication per
        ciphertext. Invalid keys are ignored here: :meth:`encrypt` reports them.
        """
        try:
            key, pool = self._state(public_key)
        except ProtocolError:
            return
        wanted = min(pool.size, SlotLayout.for_key(key.bits, spec).ciphertexts)
        if wanted > pool.available:
            pool.fill_in_background(wanted - pool.available)

    def layout(self, public_key: bytes, spec: SumSpec) -> SlotLayout:
        """How ``spec``'s values are packed under ``public_key``."""
        return SlotLayout.for_key(self._state(public_key)[0].bits, spec)

    def encrypt(self, public_key: bytes, values: Ring, spec: SumSpec) -> bytes:
        """Encrypt one node's values (each below ``2**spec.ring_bits``) into a bundle.

        Raises:
            ProtocolError: Invalid key, or values of the wrong type, shape or range.
        """
        key, pool = self._state(public_key)
        if not isinstance(values, np.ndarray) or values.dtype != np.uint64:
            raise ProtocolError("Paillier encrypts a numpy uint64 array")
        if values.shape != (spec.length,):
            raise ProtocolError(f"expected {spec.length} values, got shape {values.shape}")
        if spec.ring_bits < 64 and values.size and int(values.max()) >> spec.ring_bits:
            raise ProtocolError(
                f"values must lie below 2**{spec.ring_bits} (reduce them modulo the ring first)"
            )
        layout = SlotLayout.for_key(key.bits, spec)
        body = encrypt_block(key, pack(values, layout), pool)
        return write_bundle(key.fingerprint, spec, layout, 1, body)

    def aggregate(self, public_key: bytes, ciphertexts: Sequence[bytes], spec: SumSpec) -> bytes:
        """Combine bundles into one bundle of their sum (no secret involved).

        Raises:
            ProtocolError: Invalid key; no bundles; a bundle that is malformed, under
                another key, for another sum, or holds an invalid ciphertext (named by
                index); more contributions in total than ``spec.parties``.
        """
        key, _ = self._state(public_key)
        if not ciphertexts:
            raise ProtocolError("there are no ciphertexts to aggregate")
        layout = SlotLayout.for_key(key.bits, spec)
        total = 0
        bodies = []
        for i, bundle in enumerate(ciphertexts):
            what = f"ciphertext bundle {i} (of {len(ciphertexts)})"
            contributions, body = read_bundle(bundle, key.fingerprint, spec, layout, what=what)
            total += contributions
            bodies.append(body)
        if total > spec.parties:
            raise ProtocolError(
                f"the bundles sum {total} contributions; this sum allows at most {spec.parties} "
                "(more would overflow the packed slots)"
            )
        try:
            combined = combine_blocks(key, bodies)
        except CiphertextError as exc:
            block = exc.block if exc.block is not None else 0
            raise _ciphertext_problem(
                exc, f"ciphertext bundle {block} (of {len(ciphertexts)})"
            ) from None
        return write_bundle(key.fingerprint, spec, layout, total, combined)


PAILLIER = PaillierScheme()
"""The Paillier scheme, as the registry (:mod:`federation.protocols.he.registry`) names it."""


class PaillierSecretKey(SecretHolder):
    """The analyst's Paillier key pair; never printed, pickled or copied.

    >>> spec = SumSpec("job", 3, 16, 2)
    >>> with weak_keys_allowed():  # tests only; real keys: PaillierSecretKey.generate()
    ...     key = PaillierSecretKey.generate(PaillierPreset.TEST_ONLY_1024)
    ...     parts = [PAILLIER.encrypt(key.public_bytes(), np.array(v, np.uint64), spec)
    ...              for v in ([1, 2, 3], [10, 20, 65535])]
    ...     total = PAILLIER.aggregate(key.public_bytes(), parts, spec)
    >>> key.decrypt_sum(total, spec).tolist()
    [11, 22, 2]
    """

    __slots__ = ("_key",)

    def __init__(self, key: PaillierPrivateKey) -> None:
        if not isinstance(key, PaillierPrivateKey):
            raise TypeError(f"expected a PaillierPrivateKey, got {type(key).__name__}")
        self._key = key

    @classmethod
    def generate(cls, preset: PaillierPreset = PaillierPreset.PAILLIER_2048) -> PaillierSecretKey:
        """A fresh key pair (``phe`` key generation, gmpy2-backed).

        Raises:
            WeakParametersError: The test-only preset without :func:`allow_weak_keys`.
        """
        return cls(PaillierPrivateKey.generate(preset))

    @classmethod
    def from_private_bytes(cls, data: bytes) -> PaillierSecretKey:
        """Load a key saved with :meth:`export_private`.

        Raises:
            ProtocolError: Malformed data or invalid factors.
            WeakParametersError: The test-only size without :func:`allow_weak_keys`.
        """
        try:
            return cls(PaillierPrivateKey.from_private_bytes(data))
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"invalid Paillier private key: {exc}") from None

    @property
    def preset(self) -> PaillierPreset:
        """The key's size preset."""
        return self._key.public.preset

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of :meth:`public_bytes` (what bundles carry)."""
        return self._key.public.fingerprint

    def public_bytes(self) -> bytes:
        """The versioned public-key encoding: ``b"FPPK" || u8 1 || u16 bits || n``."""
        return self._key.public.encoding

    def decrypt_sum(self, aggregate: bytes, spec: SumSpec, *, workers: int | None = None) -> Ring:
        """Decrypt an aggregate: the per-position sums modulo ``2**spec.ring_bits`` (uint64).

        Args:
            aggregate: The coordinator's combined bundle.
            spec: The sum it is for.
            workers: Decryption threads (default: every core for large bundles).

        Raises:
            ProtocolError: The bundle is malformed, under another key, for another sum,
                holds an invalid ciphertext, or decrypts to more than its slots hold.
        """
        key = self._key.public
        layout = SlotLayout.for_key(key.bits, spec)
        _, body = read_bundle(aggregate, key.fingerprint, spec, layout, what="the aggregate")
        try:
            plaintexts = decrypt_block(self._key, body, workers=workers)
        except CiphertextError as exc:
            raise _ciphertext_problem(exc, "the aggregate") from None
        return unpack(plaintexts, layout, spec)

    def export_private(self, *, unprotected: bool) -> bytes:
        """The encoded factors (``b"FPSK" || u8 1 || u16 bits || p || q``).

        ``unprotected=True`` acknowledges the key leaves this object unencrypted.

        Raises:
            ValueError: If ``unprotected`` is not ``True``.
        """
        return self._key.export_private(unprotected=unprotected)

    def __repr__(self) -> str:
        return (
            f"PaillierSecretKey(preset={self.preset.name}, "
            f"fingerprint={self.fingerprint[:16]}..., private=<redacted>)"
        )
