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
from federation.transport.options import MAX_MESSAGE_BYTES
from federation.transport.serde_node import (
    CHUNK_ELEMENTS,
    UNKNOWN_SLOT,
    MaskedInputChunk,
    VectorAssembler,
)
from federation.v1 import analyst_pb2

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


def _roundtrip(table: ResultTable, chunk_bytes: int = serde.CHUNK_BYTES) -> ResultTable:
    """Encode into chunks, serialize, parse and decode, as the wire does."""
    assembler = serde.ResultAssembler(serde.table_header_to_proto(table))
    for chunk in serde.result_chunks(table, chunk_bytes):
        assembler.add(analyst_pb2.ResultChunk.FromString(chunk.SerializeToString()))
    return assembler.table()


def _column(values: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.none(), values)


row_strategy = st.tuples(
    _column(st.text(max_size=20)),
    _column(st.integers(min_value=-(2**200), max_value=2**200)),
    _column(st.floats()),
    _column(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(row_strategy, max_size=40), st.integers(min_value=1, max_value=400))
def test_result_tables_roundtrip_in_column_chunks(
    rows: list[tuple[object, ...]], chunk_bytes: int
) -> None:
    kinds = (ColumnKind.GROUP, ColumnKind.INTEGER, ColumnKind.DOUBLE, ColumnKind.INTEGER)
    table = ResultTable(("a", "b", "c", "d"), kinds, tuple(rows))  # type: ignore[arg-type]
    back = _roundtrip(table, chunk_bytes)
    assert (back.columns, back.kinds) == (table.columns, table.kinds)
    # repr: NaN equals itself, -0.0 differs from 0.0, 1 differs from 1.0
    assert repr(back.rows) == repr(table.rows)
    assert [[type(v) for v in r] for r in back.rows] == [[type(v) for v in r] for r in rows]


def test_large_results_travel_in_several_chunks_below_the_message_limit() -> None:
    n = 300_000
    table = ResultTable.from_columns(
        ("g", "n", "m"),
        (ColumnKind.GROUP, ColumnKind.INTEGER, ColumnKind.DOUBLE),
        [
            [f"label-{i % 977}" for i in range(n)],
            [i * 7_919 if i % 3 else None for i in range(n)],
            [i / 7 if i % 5 else None for i in range(n)],
        ],
    )
    chunks = list(serde.result_chunks(table))
    assert len(chunks) > 1
    assert all(c.ByteSize() < MAX_MESSAGE_BYTES // 2 for c in chunks)
    back = _roundtrip(table)
    assert back == table
    frame = back.to_pandas()
    assert str(frame["n"].dtype) == "Int64"
    assert frame["n"].isna().sum() == n // 3
    assert frame["m"].isna().sum() == n // 5
    assert frame.equals(table.to_pandas())


def test_a_column_mixing_value_types_is_not_encoded() -> None:
    table = ResultTable(("a",), (ColumnKind.GROUP,), (("x",), (1,)))
    with pytest.raises(TypeError, match="one type per column"):
        list(serde.result_chunks(table))


def _chunk(**column: object) -> analyst_pb2.ResultChunk:
    rows = column.pop("rows", 3)
    return analyst_pb2.ResultChunk(row_count=rows, columns=[analyst_pb2.ColumnChunk(**column)])  # type: ignore[arg-type]


def _decode(*chunks: analyst_pb2.ResultChunk, rows: int = 3, width: int = 1) -> ResultTable:
    header = analyst_pb2.ResultHeader(
        columns=[analyst_pb2.ResultColumn(name=f"c{i}", kind="integer") for i in range(width)],
        row_count=rows,
    )
    assembler = serde.ResultAssembler(header)
    for chunk in chunks:
        assembler.add(chunk)
    return assembler.table()


def test_valid_chunks_decode() -> None:
    table = _decode(
        _chunk(
            ints=[1, 0],
            null_bitmap=bytes([0b010]),
            big_int_rows=[2],
            big_int_values=["-" + "9" * 30],
        )
    )
    assert table.rows == ((1,), (None,), (-int("9" * 30),))


@pytest.mark.parametrize(
    ("chunk", "match"),
    [
        (analyst_pb2.ResultChunk(row_count=3), "has 0 columns, the header declares 1"),
        (_chunk(ints=[1, 2]), "carries 2 values for 3 non-NULL rows"),
        (_chunk(ints=[1, 2, 3, 4]), "carries 4 values for 3 non-NULL rows"),
        (_chunk(ints=[1], doubles=[1.0, 2.0]), "mixes value types"),
        (_chunk(ints=[1, 2], null_bitmap=b"\x01\x00"), "2-byte null bitmap; 3 rows need 1"),
        (_chunk(ints=[1, 2], null_bitmap=b"\x09"), "padding bits set"),
        (_chunk(ints=[1, 2, 3], big_int_rows=[1], big_int_values=["12x"]), "malformed integer"),
        (_chunk(ints=[1, 2, 3], big_int_rows=[1], big_int_values=[""]), "malformed integer"),
        (_chunk(ints=[1, 2, 3], big_int_rows=[1], big_int_values=["1" * 5000]), "malformed"),
        (_chunk(ints=[1, 2, 3], big_int_rows=[1, 2], big_int_values=["5"]), "2 big-integer rows"),
        (_chunk(ints=[1, 2, 3], big_int_rows=[3], big_int_values=["5"]), "out of range"),
        (_chunk(ints=[1, 2, 3], big_int_rows=[2, 1], big_int_values=["5", "6"]), "out of order"),
        (_chunk(ints=[1, 2], null_bitmap=b"\x02", big_int_rows=[1], big_int_values=["5"]), "NULL"),
        (_chunk(doubles=[1.0, 2.0, 3.0], big_int_rows=[1], big_int_values=["5"]), "outside an int"),
        (_chunk(rows=4, ints=[1, 2, 3, 4]), "overflows the 3 rows announced"),
        (_chunk(rows=0), "overflows"),
    ],
)
def test_malformed_chunks_are_refused(chunk: analyst_pb2.ResultChunk, match: str) -> None:
    with pytest.raises(FederationError, match=match):
        _decode(chunk)


def test_missing_rows_are_refused() -> None:
    with pytest.raises(FederationError, match="announced 3 rows but 2 arrived"):
        _decode(_chunk(rows=2, ints=[1, 2]))


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
        parts = [
            analyst_pb2.JobRecordPart.FromString(p.SerializeToString())
            for p in serde.job_record_to_proto(record)
        ]
        assert serde.job_record_from_proto(iter(parts)) == record
    with pytest.raises(FederationError, match="must start with the record"):
        serde.job_record_from_proto(iter([]))


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
