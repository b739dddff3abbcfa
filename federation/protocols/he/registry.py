"""The homomorphic schemes by name (imported on first use: their libraries are heavy)."""

from __future__ import annotations

import importlib

from federation.errors import ProtocolError
from federation.protocols.he.scheme import HEScheme, HESecretKey

__all__ = ["SCHEMES", "generate_secret_key", "scheme"]

SCHEMES: dict[str, tuple[str, str, str]] = {
    # name: (module, scheme instance, secret key class)
    "paillier": ("federation.protocols.he.paillier", "PAILLIER", "PaillierSecretKey"),
    "ckks": ("federation.protocols.he.ckks", "CKKS", "CkksSecretKey"),
}


def _module(name: str) -> object:
    try:
        module, _, _ = SCHEMES[name]
    except KeyError:
        raise ProtocolError(
            f"unknown homomorphic scheme {name!r}; available: {sorted(SCHEMES)}"
        ) from None
    return importlib.import_module(module)


def scheme(name: str) -> HEScheme:
    """The node/coordinator side of scheme ``name``."""
    found: HEScheme = getattr(_module(name), SCHEMES[name][1])
    return found


def generate_secret_key(name: str) -> HESecretKey:
    """A fresh analyst key pair of scheme ``name`` with its default (full-size) preset."""
    cls = getattr(_module(name), SCHEMES[name][2])
    key: HESecretKey = cls.generate()
    return key
