"""Paillier primitives: key encodings and validation, CRT decryption, DJN obfuscators, blocks.

References are computed independently of the code under test: Python int arithmetic,
``gmpy2.powmod`` and ``phe`` (its raw encryption with a full-size ``r`` and its own
decryption).
"""

from __future__ import annotations

import copy
import hashlib
import math
import pickle
import random
import threading

import gmpy2
import phe
import pytest

from federation.crypto.paillier import (
    CiphertextError,
    FixedBaseTable,
    ObfuscatorPool,
    PaillierPreset,
    PaillierPrivateKey,
    PaillierPublicKey,
    allow_weak_keys,
    combine_blocks,
    decrypt_block,
    encrypt_block,
    exponent_bits,
    read_block,
    weak_keys_allowed,
)
from federation.errors import WeakParametersError

RNG = random.Random(20240611)


@pytest.fixture(scope="module")
def key1024() -> PaillierPrivateKey:
    with weak_keys_allowed():  # speed: the 1024-bit test-only preset
        return PaillierPrivateKey.generate(PaillierPreset.TEST_ONLY_1024)


@pytest.fixture(scope="module")
def key2048() -> PaillierPrivateKey:
    return PaillierPrivateKey.generate()  # the real default preset, once per module


@pytest.fixture
def weak() -> object:
    with weak_keys_allowed():  # speed: lets the 1024-bit test-only key be used in the test
        yield


def _factors(key: PaillierPrivateKey) -> tuple[int, int]:
    """The factors, read back from the documented private encoding."""
    data = key.export_private(unprotected=True)
    half = key.public.bits // 16
    return int.from_bytes(data[7 : 7 + half], "big"), int.from_bytes(data[7 + half :], "big")


def _encode(n: int, bits: int = 2048, magic: bytes = b"FPPK", version: int = 1) -> bytes:
    return magic + bytes([version]) + bits.to_bytes(2, "big") + n.to_bytes(bits // 8, "big")


def _textbook_decrypt(p: int, q: int, c: int) -> int:
    """Paillier's decryption with lambda and mu (no CRT): ``L(c**lam mod n**2) * mu mod n``."""
    n = p * q
    n2 = n * n
    lam = math.lcm(p - 1, q - 1)
    mu = pow((int(gmpy2.powmod(n + 1, lam, n2)) - 1) // n, -1, n)
    return (int(gmpy2.powmod(c, lam, n2)) - 1) // n * mu % n


def _phe_encrypt(n: int, m: int) -> int:
    """``phe``'s raw encryption with a full-size random ``r`` (textbook ``r**n``)."""
    public = phe.PaillierPublicKey(n)
    r = RNG.randrange(1, n)
    while math.gcd(r, n) != 1:  # pragma: no cover - negligible
        r = RNG.randrange(1, n)
    ciphertext: int = public.raw_encrypt(m, r_value=r)
    return ciphertext


# ----------------------------------------------------------------------------- keys


def test_public_key_encoding_roundtrip_and_fingerprint(key1024: PaillierPrivateKey) -> None:
    public = key1024.public
    n = int(public.n)
    assert n.bit_length() == 1024
    assert public.encoding == _encode(n, 1024)
    assert public.fingerprint == hashlib.sha256(public.encoding).hexdigest()
    assert public.ciphertext_size == 256
    with weak_keys_allowed():  # the key is the 1024-bit test-only preset
        again = PaillierPublicKey.from_bytes(public.encoding)
        assert PaillierPublicKey.from_n(n) == again
    assert again == public
    assert again.fingerprint == public.fingerprint
    assert repr(public).count(public.fingerprint) == 1


def test_default_preset_is_2048_and_needs_no_opt_in(key2048: PaillierPrivateKey) -> None:
    public = key2048.public
    assert public.preset is PaillierPreset.PAILLIER_2048
    assert int(public.n).bit_length() == 2048
    assert public.ciphertext_size == 512
    assert PaillierPublicKey.from_bytes(public.encoding) == public
    p, q = _factors(key2048)
    assert p * q == public.n
    assert p.bit_length() == q.bit_length() == 1024
    assert PaillierPreset.for_bits(3072) is PaillierPreset.PAILLIER_3072


def test_fingerprints_differ_between_keys(
    key1024: PaillierPrivateKey, key2048: PaillierPrivateKey
) -> None:
    assert key1024.public.fingerprint != key2048.public.fingerprint
    assert len(bytes.fromhex(key2048.public.fingerprint)) == 32


def _prime_near(target: int) -> int:
    return int(gmpy2.next_prime(target))


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        pytest.param("FPPK", TypeError, "must be bytes", id="not-bytes"),
        pytest.param(b"FPP", ValueError, "at least 7 bytes", id="shorter-than-header"),
        pytest.param(_encode(2**2047 + 1, magic=b"FPSK"), ValueError, "wrong magic", id="magic"),
        pytest.param(_encode(2**2047 + 1, version=2), ValueError, "version 2", id="version"),
        pytest.param(_encode(2**2047 + 1)[:-1], ValueError, "has 263 bytes, got 262", id="short"),
        pytest.param(_encode(2**2047 + 1) + b"\0", ValueError, "got 264", id="padded"),
        pytest.param(
            b"FPPK\x01" + (2047).to_bytes(2, "big") + bytes(255), ValueError, "bytes", id="bits"
        ),
        pytest.param(_encode(2**2046 + 1), ValueError, "does not have the 2048 bits", id="zero"),
        pytest.param(_encode(2**2047 + 2), ValueError, "odd", id="even"),
        pytest.param(
            _encode(3 * _prime_near(2**2047 // 3 + 12345)), ValueError, "small", id="factor-3"
        ),
        pytest.param(
            _encode(16381 * _prime_near(2**2047 // 16381 + 1)),
            ValueError,
            "small prime factor",
            id="factor-16381",
        ),
        pytest.param(
            _encode(_prime_near(int(gmpy2.isqrt(2**2047)) + 1) ** 2),
            ValueError,
            "perfect square",
            id="square",
        ),
        pytest.param(_encode(_prime_near(2**2047 + 2**100)), ValueError, "prime", id="prime"),
        pytest.param(
            _encode(2**1999 + 1, bits=2000), ValueError, "one of 2048, 3072 bits", id="size"
        ),
    ],
)
def test_public_key_validation_errors(data: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        PaillierPublicKey.from_bytes(data)  # type: ignore[arg-type]
    if isinstance(data, bytes) and len(data) > 64:
        assert data[-32:].hex() not in str(info.value)  # never the modulus


@pytest.mark.parametrize("n", [0, -(2**2047 + 1)])
def test_non_positive_modulus_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        PaillierPublicKey.from_n(n)


def test_weak_preset_refused_without_opt_in_and_state_restored(
    key1024: PaillierPrivateKey,
) -> None:
    with weak_keys_allowed():  # saves the process-wide state; restored on exit
        allow_weak_keys(False)
        with pytest.raises(WeakParametersError, match=r"allow_weak_keys\(\)") as info:
            PaillierPrivateKey.generate(PaillierPreset.TEST_ONLY_1024)
        assert "PAILLIER_2048" in str(info.value)
        with pytest.raises(WeakParametersError):
            PaillierPublicKey.from_bytes(key1024.public.encoding)
        with pytest.raises(WeakParametersError):
            PaillierPrivateKey.from_private_bytes(key1024.export_private(unprotected=True))
        with pytest.raises(WeakParametersError):
            PaillierPreset.for_bits(1024)
        with weak_keys_allowed():
            assert PaillierPublicKey.from_bytes(key1024.public.encoding) == key1024.public
            with weak_keys_allowed():
                pass
            assert PaillierPreset.for_bits(1024) is PaillierPreset.TEST_ONLY_1024  # still on
        with pytest.raises(WeakParametersError):  # back off after the block
            PaillierPreset.for_bits(1024)
        with pytest.raises(RuntimeError), weak_keys_allowed():
            raise RuntimeError("leaves the block")
        with pytest.raises(WeakParametersError):  # restored on an exception too
            PaillierPreset.for_bits(1024)
        allow_weak_keys()
        assert PaillierPreset.for_bits(1024) is PaillierPreset.TEST_ONLY_1024
        allow_weak_keys(False)
        with pytest.raises(WeakParametersError):
            PaillierPreset.for_bits(1024)
    assert not PaillierPreset.PAILLIER_2048.weak
    assert PaillierPreset.TEST_ONLY_1024.weak


def test_generate_refuses_a_non_preset() -> None:
    with pytest.raises(TypeError, match="PaillierPreset"):
        PaillierPrivateKey.generate(2048)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one of 2048, 3072 bits, got 4096"):
        PaillierPreset.for_bits(4096)


@pytest.mark.parametrize(
    "operation", [pickle.dumps, copy.copy, copy.deepcopy], ids=["pickle", "copy", "deepcopy"]
)
def test_private_key_cannot_be_pickled_or_copied(
    key1024: PaillierPrivateKey, operation: object
) -> None:
    with pytest.raises(TypeError, match=r"export_private\(unprotected=True\)"):
        operation(key1024)  # type: ignore[operator]


def test_private_key_repr_never_shows_the_factors(key1024: PaillierPrivateKey) -> None:
    p, q = _factors(key1024)
    for text in (repr(key1024), str(key1024), f"{key1024!r}", repr([key1024])):
        for secret in (p, q):
            for form in (str(secret), hex(secret)[2:], f"{secret:x}"[:20], str(secret)[:20]):
                assert form not in text
        assert "redacted" in text
        assert key1024.public.fingerprint[:16] in text


def test_export_private_requires_unprotected_true(key1024: PaillierPrivateKey) -> None:
    with pytest.raises(TypeError):
        key1024.export_private()  # type: ignore[call-arg]
    for flag in (False, 1, "yes"):
        with pytest.raises(ValueError, match="unprotected=True"):
            key1024.export_private(unprotected=flag)  # type: ignore[arg-type]


def test_private_bytes_roundtrip(key1024: PaillierPrivateKey, weak: object) -> None:
    data = key1024.export_private(unprotected=True)
    p, q = _factors(key1024)
    assert data == b"FPSK\x01" + (1024).to_bytes(2, "big") + p.to_bytes(64, "big") + (
        q.to_bytes(64, "big")
    )
    again = PaillierPrivateKey.from_private_bytes(data)
    assert again.public == key1024.public
    c = _phe_encrypt(int(key1024.public.n), 123456789)
    assert again.decrypt([c]) == key1024.decrypt([c]) == [123456789]


def test_private_key_validation_errors(key1024: PaillierPrivateKey, weak: object) -> None:
    data = key1024.export_private(unprotected=True)
    p, q = _factors(key1024)
    with pytest.raises(TypeError, match="bytes"):
        PaillierPrivateKey.from_private_bytes(bytearray(data))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wrong magic"):
        PaillierPrivateKey.from_private_bytes(key1024.public.encoding)
    with pytest.raises(ValueError, match="version 7"):
        PaillierPrivateKey.from_private_bytes(data[:4] + b"\x07" + data[5:])
    for bad in (data[:-1], data + b"\0", data[:7]):
        with pytest.raises(ValueError, match="wrong length"):
            PaillierPrivateKey.from_private_bytes(bad)
    with pytest.raises(ValueError, match="two distinct primes") as info:
        PaillierPrivateKey(p, p)
    assert str(p) not in str(info.value)
    assert f"{p:x}" not in str(info.value)
    with pytest.raises(ValueError, match="two distinct primes"):
        PaillierPrivateKey(p, q + 1)  # even: not a prime
    small = _prime_near(2**500)
    with pytest.raises(ValueError, match="same bit length"):
        PaillierPrivateKey(p, small)
    with pytest.raises(ValueError, match="one of 2048, 3072 bits"):  # 2 x 511 bits: too small
        PaillierPrivateKey(_prime_near(2**510), _prime_near(2**510 + 2**300))


# ----------------------------------------------------------------------------- decryption


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_crt_decryption_equals_phe_and_textbook(key1024: PaillierPrivateKey, workers: int) -> None:
    # speed: the 1024-bit test-only preset
    p, q = _factors(key1024)
    n = p * q
    plaintexts = [0, 1, n - 1, 2**512, *(RNG.randrange(n) for _ in range(8))]
    ciphertexts = [_phe_encrypt(n, m) for m in plaintexts]
    reference = phe.PaillierPrivateKey(phe.PaillierPublicKey(n), p, q)
    assert [reference.raw_decrypt(c) for c in ciphertexts] == plaintexts
    assert [_textbook_decrypt(p, q, c) for c in ciphertexts] == plaintexts
    assert key1024.decrypt(ciphertexts, workers=workers) == plaintexts
    assert key1024.decrypt([], workers=workers) == []


def test_crt_decryption_at_2048_bits(key2048: PaillierPrivateKey) -> None:
    p, q = _factors(key2048)
    n = p * q
    plaintexts = [0, n - 1, *(RNG.randrange(n) for _ in range(3))]
    ciphertexts = [_phe_encrypt(n, m) for m in plaintexts]
    reference = phe.PaillierPrivateKey(phe.PaillierPublicKey(n), p, q)
    assert [reference.raw_decrypt(c) for c in ciphertexts] == plaintexts
    assert key2048.decrypt(ciphertexts, workers=2) == plaintexts
    assert key2048.decrypt(ciphertexts, workers=1) == plaintexts


# ----------------------------------------------------------------------------- obfuscators


def test_exponent_bits() -> None:
    assert exponent_bits(2048) == 1024
    assert exponent_bits(3072) == 1536
    assert exponent_bits(1024) == 512
    assert exponent_bits(2047) == 1024


def test_fixed_base_table_equals_powmod(key1024: PaillierPrivateKey) -> None:
    # speed: the 1024-bit test-only preset
    public = key1024.public
    n2 = int(public.n_square)
    base = RNG.randrange(2, n2)
    table = FixedBaseTable(public, base)
    top = table.max_exponent_bits
    assert top == 512
    exponents = [0, 1, 2, 255, 256, 257, 2**top - 1, 2 ** (top - 1), 0xFF << (top - 8)]
    exponents += [RNG.getrandbits(RNG.randrange(1, top + 1)) for _ in range(20)]
    for e in exponents:
        assert table.power(e) == gmpy2.powmod(base, e, n2), e
    for bad in (2**top, 2 ** (top + 40), -1):
        with pytest.raises(ValueError, match="does not fit"):
            table.power(bad)


def test_fixed_base_table_at_2048_bits(key2048: PaillierPrivateKey) -> None:
    public = key2048.public
    base = RNG.randrange(2, int(public.n_square))
    table = FixedBaseTable(public, base)
    assert table.max_exponent_bits == 1024
    for e in (0, 1, 2**1024 - 1, RNG.getrandbits(1024)):
        assert table.power(e) == gmpy2.powmod(base, e, public.n_square)


def test_obfuscators_are_djn_n_th_residues(key1024: PaillierPrivateKey) -> None:
    # speed: the 1024-bit test-only preset
    p, q = _factors(key1024)
    n = p * q
    n2 = n * n
    pool = ObfuscatorPool(key1024.public, size=4)
    # The table's base h_s = h**n with h = -x**2 mod n: recover h as the n-th root of
    # h_s mod n (n is invertible modulo lambda), then -h must be a square mod p and q.
    h_s = int(pool.table().power(1))
    lam = math.lcm(p - 1, q - 1)
    h = pow(h_s % n, pow(n, -1, lam), n)
    assert pow(h, n, n2) == h_s
    assert gmpy2.jacobi(-h % p, p) == 1
    assert gmpy2.jacobi(-h % q, q) == 1
    obfuscators = [int(r) for r in pool.take(6)]
    assert len(set(obfuscators)) == 6
    for r in obfuscators:
        assert 1 < r < n2
        assert math.gcd(r, n) == 1
        # an n-th residue: decrypts (as a ciphertext) to 0, with both decryptions
        assert key1024.decrypt([r]) == [0]
        assert _textbook_decrypt(p, q, r) == 0
        # and an n-th power of an element of <h>: r = y**n with y = r's n-th root mod n
        y = pow(r % n, pow(n, -1, lam), n)
        assert pow(y, n, n2) == r
    plaintexts = [RNG.randrange(n) for _ in obfuscators]
    ciphertexts = [(1 + m * n) * r % n2 for m, r in zip(plaintexts, obfuscators, strict=True)]
    assert key1024.decrypt(ciphertexts) == plaintexts
    assert [_textbook_decrypt(p, q, c) for c in ciphertexts] == plaintexts


def test_pool_hands_out_each_obfuscator_once(key1024: PaillierPrivateKey) -> None:
    # speed: the 1024-bit test-only preset
    pool = ObfuscatorPool(key1024.public, size=10)
    assert pool.available == 0
    assert pool.fill() == 10
    assert pool.available == 10
    assert pool.fill() == 0  # full
    assert pool.fill(5) == 0
    first = pool.take(4)
    assert pool.available == 6
    second = pool.take(20)  # 6 pooled + 14 computed now
    assert pool.available == 0
    assert pool.fill(3) == 3
    assert pool.available == 3
    third = pool.take(3)
    seen = [int(r) for r in first + second + third]
    assert len(seen) == len(set(seen)) == 27
    assert pool.take(0) == []
    assert pool.fill(2) == 2
    pool.clear()
    assert pool.available == 0
    assert set(map(int, pool.take(2))).isdisjoint(seen)
    assert "available=0" in repr(pool)
    assert key1024.public.fingerprint[:16] in repr(pool)
    with pytest.raises(ValueError, match="negative"):
        pool.take(-1)
    with pytest.raises(ValueError, match="negative"):
        ObfuscatorPool(key1024.public, size=-1)
    empty = ObfuscatorPool(key1024.public, size=0)
    assert empty.fill() == 0
    assert empty.fill(3) == 0
    assert len(empty.take(2)) == 2


def test_pool_fills_in_background_and_stops(key1024: PaillierPrivateKey) -> None:
    # speed: the 1024-bit test-only preset
    pool = ObfuscatorPool(key1024.public, size=8)
    pool.fill_in_background().join(timeout=60)
    assert pool.available == 8
    pool.clear()
    pool.fill_in_background(count=3).join(timeout=60)
    assert pool.available == 3
    huge = ObfuscatorPool(key1024.public, size=10**7)
    huge.table()
    thread = huge.fill_in_background()
    huge.stop_filling()  # even before the thread gets to run, this stops that fill
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert huge.available < 10**7
    assert huge.fill(2) == 2  # a later fill is not affected by the earlier stop


def test_pool_concurrent_take_never_repeats(key1024: PaillierPrivateKey) -> None:
    # speed: the 1024-bit test-only preset
    pool = ObfuscatorPool(key1024.public, size=120)
    pool.fill()
    barrier = threading.Barrier(4)
    results: list[list[int]] = [[] for _ in range(4)]

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(8):
            results[i].extend(int(r) for r in pool.take(5))

    filler = pool.fill_in_background()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    pool.stop_filling()
    filler.join(timeout=60)
    everything = [r for chunk in results for r in chunk]
    assert len(everything) == 160
    assert len(set(everything)) == 160
    assert set(everything).isdisjoint(int(r) for r in pool.take(pool.available))


# ----------------------------------------------------------------------------- blocks


def test_blocks_encrypt_combine_decrypt(key1024: PaillierPrivateKey) -> None:
    # speed: the 1024-bit test-only preset
    public = key1024.public
    n = int(public.n)
    pool = ObfuscatorPool(public, size=0)
    rows = [[RNG.randrange(n // 4) for _ in range(5)] for _ in range(3)]
    blocks = [encrypt_block(public, row, pool) for row in rows]
    assert all(len(b) == 5 * 256 for b in blocks)
    p, q = _factors(key1024)
    reference = phe.PaillierPrivateKey(phe.PaillierPublicKey(n), p, q)
    decoded = read_block(public, blocks[0])
    assert [reference.raw_decrypt(int(c)) for c in decoded] == rows[0]
    assert decrypt_block(key1024, blocks[1]) == rows[1]
    combined = combine_blocks(public, [bytearray(blocks[0]), memoryview(blocks[1]), blocks[2]])
    sums = [sum(col) % n for col in zip(*rows, strict=True)]
    assert decrypt_block(key1024, combined, workers=2) == sums
    assert decrypt_block(key1024, combined, workers=1) == sums
    assert combine_blocks(public, [blocks[0]]) == blocks[0]
    assert read_block(public, b"") == []
    assert encrypt_block(public, [], pool) == b""
    # the same plaintext twice: two different ciphertexts (fresh obfuscators)
    twice = read_block(public, encrypt_block(public, [7, 7], pool))
    assert twice[0] != twice[1]


def test_block_errors_name_the_position_not_the_value(key1024: PaillierPrivateKey) -> None:
    # speed: the 1024-bit test-only preset
    public = key1024.public
    n, n2 = int(public.n), int(public.n_square)
    p, _ = _factors(key1024)
    pool = ObfuscatorPool(public, size=0)
    good = encrypt_block(public, [1, 2, 3], pool)
    with pytest.raises(ValueError, match="outside"):
        encrypt_block(public, [n], pool)
    with pytest.raises(ValueError, match="outside"):
        encrypt_block(public, [-1], pool)
    with weak_keys_allowed():  # speed: a second test-only key
        other = PaillierPrivateKey.generate(PaillierPreset.TEST_ONLY_1024).public
    with pytest.raises(ValueError, match="different public key"):
        encrypt_block(public, [1], ObfuscatorPool(other, size=0))
    with pytest.raises(ValueError, match="whole 256-byte ciphertexts, got 767"):
        read_block(public, good[:-1])
    for bad_value, problem in (
        (n2, "is not below n"),
        (2**2048 - 1, "is not below n"),
        (p * 12345, "is not coprime"),
        (0, "is not coprime"),
        (n, "is not coprime"),
    ):
        bad = good[:256] + bad_value.to_bytes(256, "big") + good[512:]
        with pytest.raises(CiphertextError, match=f"^ciphertext 1 {problem}") as info:
            read_block(public, bad)
        assert info.value.position == 1
        assert info.value.block is None
        with pytest.raises(CiphertextError, match=f"^ciphertext 1 of block 2 {problem}") as info:
            combine_blocks(public, [good, good, bad])
        assert (info.value.position, info.value.block) == (1, 2)
        with pytest.raises(CiphertextError, match=problem):
            decrypt_block(key1024, bad)
        for text in (str(bad_value), f"{bad_value:x}", str(p)):
            assert text not in str(info.value)
    with pytest.raises(ValueError, match="no blocks"):
        combine_blocks(public, [])
    with pytest.raises(ValueError, match="differ in length"):
        combine_blocks(public, [good, good[:512]])
    with pytest.raises(ValueError, match="whole 256-byte"):
        combine_blocks(public, [good + b"\0", good + b"\0"])
