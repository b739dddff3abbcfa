"""Chunking of large node payloads: the size limits, the chunks and their reassembly.

A masked input travels as uint64 vector chunks, an encrypted share as byte chunks;
:class:`ChunkReassembler` turns a node's stream of them back into whole messages.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from federation.errors import MessageTooLargeError, ProtocolError
from federation.messages import EncryptedShare, NodeToCoordinator, SecAggFromNode
from federation.protocols.secagg.messages import MaskedInput
from federation.transport.serde_slots import UNKNOWN_SLOT

__all__ = [
    "CHUNK_BYTES",
    "CHUNK_ELEMENTS",
    "LE_U64",
    "MAX_SHARE_BYTES",
    "MAX_VECTOR_LENGTH",
    "BytesAssembler",
    "ChunkReassembler",
    "EncryptedShareChunk",
    "MaskedInputChunk",
    "VectorAssembler",
    "chunk_bytes",
]

CHUNK_ELEMENTS = 1 << 17
"""uint64 elements per vector chunk: 1 MiB of payload, far below the 4 MiB message limit."""
MAX_VECTOR_LENGTH = 1 << 26
"""Largest vector (in elements, 512 MiB) a coordinator accepts from a node."""

CHUNK_BYTES = 1 << 20
"""Bytes per chunk of an encrypted share (1 MiB)."""
MAX_SHARE_BYTES = 1 << 30
"""Largest encrypted share (1 GiB) a coordinator accepts from a node."""

LE_U64 = np.dtype("<u8")
"""Little-endian uint64: the byte order of a vector on the wire."""


class EncryptedShareChunk:
    """One received slice of a node's encrypted share (transport-internal)."""

    __slots__ = ("data", "job_id", "offset", "total_length")

    def __init__(self, job_id: str, offset: int, total_length: int, data: bytes) -> None:
        self.job_id = job_id
        self.offset = offset
        self.total_length = total_length
        self.data = data


class BytesAssembler:
    """Reassembles bytes sent as contiguous chunks; rejects anything else.

    The buffer grows with the data received: an announced length costs nothing
    until the sender actually sends that much.
    """

    def __init__(self, total_length: int, limit: int = MAX_SHARE_BYTES) -> None:
        if total_length == 0:
            raise ProtocolError("a chunked payload must announce a positive length")
        if total_length > limit:
            raise MessageTooLargeError(
                f"a payload of {total_length} bytes was announced; the limit is {limit}"
            )
        self.total_length = total_length
        self._buffer = bytearray()

    def add(self, offset: int, total_length: int, data: bytes) -> bytes | None:
        """Add the next chunk; returns the whole payload once it is complete."""
        filled = len(self._buffer)
        if total_length != self.total_length:
            raise ProtocolError("chunks disagree on the total length")
        if offset != filled:
            raise ProtocolError(f"chunk at offset {offset}, expected {filled} (chunks in order)")
        if not data or filled + len(data) > self.total_length:
            raise ProtocolError("a chunk is empty or exceeds the announced length")
        self._buffer += data
        return bytes(self._buffer) if len(self._buffer) == self.total_length else None


def chunk_bytes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(offset, slice)`` pairs covering ``data`` in chunks of CHUNK_BYTES."""
    for start in range(0, len(data), CHUNK_BYTES):
        yield start, data[start : start + CHUNK_BYTES]


class MaskedInputChunk:
    """One received slice of a node's masked input (transport-internal)."""

    __slots__ = ("data", "job_id", "offset", "total_length")

    def __init__(self, job_id: str, offset: int, total_length: int, data: bytes) -> None:
        self.job_id = job_id
        self.offset = offset
        self.total_length = total_length
        self.data = data


class VectorAssembler:
    """Reassembles a vector sent as contiguous chunks; rejects anything else.

    The buffer grows with the data received: an announced length costs nothing
    until the sender actually sends that much.
    """

    def __init__(self, total_length: int) -> None:
        if total_length == 0:
            raise ProtocolError("a chunked vector must announce a positive length")
        if total_length > MAX_VECTOR_LENGTH:
            raise MessageTooLargeError(
                f"a vector of {total_length} elements was announced; "
                f"the limit is {MAX_VECTOR_LENGTH}"
            )
        self.total_length = total_length
        self._buffer = bytearray()

    def add(self, chunk: MaskedInputChunk) -> np.ndarray | None:
        """Add the next chunk; returns the whole vector once it is complete."""
        filled = len(self._buffer) // 8
        if chunk.total_length != self.total_length:
            raise ProtocolError("vector chunks disagree on the total length")
        if chunk.offset != filled:
            raise ProtocolError(
                f"vector chunk at offset {chunk.offset}, expected {filled} (chunks in order)"
            )
        if len(chunk.data) % 8 or not chunk.data:
            raise ProtocolError("a vector chunk must hold a positive whole number of uint64 values")
        if filled + len(chunk.data) // 8 > self.total_length:
            raise ProtocolError("vector chunks exceed the announced length")
        self._buffer += chunk.data
        if len(self._buffer) < self.total_length * 8:
            return None
        return np.frombuffer(bytes(self._buffer), dtype=LE_U64).astype(np.uint64, copy=False)


class ChunkReassembler:
    """Turns a node's stream of wire messages back into whole domain messages.

    Chunks of a masked input or an encrypted share are buffered per job until
    complete; every other message passes through. Not thread-safe: one per stream.
    """

    def __init__(self) -> None:
        self._vectors: dict[str, VectorAssembler] = {}
        self._shares: dict[str, BytesAssembler] = {}

    def feed(
        self, message: NodeToCoordinator | MaskedInputChunk | EncryptedShareChunk
    ) -> NodeToCoordinator | None:
        """The complete message, or None while a chunked one is still arriving."""
        if isinstance(message, MaskedInputChunk):
            vectors = self._vectors.get(message.job_id)
            if vectors is None:
                vectors = VectorAssembler(message.total_length)
                self._vectors[message.job_id] = vectors
            vector = vectors.add(message)
            if vector is None:
                return None
            del self._vectors[message.job_id]
            return SecAggFromNode(message.job_id, MaskedInput(UNKNOWN_SLOT, vector))
        if isinstance(message, EncryptedShareChunk):
            share = self._shares.get(message.job_id)
            if share is None:
                share = BytesAssembler(message.total_length)
                self._shares[message.job_id] = share
            payload = share.add(message.offset, message.total_length, message.data)
            if payload is None:
                return None
            del self._shares[message.job_id]
            return EncryptedShare(message.job_id, payload)
        return message
