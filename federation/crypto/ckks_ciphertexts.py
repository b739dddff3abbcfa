"""Parse one serialized CKKS ciphertext and check it is exactly what its bundle promises
(:func:`load_ciphertext`); :class:`~federation.crypto.ckks.CiphertextError` names a bad one.
"""

from __future__ import annotations

from typing import Any

import tenseal as ts

from federation.crypto.ckks_context import level
from federation.crypto.ckks_presets import CkksPreset

__all__ = ["load_ciphertext"]


def load_ciphertext(
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
    if tuple(ct.parms_id()) != level(preset, rescaled):
        raise ValueError(f"is at the wrong level (expected {'rescaled' if rescaled else 'fresh'})")
    if ct.scale != scale:
        raise ValueError("has another scale than its bundle declares")
    return vector
