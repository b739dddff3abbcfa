"""The analyst's side of homomorphic jobs: keys, decryption, finalization.

The analyst's secret key never leaves this process. The coordinator releases
only the combined ciphertext; the SDK decrypts it, removes nothing (the zero-sum
masks cancelled in the sum), re-derives the query's layout from the SQL and the
schema the job was planned against, checks it is the planned computation, and
finalizes the result table exactly as the coordinator would for secagg.
"""

from __future__ import annotations

import numpy as np

from federation.dp.mechanism import dp_fields, project_consistent
from federation.encoding import DIGIT_BITS
from federation.errors import ProtocolError
from federation.messages import EncryptedJobResult, Protocol
from federation.protocols.he import HESecretKey, SumSpec
from federation.protocols.he.registry import generate_secret_key
from federation.query import bind_sql, finalize
from federation.table import ResultTable

__all__ = ["KeyRing", "open_result"]


class KeyRing:
    """The analyst's homomorphic key pairs, one per protocol, made on first use."""

    def __init__(self) -> None:
        self._keys: dict[Protocol, HESecretKey] = {}

    def key(self, protocol: Protocol) -> HESecretKey:
        """The key pair for ``protocol`` (generated with its full-size default preset)."""
        if protocol not in self._keys:
            self._keys[protocol] = generate_secret_key(protocol.value)
        return self._keys[protocol]

    def use(self, protocol: Protocol, key: HESecretKey) -> None:
        """Use ``key`` for ``protocol`` from now on (e.g. a 3072-bit Paillier key)."""
        self._keys[protocol] = key

    def __repr__(self) -> str:
        return f"KeyRing(protocols={sorted(p.value for p in self._keys)})"


def open_result(
    sql: str, result: EncryptedJobResult, key: HESecretKey, *, dp: bool = False
) -> ResultTable:
    """Decrypt a homomorphic job's result and finalize the query's table (for a DP
    query, after making the noisy counts consistent: post-processing)."""
    bound = bind_sql(sql, result.schema)
    if bound.fingerprint != result.fingerprint or bound.vector_length != result.length:
        raise ProtocolError(
            "the released result is not for this query: its computation differs from the one "
            "this client derives from the SQL and the schema (fingerprint mismatch)"
        )
    spec = SumSpec(result.job_id, result.length, result.ring_bits, result.parties)
    needed = SumSpec.for_signed_values(result.job_id, result.length, DIGIT_BITS, result.parties)
    if spec.ring_bits != needed.ring_bits:
        raise ProtocolError(
            f"the job summed in a {spec.ring_bits}-bit ring; this query over "
            f"{result.parties} nodes needs {needed.ring_bits} bits"
        )
    sums = key.decrypt_sum(result.ciphertext, spec)
    if sums.shape != (spec.length,):
        raise ProtocolError("the decrypted sum has the wrong length")
    # residues mod 2**ring_bits -> signed sums -> their uint64 two's-complement form
    signed = sums.astype(np.int64)
    half = np.uint64(1) << np.uint64(spec.ring_bits - 1)
    if spec.ring_bits < 64:
        wrap = sums >= half
        signed[wrap] -= np.int64(1) << np.int64(spec.ring_bits)
    total = signed.view(np.uint64)
    if dp:
        total = project_consistent(bound, total, dp_fields(bound))
    return finalize(bound, total)
