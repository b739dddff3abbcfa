"""Known-answer vectors (tests/vectors/secagg_*.json), checked twice.

Once against the implementation, and once against independent computations: HKDF
with hmac/hashlib written here and with cryptography's HKDF class, the CTR keystream
with AES-ECB of explicit counter blocks (itself anchored to FIPS-197), Shamir shares
by direct polynomial evaluation, and X25519 against RFC 7748.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf import hkdf

from federation.crypto.keys import X25519KeyPair
from federation.crypto.prg import Label, MaskApplier, derive_key, expand_mask, hkdf_info
from federation.crypto.shamir import PRIME, combine_shares, split_secret

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


HKDF = _load("secagg_hkdf.json")["cases"]
PRG = _load("secagg_prg.json")
SHAMIR = _load("secagg_shamir.json")["cases"]


def _independent_info(label: str, job_id: str, context: list[int]) -> bytes:
    job = job_id.encode("utf-8")
    return (
        b"federation/secagg+/v1/"
        + label.encode()
        + b"\x00"
        + struct.pack(">I", len(job))
        + job
        + b"".join(struct.pack(">I", c) for c in context)
    )


def _independent_hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(bytes(32), secret, hashlib.sha256).digest()  # RFC 5869: empty salt = zeros
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


_LENGTH = {"self-mask": 16, "pairwise-mask": 16, "share-transport": 32}


def _independent_keystream_words(key: bytes, words: int) -> list[int]:
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    blocks = (words + 1) // 2
    stream = ecb.update(b"".join(i.to_bytes(16, "big") for i in range(blocks)))
    return list(struct.unpack(f"<{words}Q", stream[: 8 * words]))


@pytest.mark.parametrize("case", HKDF, ids=lambda c: f"{c['label']}-{c['context']}")
def test_hkdf_vector_matches_implementation(case: dict[str, Any]) -> None:
    label = Label(case["label"])
    secret = bytes.fromhex(case["secret"])
    assert hkdf_info(label, case["job_id"], case["context"]).hex() == case["info"]
    assert derive_key(secret, label, case["job_id"], *case["context"]).hex() == case["okm"]


@pytest.mark.parametrize("case", HKDF, ids=lambda c: f"{c['label']}-{c['context']}")
def test_hkdf_vector_matches_hmac(case: dict[str, Any]) -> None:
    info = _independent_info(case["label"], case["job_id"], case["context"])
    assert info.hex() == case["info"]
    okm = _independent_hkdf(bytes.fromhex(case["secret"]), info, _LENGTH[case["label"]])
    assert okm.hex() == case["okm"]


@pytest.mark.parametrize("case", HKDF, ids=lambda c: f"{c['label']}-{c['context']}")
def test_hkdf_vector_matches_cryptography_hkdf(case: dict[str, Any]) -> None:
    info = bytes.fromhex(case["info"])
    length = _LENGTH[case["label"]]
    kdf = hkdf.HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info)
    assert kdf.derive(bytes.fromhex(case["secret"])).hex() == case["okm"]


def test_hkdf_vectors_are_pairwise_distinct() -> None:
    okms = [c["okm"] for c in HKDF]
    assert len(set(okms)) == len(okms)


@pytest.mark.parametrize(
    ("key_size", "expected"),
    [(16, "69c4e0d86a7b0430d8cdb78070b4c55a"), (32, "8ea2b7ca516745bfeafc49904b496089")],
)
def test_aes_ecb_anchor_fips197(key_size: int, expected: str) -> None:
    # FIPS-197 appendix C.1 (AES-128) and C.3 (AES-256).
    key = bytes(range(key_size))
    block = bytes.fromhex("00112233445566778899aabbccddeeff")
    out = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(block)
    assert out.hex() == expected


@pytest.mark.parametrize("case", PRG["masks"], ids=lambda c: f"len{c['length']}")
def test_mask_vector_matches_implementation(case: dict[str, Any]) -> None:
    mask = expand_mask(bytes.fromhex(case["key"]), case["length"])
    assert mask.dtype == np.uint64
    assert mask.shape == (case["length"],)
    assert [int(w) for w in mask[:6]] == case["first_words"]
    assert int(mask[-1]) == case["last_word"]
    digest = hashlib.sha256(mask.astype("<u8").tobytes()).hexdigest()
    assert digest == case["sha256_le_bytes"]


@pytest.mark.parametrize("case", PRG["masks"], ids=lambda c: f"len{c['length']}")
def test_mask_vector_matches_raw_keystream(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["key"])
    words = _independent_keystream_words(key, case["length"])
    assert words[:6] == case["first_words"]
    assert words[-1] == case["last_word"]
    packed = struct.pack(f"<{len(words)}Q", *words)
    assert hashlib.sha256(packed).hexdigest() == case["sha256_le_bytes"]


def test_derived_mask_vector_end_to_end() -> None:
    case = PRG["derived"]
    seed = bytes.fromhex(case["seed"])
    info = _independent_info(case["label"], case["job_id"], case["context"])
    key = _independent_hkdf(seed, info, 16)
    assert key.hex() == case["key"]
    assert _independent_keystream_words(key, 16) == case["words"]
    implemented = derive_key(seed, Label(case["label"]), case["job_id"], *case["context"])
    assert [int(w) for w in expand_mask(implemented, 16)] == case["words"]


def _evaluate(secret: int, coefficients: list[int], x: int) -> int:
    return (secret + sum(c * pow(x, i + 1, PRIME) for i, c in enumerate(coefficients))) % PRIME


@pytest.mark.parametrize("case", SHAMIR, ids=lambda c: f"t{c['threshold']}")
def test_shamir_vector_by_direct_evaluation(case: dict[str, Any]) -> None:
    secret = int(case["secret"], 16)
    coefficients = [int(c, 16) for c in case["coefficients"]]
    for x_text, share_hex in case["shares"].items():
        x = int(x_text)
        expected = x.to_bytes(4, "big") + _evaluate(secret, coefficients, x).to_bytes(66, "big")
        assert share_hex == expected.hex()


@pytest.mark.parametrize("case", SHAMIR, ids=lambda c: f"t{c['threshold']}")
def test_shamir_vector_combines_from_any_threshold_subset(case: dict[str, Any]) -> None:
    shares = [bytes.fromhex(s) for s in case["shares"].values()]
    t = case["threshold"]
    for start in range(len(shares) - t + 1):
        assert combine_shares(shares[start : start + t], t).hex() == case["secret"]
    assert combine_shares(shares[::-1], t).hex() == case["secret"]


@pytest.mark.parametrize("case", SHAMIR, ids=lambda c: f"t{c['threshold']}")
def test_shamir_vector_matches_implementation_polynomial(case: dict[str, Any]) -> None:
    from federation.crypto.shamir import _shares_from_polynomial

    poly = [int(case["secret"], 16)] + [int(c, 16) for c in case["coefficients"]]
    shares = _shares_from_polynomial(poly, case["xs"])
    assert {str(x): s.hex() for x, s in shares.items()} == case["shares"]


def test_split_secret_is_randomised_but_consistent() -> None:
    secret = bytes(range(32))
    a = split_secret(secret, 3, [1, 2, 3, 4])
    b = split_secret(secret, 3, [1, 2, 3, 4])
    assert a != b
    assert combine_shares([a[1], a[3], a[4]], 3) == combine_shares([b[2], b[3], b[4]], 3) == secret


def test_x25519_rfc7748_vector() -> None:
    # RFC 7748 section 6.1.
    alice = X25519KeyPair.from_private_bytes(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob = X25519KeyPair.from_private_bytes(
        bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    assert alice.public_bytes.hex() == (
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    assert bob.public_bytes.hex() == (
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    )
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert alice.exchange(bob.public_bytes).hex() == shared
    assert bob.exchange(alice.public_bytes).hex() == shared


@pytest.mark.parametrize("case", PRG["masks"], ids=lambda c: f"len{c['length']}")
def test_mask_vector_matches_the_applier(case: dict[str, Any]) -> None:
    # The applier computes the keystream as AES-ECB of counter blocks, block by block;
    # it must reproduce the vectors exactly (added to zero, and subtracted from zero).
    key = bytes.fromhex(case["key"])
    length = case["length"]
    added = np.zeros(length, dtype=np.uint64)
    MaskApplier(length).apply(added, add=[key])
    assert [int(w) for w in added[:6]] == case["first_words"]
    assert int(added[-1]) == case["last_word"]
    assert hashlib.sha256(added.astype("<u8").tobytes()).hexdigest() == case["sha256_le_bytes"]
    subtracted = np.zeros(length, dtype=np.uint64)
    MaskApplier(length).apply(subtracted, subtract=[key])
    assert np.array_equal(subtracted, np.zeros(length, dtype=np.uint64) - added)
