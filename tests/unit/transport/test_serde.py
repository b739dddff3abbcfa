"""Every domain message survives a trip through the wire types unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.errors import FederationError, MessageTooLargeError, ProtocolError
from federation.messages import (
    DatasetInfo,
    DatasetStatus,
    ErrorInfo,
    Heartbeat,
    JobRecord,
    JobStatus,
    NodeInfo,
    Protocol,
    Registered,
    Registration,
    SecAggFromNode,
    SecAggSetup,
    SecAggToNode,
    TaskAssignment,
    TaskCancelled,
    TaskFailure,
)
from federation.protocols.secagg.messages import (
    KeyAdvertisement,
    KeyRoster,
    MaskedInput,
    PublicKeys,
    ShareBundle,
    ShareDelivery,
    UnmaskRequest,
    UnmaskResponse,
)
from federation.schema import Classification, Column, ColumnType, DatasetSchema
from federation.table import ColumnKind, ResultTable
from federation.transport import serde, serde_node
from federation.transport.serde_node import (
    CHUNK_ELEMENTS,
    UNKNOWN_SLOT,
    MaskedInputChunk,
    VectorAssembler,
)

SCHEMA = DatasetSchema(
    "patients",
    (
        Column("age", ColumnType.INTEGER, bounds=(0.0, 120.0)),
        Column("sex", ColumnType.CATEGORICAL, domain=("F", "M")),
        Column("bmi", ColumnType.DOUBLE, classification=Classification.CONFIDENTIAL),
        Column(
            "note",
            ColumnType.TEXT,
            classification=Classification.RESTRICTED,
            description="free text",
        ),
    ),
    description="test",
)


def _node_roundtrip(message: object) -> object:
    raws = list(serde_node.node_messages_to_proto(message))  # type: ignore[arg-type]
    out = [
        serde_node.node_message_from_proto(type(r).FromString(r.SerializeToString())) for r in raws
    ]
    assert len(out) == 1
    return out[0]


def _coord_roundtrip(message: object, recipient: int = UNKNOWN_SLOT) -> object:
    raw = serde_node.coordinator_message_to_proto(message)  # type: ignore[arg-type]
    return serde_node.coordinator_message_from_proto(
        type(raw).FromString(raw.SerializeToString()), recipient=recipient
    )


def test_schema_roundtrip_keeps_fingerprint() -> None:
    back = serde.schema_from_proto(serde.schema_to_proto(SCHEMA))
    assert back == SCHEMA
    assert back.fingerprint() == SCHEMA.fingerprint()


def test_node_messages_roundtrip() -> None:
    reg = Registration("node-a", (SCHEMA,), agent_version="x/1")
    assert _node_roundtrip(reg) == reg
    assert _node_roundtrip(Heartbeat(12.5)) == Heartbeat(12.5)
    fail = TaskFailure("job", ErrorInfo("value_out_of_range", "column 'x' out of range"))
    assert _node_roundtrip(fail) == fail
    keys = PublicKeys(b"a" * 32, b"b" * 32)
    adv = _node_roundtrip(SecAggFromNode("job", KeyAdvertisement(3, keys)))
    # the sender slot is never taken from the wire
    assert adv == SecAggFromNode("job", KeyAdvertisement(UNKNOWN_SLOT, keys))
    bundle = _node_roundtrip(SecAggFromNode("job", ShareBundle(1, {2: b"x", 0: b"y"})))
    assert bundle == SecAggFromNode("job", ShareBundle(UNKNOWN_SLOT, {0: b"y", 2: b"x"}))
    unmask = _node_roundtrip(SecAggFromNode("job", UnmaskResponse(1, {0: b"s"}, {4: b"k"})))
    assert unmask == SecAggFromNode("job", UnmaskResponse(UNKNOWN_SLOT, {0: b"s"}, {4: b"k"}))


def test_coordinator_messages_roundtrip() -> None:
    setup = SecAggSetup(3, 1, 10, 2, ((1, 2), (0, 2), (0, 1)))
    task = TaskAssignment(
        "job", "patients", "SELECT COUNT(*) FROM patients", "ab" * 32, Protocol.SECAGG, 30.0, setup
    )
    assert _coord_roundtrip(task) == task
    assert _coord_roundtrip(Registered("n", 5.0)) == Registered("n", 5.0)
    cancel = TaskCancelled("job", ErrorInfo("protocol_error", "aborted"))
    assert _coord_roundtrip(cancel) == cancel
    keys = {0: PublicKeys(b"a" * 32, b"b" * 32), 2: PublicKeys(b"c" * 32, b"d" * 32)}
    assert _coord_roundtrip(SecAggToNode("j", KeyRoster(1, keys)), 1) == SecAggToNode(
        "j", KeyRoster(1, keys)
    )
    deliv = SecAggToNode("j", ShareDelivery(1, {0: b"ct0", 2: b"ct2"}))
    assert _coord_roundtrip(deliv, 1) == deliv
    req = SecAggToNode("j", UnmaskRequest(1, (0, 1), (2,)))
    assert _coord_roundtrip(req, 1) == req


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=3 * CHUNK_ELEMENTS + 7))
def test_masked_input_chunks_and_reassembles(length: int) -> None:
    vector = np.arange(length, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    raws = list(serde_node.node_messages_to_proto(SecAggFromNode("j", MaskedInput(0, vector))))
    assert len(raws) == -(-length // CHUNK_ELEMENTS)
    assert all(r.ByteSize() < 2 * 1024 * 1024 for r in raws)
    assembler = None
    result = None
    for raw in raws:
        chunk = serde_node.node_message_from_proto(raw)
        assert isinstance(chunk, MaskedInputChunk)
        assembler = assembler or VectorAssembler(chunk.total_length)
        result = assembler.add(chunk)
    assert result is not None
    np.testing.assert_array_equal(result, vector)


def test_vector_assembler_rejects_bad_chunks() -> None:
    with pytest.raises(MessageTooLargeError):
        VectorAssembler(1 << 40)
    asm = VectorAssembler(4)
    with pytest.raises(ProtocolError, match="offset"):
        asm.add(MaskedInputChunk("j", 2, 4, b"\0" * 16))
    with pytest.raises(ProtocolError, match="whole number"):
        asm.add(MaskedInputChunk("j", 0, 4, b"\0" * 5))
    with pytest.raises(ProtocolError, match="exceed"):
        asm.add(MaskedInputChunk("j", 0, 4, b"\0" * 40))
    with pytest.raises(ProtocolError, match="total length"):
        asm.add(MaskedInputChunk("j", 0, 5, b"\0" * 8))


cells = st.one_of(
    st.none(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(cells, cells, cells), max_size=30))
def test_result_rows_roundtrip(rows: list[tuple[object, object, object]]) -> None:
    table = ResultTable(
        ("a", "b", "c"), (ColumnKind.GROUP, ColumnKind.INTEGER, ColumnKind.DOUBLE), tuple(rows)
    )  # type: ignore[arg-type]
    header = serde.table_header_to_proto(table)
    names, kinds, count = serde.table_header_from_proto(header)
    back = tuple(serde.rows_from_proto(serde.rows_to_proto(table.rows), len(names)))
    assert (names, kinds, count) == (table.columns, table.kinds, len(rows))
    assert back == table.rows


def test_rows_with_wrong_width_are_refused() -> None:
    raw = serde.rows_to_proto([(1, 2)])
    with pytest.raises(FederationError, match="cells"):
        list(serde.rows_from_proto(raw, 3))


def test_directory_and_job_records_roundtrip() -> None:
    info = DatasetInfo(SCHEMA, 3, 2, DatasetStatus.CONFLICT, "differs")
    assert serde.dataset_info_from_proto(serde.dataset_info_to_proto(info)) == info
    node = NodeInfo("n", True, 10.0, ("patients",))
    assert serde.node_info_from_proto(serde.node_info_to_proto(node)) == node
    table = ResultTable(("n",), (ColumnKind.INTEGER,), ((5,),))
    for record in (
        JobRecord(
            "j", "SELECT 1", Protocol.SECAGG, "d", JobStatus.SUCCEEDED, 1.0, 2.0, 3, 3, None, table
        ),
        JobRecord(
            "j",
            "SELECT",
            Protocol.SECAGG,
            "",
            JobStatus.FAILED,
            1.0,
            2.0,
            0,
            0,
            ErrorInfo("sql_syntax", "bad"),
            None,
        ),
    ):
        assert serde.job_record_from_proto(serde.job_record_to_proto(record)) == record


def test_unknown_protocol_name_is_a_clear_error() -> None:
    with pytest.raises(FederationError, match="unknown protocol 'rot13'"):
        serde.protocol_from_wire("rot13")
    assert serde.protocol_from_wire("") is Protocol.SECAGG


def test_empty_messages_are_refused() -> None:
    from federation.v1 import node_pb2

    with pytest.raises(FederationError, match="no body"):
        serde_node.node_message_from_proto(node_pb2.NodeMessage())
    with pytest.raises(FederationError, match="no body"):
        serde_node.coordinator_message_from_proto(node_pb2.CoordinatorMessage())
    with pytest.raises(ProtocolError, match="twice"):
        serde_node.node_message_from_proto(
            node_pb2.NodeMessage(
                secagg=node_pb2.SecAggNodeMessage(
                    job_id="j",
                    share_bundle=node_pb2.ShareBundle(
                        ciphertexts=[node_pb2.SlotBytes(slot=1), node_pb2.SlotBytes(slot=1)]
                    ),
                )
            )
        )


def test_homomorphic_messages_roundtrip() -> None:
    from federation.messages import EncryptedShare, HESetup
    from federation.transport.serde_node import CHUNK_BYTES, ChunkReassembler

    he = HESetup(b"pk" * 40, 1, 3, 50, 12, ((0, b"a" * 32), (2, b"c" * 32)))
    task = TaskAssignment(
        "job",
        "patients",
        "SELECT COUNT(*) FROM patients",
        "ab" * 32,
        Protocol.PAILLIER,
        30.0,
        he=he,
    )
    assert _coord_roundtrip(task) == task
    assert _node_roundtrip(Registration("n", (SCHEMA,), mask_public_key=b"k" * 32)) == Registration(
        "n", (SCHEMA,), mask_public_key=b"k" * 32
    )
    payload = bytes(range(256)) * (CHUNK_BYTES // 128 + 3)
    raws = list(serde_node.node_messages_to_proto(EncryptedShare("job", payload)))
    assert len(raws) == 3
    reassembler = ChunkReassembler()
    out = [reassembler.feed(serde_node.node_message_from_proto(r)) for r in raws]
    assert out[:2] == [None, None]
    assert out[2] == EncryptedShare("job", payload)


def test_a_task_must_carry_exactly_one_setup() -> None:
    from federation.v1 import node_pb2

    with pytest.raises(ProtocolError, match="exactly one protocol setup"):
        serde_node.coordinator_message_from_proto(
            node_pb2.CoordinatorMessage(task=node_pb2.Task(job_id="j", protocol="secagg"))
        )


def test_out_of_order_share_chunks_are_refused() -> None:
    from federation.transport.serde_node import BytesAssembler

    asm = BytesAssembler(10)
    with pytest.raises(ProtocolError, match="offset"):
        asm.add(5, 10, b"xxxxx")
    with pytest.raises(ProtocolError, match="exceeds"):
        asm.add(0, 10, b"x" * 11)
    with pytest.raises(MessageTooLargeError):
        BytesAssembler(2**40)
