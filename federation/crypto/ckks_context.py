"""TenSEAL contexts of a CKKS preset: new and loaded ones, configured alike, and checks
of their SEAL parameters against the preset's (:func:`check_parameters`, :func:`level`).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import tenseal as ts

from federation.crypto.ckks_presets import CkksPreset, primes

__all__ = ["check_parameters", "level", "load_context", "new_context"]


def new_context(preset: CkksPreset) -> Any:
    """A fresh TenSEAL context of ``preset`` with new keys (one thread, auto-rescale only)."""
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
    seal = new_context(preset).seal_context().data
    chain = primes(preset)
    first = seal.first_context_data()
    product = math.prod(chain[:-1])
    if seal.last_context_data().total_coeff_modulus() != chain[
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


def check_parameters(context: Any, preset: CkksPreset, what: str) -> None:
    """ValueError unless ``context`` has exactly ``preset``'s parameters (``what``: the key)."""
    seal = context.seal_context().data
    if tuple(seal.key_parms_id()) != _reference(preset)[0]:
        raise ValueError(f"the {what} does not have the parameters of preset {preset.name}")


def level(preset: CkksPreset, rescaled: bool) -> tuple[int, ...]:
    """SEAL's parameter hash of a fresh (or rescaled) ciphertext of ``preset``."""
    return _reference(preset)[2 if rescaled else 1]


def load_context(body: bytes, what: str) -> Any:
    """Parse a serialized TenSEAL context, configured like :func:`new_context`'s.

    Raises:
        ValueError: ``body`` does not parse (``what`` names the key in the message).
    """
    try:
        context = ts.context_from(body, n_threads=1)
    except Exception:  # TenSEAL raises bare RuntimeError/ValueError/protobuf errors
        raise ValueError(f"the CKKS {what} does not parse as a TenSEAL context") from None
    _configure(context)
    return context
