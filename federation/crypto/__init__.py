"""Cryptographic primitives: with :mod:`federation.pki` (certificates), the only code that
imports ``cryptography``.

- :mod:`federation.crypto.prg`: HKDF-SHA256 key derivation with domain-separation
  labels, and the AES-128-CTR mask generator (in-place add/subtract into uint64
  accumulators).
- :mod:`federation.crypto.keys`: X25519 key pairs, redacting secret containers, and
  AES-256-GCM sealing of Shamir shares bound to job, sender and recipient.
- :mod:`federation.crypto.shamir`: Shamir sharing of 32-byte secrets over GF(2**521 - 1);
  :mod:`federation.crypto.shamir_batch` recovers many secrets at once.

Primitives raise ``TypeError`` for wrongly typed arguments and ``ValueError`` for
malformed values or failed authentication; the protocols above turn these into
:class:`federation.errors.ProtocolError` naming the party at fault. Randomness comes
from :mod:`secrets` only.
"""

from federation.crypto.keys import SecretBytes, X25519KeyPair, open_sealed, seal, transport_key
from federation.crypto.prg import Label, MaskApplier, derive_key, expand_mask
from federation.crypto.shamir import combine_shares, share_x, split_secret

__all__ = [
    "Label",
    "MaskApplier",
    "SecretBytes",
    "X25519KeyPair",
    "combine_shares",
    "derive_key",
    "expand_mask",
    "open_sealed",
    "seal",
    "share_x",
    "split_secret",
    "transport_key",
]
