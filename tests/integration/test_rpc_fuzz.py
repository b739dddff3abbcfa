"""Every coordinator RPC fuzzed with random bytes and with well-formed nonsense.

A real federation (a coordinator and three node agents on loopback) serves the whole
module. Each call must end within its deadline with a clear status: OK, or a code
from our catalogue (``STATUS_BY_CODE``) with a message and the error's stable code,
or one of the statuses gRPC itself answers before our code runs (a message over the
size limit, a unary call without its request). Never UNKNOWN or INTERNAL, never a
hang. After each fuzz test the federation still answers a real query, checked
against pandas on the pooled partitions.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import federation as fed
from federation.errors import FederationError
from federation.transport.options import MAX_MESSAGE_BYTES, MAX_SQL_BYTES
from federation.transport.serde import schema_to_proto
from federation.transport.serde_node import (
    MAX_SHARE_BYTES,
    MAX_VECTOR_LENGTH,
    ChunkReassembler,
    EncryptedShareChunk,
    MaskedInputChunk,
)
from federation.transport.status import CODE_METADATA_KEY, MAX_DETAILS_BYTES, STATUS_BY_CODE
from federation.v1 import analyst_pb2, common_pb2, node_pb2
from tests.reference import close, exact_mean

SCHEMA = fed.DatasetSchema(
    "t",
    (
        fed.Column("g", fed.ColumnType.CATEGORICAL, domain=("a", "b")),
        fed.Column("x", fed.ColumnType.DOUBLE),
        fed.Column("note", fed.ColumnType.TEXT),
    ),
)
REAL_NODES = frozenset({"node-0", "node-1", "node-2"})
CALL_TIMEOUT = 20.0  # a call still running after this long is a hang


def _parts(n_nodes: int = 3, rows: int = 40, seed: int = 6) -> list[pd.DataFrame]:
    gen = np.random.default_rng(seed)
    return [
        pd.DataFrame(
            {
                "g": gen.choice(["a", "b"], rows).astype(object),
                "x": gen.normal(10.0, 2.0, rows),
                "note": ["n"] * rows,
            }
        )
        for _ in range(n_nodes)
    ]


PARTS = _parts()

_S = grpc.StatusCode
GRPC_OWN = frozenset({_S.RESOURCE_EXHAUSTED, _S.UNIMPLEMENTED})
"""Statuses gRPC answers by itself, before a servicer runs: a message over the size
limit, a unary call that sent no request, a method that does not exist."""

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def fed3() -> Iterator[fed.Client]:
    # Plaintext: no identities, so every handler is reachable by any caller (no role
    # checks, no rate limit, any node name), which is what fuzzing the handlers needs.
    with fed.simulate(
        {"t": PARTS}, schemas={"t": SCHEMA}, round_timeout=10.0, insecure=True
    ) as client:
        yield client


@pytest.fixture(scope="module")
def channel(fed3: fed.Client) -> Iterator[grpc.Channel]:
    # No message size options: an analyst may send messages of any size.
    ch = fed3.security.channel(fed3.address, [])
    yield ch
    ch.close()


# --- calls and their outcome ----------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How one call ended."""

    status: grpc.StatusCode
    details: str
    code: str | None  # our error's stable code, from the trailing metadata
    responses: int


def _outcome(call: grpc.Call, responses: int) -> Outcome:
    code = None
    for key, value in call.trailing_metadata() or ():
        if key == CODE_METADATA_KEY:
            code = value if isinstance(value, str) else value.decode()
    return Outcome(call.code(), call.details() or "", code, responses)


def _unary(channel: grpc.Channel, method: str, body: bytes) -> Outcome:
    rpc = channel.unary_unary(f"/federation.v1.AnalystService/{method}")
    try:
        _, call = rpc.with_call(body, timeout=CALL_TIMEOUT)
    except grpc.RpcError as exc:
        return _outcome(exc, 0)  # type: ignore[arg-type]  # the error is the call
    return _outcome(call, 1)


def _server_stream(channel: grpc.Channel, method: str, body: bytes) -> Outcome:
    call = channel.unary_stream(f"/federation.v1.AnalystService/{method}")(
        body, timeout=CALL_TIMEOUT
    )
    n = 0
    with contextlib.suppress(grpc.RpcError):
        for _ in call:
            n += 1
    return _outcome(call, n)


def _analyst_call(channel: grpc.Channel, method: str, body: bytes) -> Outcome:
    if method in ("SubmitQuery", "GetJob"):
        return _server_stream(channel, method, body)
    return _unary(channel, method, body)


def _connect(channel: grpc.Channel, bodies: list[bytes], ending: str) -> Outcome:
    """One node stream: send ``bodies``, then end it by ``ending``.

    ``half_close`` ends the requests politely; ``cancel`` drops the call once every
    body was handed to gRPC; ``hold`` keeps the stream open until the coordinator ends
    it; ``probe`` keeps it open and sends two valid registrations, of which a
    coordinator still reading the stream refuses at least one.
    """
    handed_over = threading.Event()
    release = threading.Event()

    def requests() -> Iterator[bytes]:
        yield from bodies
        if ending == "probe":
            yield from [node_pb2.NodeMessage(register=VALID_REGISTER).SerializeToString()] * 2
        handed_over.set()
        if ending != "half_close":
            release.wait(CALL_TIMEOUT)

    connect = channel.stream_stream("/federation.v1.NodeService/Connect")
    call = connect(requests(), timeout=CALL_TIMEOUT)
    call.add_done_callback(lambda _: handed_over.set())  # ended before reading it all
    if ending == "cancel":
        handed_over.wait(CALL_TIMEOUT)
        call.cancel()
    n = 0
    try:
        with contextlib.suppress(grpc.RpcError):
            for _ in call:
                n += 1
    finally:
        release.set()
    return _outcome(call, n)


def assert_clear(outcome: Outcome) -> None:
    """OK, or a catalogued status with a message; a missing code means gRPC's own."""
    if outcome.status is _S.OK:
        return
    assert outcome.details.strip(), outcome
    if outcome.code is None:
        # DEADLINE_EXCEEDED without our code is this test's own deadline: a hang.
        assert outcome.status in GRPC_OWN, outcome
        return
    assert outcome.code != FederationError.code, outcome
    assert outcome.status is STATUS_BY_CODE[outcome.code], outcome


def assert_no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> None:
    """The coordinator logged no unexpected error (what becomes INTERNAL)."""
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(("coordinator", "federation"))
    ]
    assert not errors, errors


def _online(client: fed.Client) -> set[str]:
    return {n.name for n in client.nodes() if n.online}


def wait_settled(client: fed.Client, timeout: float = 15.0) -> None:
    """Until exactly the real nodes are online (fuzzed node streams have detached)."""
    deadline = time.monotonic() + timeout
    while (online := _online(client)) != REAL_NODES:
        assert time.monotonic() < deadline, f"online nodes {sorted(online)}"
        time.sleep(0.05)


def assert_still_serves(client: fed.Client, channel: grpc.Channel) -> None:
    """Every read-only RPC answers and a real query gives the pooled answer."""
    wait_settled(client)
    for method in ("GetInfo", "ListDatasets", "ListNodes"):
        assert _unary(channel, method, b"").status is _S.OK, method
    result = client.query("SELECT g, COUNT(*), AVG(x) FROM t GROUP BY g")
    pooled = pd.concat(PARTS, ignore_index=True)
    expected = {str(g): (len(rows), exact_mean(rows.x)) for g, rows in pooled.groupby("g")}
    got = {g: (n, mean) for g, n, mean in result.rows}
    assert set(got) == set(expected)
    for g, (n, mean) in got.items():
        assert n == expected[g][0]
        assert close(mean, expected[g][1])
    assert result.node_count == 3


# --- AnalystService -------------------------------------------------------------------

ANALYST_METHODS = ["GetInfo", "ListDatasets", "ListNodes", "SubmitQuery", "GetJob", "ForgetNode"]


@pytest.mark.parametrize("method", ANALYST_METHODS)
def test_random_bytes_to_every_analyst_rpc_get_a_clear_status(
    fed3: fed.Client, channel: grpc.Channel, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    @settings(FUZZ, max_examples=60)
    @given(body=st.binary(max_size=200))
    @example(body=b"")
    @example(body=b"\xff")  # an invalid wire type
    @example(body=b"\x0a\x05\xff\xfe\xfd\xfc\xfb")  # field 1 as a string of invalid UTF-8
    @example(body=b"\x0a\x80\x80\x80\x80\x10")  # a length beyond the message
    def fuzz(body: bytes) -> None:
        assert_clear(_analyst_call(channel, method, body))

    fuzz()
    assert_still_serves(fed3, channel)
    assert_no_unexpected_errors(caplog)


def test_an_unknown_method_is_unimplemented(channel: grpc.Channel) -> None:
    outcome = _unary(channel, "DropEverything", b"")
    assert outcome.status is _S.UNIMPLEMENTED
    assert outcome.details


def test_undecodable_requests_are_invalid_arguments_not_internal_errors(
    channel: grpc.Channel,
) -> None:
    # Regression: gRPC answers a request it cannot deserialize with INTERNAL.
    for method in ANALYST_METHODS:
        outcome = _analyst_call(channel, method, b"\xff")  # a truncated tag
        assert outcome.status is _S.INVALID_ARGUMENT, (method, outcome)
        assert outcome.code == "invalid_config"
        assert "not a valid" in outcome.details
    outcome = _connect(channel, [b"\xff"], "half_close")
    assert (outcome.status, outcome.code) == (_S.INVALID_ARGUMENT, "invalid_config")


def test_under_mutual_tls_the_caller_is_checked_before_the_bytes() -> None:
    # The default federation: mutual TLS with access control in front of the handlers.
    with fed.simulate({"t": PARTS}, schemas={"t": SCHEMA}) as client:
        assert client.security.secure
        tls = client.security.channel(client.address, [])
        try:

            @settings(FUZZ, max_examples=25)
            @given(method=st.sampled_from(ANALYST_METHODS), body=st.binary(max_size=100))
            @example(method="GetInfo", body=b"\xff")
            def fuzz(method: str, body: bytes) -> None:
                assert_clear(_analyst_call(tls, method, body))

            fuzz()
            outcome = _analyst_call(tls, "GetJob", b"\xff")
            assert (outcome.status, outcome.code) == (_S.INVALID_ARGUMENT, "invalid_config")
            # an analyst may not serve as a node, whatever it sends
            outcome = _connect(tls, [b"\xff"], "half_close")
            assert (outcome.status, outcome.code) == (_S.PERMISSION_DENIED, "access_denied")
            assert client.query("SELECT COUNT(*) FROM t").rows == [(sum(map(len, PARTS)),)]
        finally:
            tls.close()


SQL_WORDS = [
    *("SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "LIMIT 1", "AS"),
    *("COUNT(*)", "COUNT(x)", "SUM(x)", "AVG(x)", "VAR_SAMP(x)", "MIN(x)", "CORR(x, x)"),
    *("g", "x", "note", "t", "nowhere", "*", "AND", "OR", "NOT", "IN", "BETWEEN", "IS NULL"),
    *("CASE WHEN", "THEN", "ELSE", "END", "=", "<", ">=", "<>", "+", "-", "/", "(", ")"),
    *(",", ";", "'a'", "'", '"', "1", "-1", "0.5", "1e308", "1e999", "NaN", "NULL", "--"),
    *("/*", "*/", "\x00", "é", "\U0001f440", "\u202e", "JOIN", "UNION", "WITH", "DISTINCT"),
    *("read_csv('/etc/passwd')", "$1", "?", "::INT", "FLOOR(x / 2)", "WIDTH_BUCKET(x, 0, 20, 4)"),
]
SELECT_ITEMS = [
    *("COUNT(*)", "COUNT(x)", "SUM(x)", "AVG(x)", "STDDEV_SAMP(x)", "VAR_POP(x)", "g"),
    *("SUM(g)", "AVG(height)", "MAX(x)", "x", "*", "COUNT(*) + 1", "SUM(x) / COUNT(*)"),
    *("AVG(note)", "COUNT(DISTINCT x)", "REGR_SLOPE(x, x)", "-SUM(x)", "COUNT(*) AS n"),
]
WHERES = [
    *("", " WHERE x > 10", " WHERE g = 'a'", " WHERE g = 'zzz'", " WHERE x > 1e400"),
    *(" WHERE x IN (1, 2)", " WHERE note LIKE '%'", " WHERE x > 1000", " WHERE x IS NULL"),
    *(" WHERE x BETWEEN 9 AND 9.01", " WHERE NOT (x < 0 OR g <> 'b')", " WHERE 1 = 1"),
]
GROUPS = ["", " GROUP BY g", " GROUP BY x", " GROUP BY g, g", " GROUP BY 1", " GROUP BY note"]
TABLES = ["t", "T", "nowhere", '"t"', "t AS u", "t, t", "t JOIN t USING (g)", "(SELECT 1)"]
NASTY_SQL = [
    "",
    " ",
    "SELECT",
    "SELECT COUNT(*) FROM t WHERE g = 'a",
    "SELECT COUNT(*) FROM t WHERE ((((x > 1)",
    "SELECT COUNT(*) FROM t; DROP TABLE t",
    "SELECT COUNT(*) FROM t -- trailing comment",
    "SELECT COUNT(*) /* unterminated",
    "SELECT COUNT(*) FROM t WHERE x > 99999999999999999999999999999999999999999",
    "SELECT SUM(x) FROM t WHERE g = '\x00'",
    "SELECT COUNT(*) FROM read_parquet('/etc/passwd')",
    "SELECT COUNT(*) FROM t WHERE x = $1",
    "EXPLAIN SELECT COUNT(*) FROM t",
    "COPY t TO '/tmp/leak.csv'",
    "SELECT COUNT(*) FROM t GROUP BY " + ", ".join(["g"] * 50),
    "SELECT " + ", ".join(["COUNT(*)"] * 300) + " FROM t",
    "SELECT COUNT(*) FROM t WHERE x IN (" + ", ".join(map(str, range(2000))) + ")",
    "SELECT COUNT(*) FROM t WHERE " + "(" * 150 + "x > 1" + ")" * 150,
    "SELECT COUNT(*) FROM t WHERE " + " AND ".join(["x > 1"] * 200),
    "SELECT WIDTH_BUCKET(x, 0, 10, 99999999999) AS b, COUNT(*) FROM t GROUP BY b",
    "SELECT FLOOR(x / 0) AS b, COUNT(*) FROM t GROUP BY b",
    "\ufeffSELECT COUNT(*) FROM t",
    "SELECT COUNT(*) FROM \U0001f600",
]

templated_sql = st.builds(
    "SELECT {} FROM {}{}{}".format,
    st.lists(st.sampled_from(SELECT_ITEMS), min_size=1, max_size=3).map(", ".join),
    st.sampled_from(TABLES),
    st.sampled_from(WHERES),
    st.sampled_from(GROUPS),
)
sql_texts = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(SQL_WORDS), max_size=20).map(" ".join),
    templated_sql,
    templated_sql.map(str.lower),
    st.sampled_from(NASTY_SQL),
    # Long texts, on either side of the size limit (one long literal: no deep nesting).
    st.builds(
        lambda n, fill: "SELECT COUNT(*) FROM t WHERE g = '" + fill * n + "'",
        st.integers(MAX_SQL_BYTES - 64, MAX_SQL_BYTES + 64),
        st.sampled_from(["a", "é"]),
    ),
)


def test_fuzzed_sql_gets_a_clear_status(
    fed3: fed.Client, channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    @settings(FUZZ, max_examples=200)
    @given(sql=sql_texts)
    @example(sql="x" * (MAX_MESSAGE_BYTES + 10))
    def fuzz(sql: str) -> None:
        body = analyst_pb2.SubmitQueryRequest(sql=sql).SerializeToString()
        assert_clear(_server_stream(channel, "SubmitQuery", body))

    fuzz()
    assert_still_serves(fed3, channel)
    assert_no_unexpected_errors(caplog)


protocols = st.one_of(
    st.just(""),
    st.just("secagg"),
    st.sampled_from(["SECAGG", "paillier", "ckks", "Paillier"]),
    st.sampled_from(["rot13", "0", " secagg", "secagg\x00", "sec agg"]),
    st.integers(-(2**31), 2**31).map(str),
    st.text(max_size=12),
)
dp_params = st.builds(
    common_pb2.DPParams,
    epsilon=st.one_of(st.floats(), st.sampled_from([0.0, -1.0, 0.25, 1.0, 1e300])),
    delta=st.one_of(st.floats(), st.sampled_from([0.0, 1e-6, 0.5, 1.0])),
    analyst=st.text(max_size=16),
)
VALID_SQL = [
    "SELECT COUNT(*) FROM t",
    "SELECT g, COUNT(*), AVG(x) FROM t GROUP BY g",
    "SELECT SUM(x) FROM t WHERE x > 10",
]


def test_fuzzed_query_parameters_get_a_clear_status(
    fed3: fed.Client, channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    @settings(FUZZ, max_examples=150)
    @given(
        request=st.builds(
            analyst_pb2.SubmitQueryRequest,
            sql=st.sampled_from(VALID_SQL),
            protocol=protocols,
            public_key=st.one_of(st.just(b""), st.binary(max_size=300)),
            dp=st.one_of(st.none(), dp_params),
        )
    )
    @example(request=analyst_pb2.SubmitQueryRequest(sql=VALID_SQL[0], protocol="3"))
    @example(request=analyst_pb2.SubmitQueryRequest(sql=VALID_SQL[0], protocol="paillier"))
    def fuzz(request: analyst_pb2.SubmitQueryRequest) -> None:
        assert_clear(_server_stream(channel, "SubmitQuery", request.SerializeToString()))

    fuzz()
    assert_still_serves(fed3, channel)
    assert_no_unexpected_errors(caplog)


def test_an_unknown_protocol_is_an_invalid_argument(channel: grpc.Channel) -> None:
    # Regression: the coordinator reported an unknown protocol name as INTERNAL.
    request = analyst_pb2.SubmitQueryRequest(sql="SELECT COUNT(*) FROM t", protocol="3")
    outcome = _server_stream(channel, "SubmitQuery", request.SerializeToString())
    assert (outcome.status, outcome.code) == (_S.INVALID_ARGUMENT, "invalid_config")
    assert "unknown protocol '3'" in outcome.details


def test_errors_echoing_huge_inputs_keep_their_status(channel: grpc.Channel) -> None:
    # Regression: the message "no job with id '<id>'" became a status header larger
    # than the caller accepts, so the caller saw RESOURCE_EXHAUSTED, not NOT_FOUND.
    body = analyst_pb2.GetJobRequest(job_id="j" * 100_000).SerializeToString()
    outcome = _server_stream(channel, "GetJob", body)
    assert (outcome.status, outcome.code) == (_S.NOT_FOUND, "unknown_job")
    assert outcome.details.endswith("[truncated]")
    assert len(outcome.details.encode()) <= MAX_DETAILS_BYTES


def test_fuzzed_job_ids_get_a_clear_status(
    fed3: fed.Client, channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    real = fed3.query("SELECT COUNT(*) FROM t").job_id
    assert real is not None

    @settings(FUZZ, max_examples=60)
    @given(
        job_id=st.one_of(
            st.text(max_size=80),
            st.sampled_from(["", "0" * 32, real, real.upper(), real + " ", "' OR 1=1 --", "%"]),
            st.binary(min_size=16, max_size=16).map(bytes.hex),
            st.integers(0, 200_000).map(lambda n: "j" * n),
        )
    )
    def fuzz(job_id: str) -> None:
        body = analyst_pb2.GetJobRequest(job_id=job_id).SerializeToString()
        outcome = _server_stream(channel, "GetJob", body)
        assert_clear(outcome)
        if job_id == real:
            assert outcome.status is _S.OK
            assert outcome.responses >= 2  # the record, then its result

    fuzz()
    assert_still_serves(fed3, channel)
    assert_no_unexpected_errors(caplog)


# --- AuditService ---------------------------------------------------------------------


def test_fuzzed_audit_log_requests_get_a_clear_status(
    fed3: fed.Client, channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    from federation.v1 import audit_pb2

    get_log = channel.unary_stream("/federation.v1.AuditService/GetLog")

    @settings(FUZZ, max_examples=60)
    @given(
        body=st.one_of(
            st.binary(max_size=100),
            st.builds(
                audit_pb2.GetLogRequest,
                start=st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63])),
            ).map(audit_pb2.GetLogRequest.SerializeToString),
        )
    )
    @example(body=b"\xff")
    def fuzz(body: bytes) -> None:
        call = get_log(body, timeout=CALL_TIMEOUT)
        n = 0
        with contextlib.suppress(grpc.RpcError):
            for _ in call:
                n += 1
        assert_clear(_outcome(call, n))

    fuzz()
    assert_still_serves(fed3, channel)
    assert_no_unexpected_errors(caplog)


# --- NodeService.Connect ------------------------------------------------------------------

VALID_REGISTER = node_pb2.Register(
    node_name="fuzz-node", agent_version="fuzz", protocol_version=1, datasets=[]
)
node_names = st.one_of(
    st.text(max_size=70),
    st.sampled_from(["", "fuzz-dup", "fuzz-dup", "f" * 64, "f" * 65, "-lead", "a b", "fuzz.1"]),
    st.integers(0, 100_000).map(lambda n: "n" * n),
).filter(lambda name: name not in REAL_NODES)
job_ids = st.one_of(st.text(max_size=40), st.binary(min_size=16, max_size=16).map(bytes.hex))
u64 = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 8, MAX_VECTOR_LENGTH, MAX_VECTOR_LENGTH + 1, MAX_SHARE_BYTES]),
)
slot_bytes = st.lists(
    st.builds(node_pb2.SlotBytes, slot=st.integers(0, 2**32 - 1), data=st.binary(max_size=40)),
    max_size=4,
)
columns = st.builds(
    common_pb2.Column,
    name=st.one_of(st.sampled_from(["g", "x", "x", "1x", ""]), st.text(max_size=10)),
    type=st.sampled_from(["integer", "double", "categorical", "text", "blob", ""]),
    domain=st.lists(st.sampled_from(["a", "b", "a", ""]), max_size=3),
    has_bounds=st.booleans(),
    lower=st.floats(),
    upper=st.floats(),
    classification=st.sampled_from(["", "public", "internal", "restricted", "secret"]),
    description=st.text(max_size=10),
)
schemas = st.one_of(
    st.just(schema_to_proto(SCHEMA)),
    st.builds(
        common_pb2.DatasetSchema,
        name=st.one_of(st.sampled_from(["t", "u", "", "1u", "t t"]), st.text(max_size=10)),
        columns=st.lists(columns, max_size=4),
        description=st.text(max_size=10),
    ),
)
dataset_policies = st.builds(
    common_pb2.DatasetPolicy,
    min_cell_size=st.integers(0, 2**32 - 1),
    min_query_set_size=st.integers(0, 2**32 - 1),
    allowed_statistics=st.lists(st.sampled_from(["count", "sum", "avg", "median", ""])),
    approval=st.sampled_from(["", "automatic", "manual", "maybe"]),
    dp_epsilon=st.floats(),
    dp_delta=st.floats(),
    approval_timeout=st.floats(),
)
registers = st.builds(
    node_pb2.Register,
    node_name=node_names,
    agent_version=st.text(max_size=20),
    protocol_version=st.sampled_from([1, 1, 0, 2, 2**32 - 1]),
    datasets=st.lists(schemas, max_size=3),
    mask_public_key=st.binary(max_size=40),
    audit_key=st.binary(max_size=40),
    audit_size=st.integers(0, 2**64 - 1),
    audit_pending=st.lists(st.binary(max_size=80), max_size=3),
    policies=st.dictionaries(
        st.one_of(st.sampled_from(["t", "u", "nowhere"]), st.text(max_size=6)),
        dataset_policies,
        max_size=2,
    ),
)
budgets = st.lists(
    st.builds(
        common_pb2.BudgetSpend,
        dataset=st.sampled_from(["t", "u", ""]),
        analyst=st.text(max_size=8),
        spent_rho=st.floats(),
        budget_rho=st.floats(),
    ),
    max_size=3,
)
secagg_messages = st.one_of(
    st.builds(
        lambda j, e, m: node_pb2.SecAggNodeMessage(
            job_id=j, advertise_keys=node_pb2.PublicKeys(encryption_key=e, masking_key=m)
        ),
        job_ids,
        st.binary(max_size=40),
        st.binary(max_size=40),
    ),
    st.builds(
        lambda j, c: node_pb2.SecAggNodeMessage(
            job_id=j, share_bundle=node_pb2.ShareBundle(ciphertexts=c)
        ),
        job_ids,
        slot_bytes,
    ),
    st.builds(
        lambda j, o, n, d: node_pb2.SecAggNodeMessage(
            job_id=j, masked_input=node_pb2.VectorChunk(offset=o, total_length=n, data=d)
        ),
        job_ids,
        u64,
        u64,
        st.binary(max_size=64),
    ),
    st.builds(
        lambda j, s, k: node_pb2.SecAggNodeMessage(
            job_id=j,
            unmask_response=node_pb2.UnmaskResponse(self_mask_shares=s, key_shares=k),
        ),
        job_ids,
        slot_bytes,
        slot_bytes,
    ),
    st.builds(
        node_pb2.SecAggNodeMessage, job_id=job_ids, consistency_signature=st.binary(max_size=80)
    ),
    st.builds(node_pb2.SecAggNodeMessage, job_id=job_ids),  # no round set
)
stream_messages = st.one_of(
    st.just(node_pb2.NodeMessage()),  # no body
    st.builds(
        node_pb2.NodeMessage,
        heartbeat=st.builds(node_pb2.Heartbeat, sent_at=st.floats(), budgets=budgets),
    ),
    st.builds(
        node_pb2.NodeMessage,
        task_failed=st.builds(
            node_pb2.TaskFailed,
            job_id=job_ids,
            error=st.builds(
                common_pb2.Error,
                code=st.one_of(st.sampled_from(sorted(STATUS_BY_CODE)), st.text(max_size=10)),
                message=st.text(max_size=30),
            ),
        ),
    ),
    st.builds(
        node_pb2.NodeMessage,
        task_status=st.builds(
            node_pb2.TaskStatus,
            job_id=job_ids,
            state=st.sampled_from(["awaiting_approval", "approved", "", "nope"]),
            request_id=st.text(max_size=10),
            expires_at=st.floats(),
        ),
    ),
    st.builds(node_pb2.NodeMessage, secagg=secagg_messages),
    st.builds(
        node_pb2.NodeMessage,
        audit_receipt=st.builds(node_pb2.AuditReceipt, entry=st.binary(max_size=200)),
    ),
    st.builds(
        node_pb2.NodeMessage,
        encrypted_share=st.builds(
            node_pb2.EncryptedShare,
            job_id=job_ids,
            offset=u64,
            total_length=u64,
            data=st.binary(max_size=64),
        ),
    ),
)
"""Every message a registered node may send (and some it may not), with nonsense."""
endings = st.sampled_from(["half_close", "cancel", "probe"])


def _serialized(messages: list[node_pb2.NodeMessage]) -> list[bytes]:
    return [m.SerializeToString() for m in messages]


def test_fuzzed_first_messages_get_a_clear_status(
    fed3: fed.Client, channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    @settings(FUZZ, max_examples=120)
    @given(
        first=st.one_of(
            st.builds(node_pb2.NodeMessage, register=registers),
            st.builds(
                node_pb2.NodeMessage,
                register=st.builds(
                    node_pb2.Register,
                    node_name=st.just("fuzz-node"),
                    protocol_version=st.just(1),
                    datasets=st.lists(schemas, max_size=3),
                ),
            ),
            stream_messages,
        ),
        ending=endings,
    )
    def fuzz(first: node_pb2.NodeMessage, ending: str) -> None:
        outcome = _connect(channel, [first.SerializeToString()], ending)
        if ending != "cancel":
            assert_clear(outcome)
        if ending == "probe":
            assert outcome.status is not _S.OK, "a second registration was accepted"

    fuzz()
    assert_still_serves(fed3, channel)
    assert_no_unexpected_errors(caplog)


def test_fuzzed_messages_on_registered_streams_get_a_clear_status(
    fed3: fed.Client, channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    registered = [
        node_pb2.NodeMessage(register=VALID_REGISTER),
        node_pb2.NodeMessage(
            register=node_pb2.Register(
                node_name="fuzz-t", protocol_version=1, datasets=[schema_to_proto(SCHEMA)]
            )
        ),
    ]

    @settings(FUZZ, max_examples=150)
    @given(
        first=st.sampled_from(registered),
        rest=st.lists(stream_messages, min_size=1, max_size=6),
        ending=endings,
    )
    def fuzz(first: node_pb2.NodeMessage, rest: list[node_pb2.NodeMessage], ending: str) -> None:
        outcome = _connect(channel, _serialized([first, *rest]), ending)
        if ending != "cancel":
            assert_clear(outcome)
        if ending == "probe":
            assert outcome.status is not _S.OK, "a second registration was accepted"

    fuzz()
    assert_still_serves(fed3, channel)
    assert_no_unexpected_errors(caplog)


def test_random_bytes_on_node_streams_get_a_clear_status(
    fed3: fed.Client, channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    @settings(FUZZ, max_examples=80)
    @given(
        registered=st.booleans(),
        bodies=st.lists(st.binary(max_size=120), max_size=4),
        ending=endings,
    )
    def fuzz(registered: bool, bodies: list[bytes], ending: str) -> None:
        if registered:
            bodies = [node_pb2.NodeMessage(register=VALID_REGISTER).SerializeToString(), *bodies]
        outcome = _connect(channel, bodies, ending)
        if ending != "cancel":
            assert_clear(outcome)

    fuzz()
    assert_still_serves(fed3, channel)
    assert_no_unexpected_errors(caplog)


def test_node_streams_dropped_before_registering_are_no_errors(
    fed3: fed.Client, channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: a node gone before its first message was logged as an unexpected
    # error (with a traceback) and answered with INTERNAL.
    for _ in range(20):
        outcome = _connect(channel, [], "cancel")
        assert outcome.status is _S.CANCELLED
    assert_still_serves(fed3, channel)
    assert_no_unexpected_errors(caplog)


def test_duplicate_node_names_replace_the_older_stream(
    fed3: fed.Client, channel: grpc.Channel
) -> None:
    register = node_pb2.NodeMessage(register=VALID_REGISTER).SerializeToString()
    results: list[Outcome] = []
    older = threading.Thread(target=lambda: results.append(_connect(channel, [register], "hold")))
    older.start()
    deadline = time.monotonic() + 10
    while "fuzz-node" not in _online(fed3):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    newer = _connect(channel, [register], "half_close")
    older.join(CALL_TIMEOUT)
    assert_clear(newer)
    assert newer.responses == 1  # Registered
    [outcome] = results
    assert_clear(outcome)
    assert_still_serves(fed3, channel)


def test_messages_over_the_size_limit_end_the_node_stream(
    fed3: fed.Client, channel: grpc.Channel
) -> None:
    register = node_pb2.NodeMessage(register=VALID_REGISTER).SerializeToString()
    huge = node_pb2.NodeMessage(
        secagg=node_pb2.SecAggNodeMessage(
            job_id="j",
            masked_input=node_pb2.VectorChunk(
                offset=0, total_length=2**20, data=b"\0" * (MAX_MESSAGE_BYTES + 8)
            ),
        )
    ).SerializeToString()
    outcome = _connect(channel, [register, huge], "probe")
    assert outcome.status is _S.RESOURCE_EXHAUSTED
    assert_still_serves(fed3, channel)


@pytest.mark.parametrize(
    "chunk",
    [
        MaskedInputChunk("j", 0, MAX_VECTOR_LENGTH, b"\0" * 8),
        EncryptedShareChunk("j", 0, MAX_SHARE_BYTES, b"\0"),
    ],
    ids=["vector", "share"],
)
def test_an_announced_length_costs_no_memory_until_the_data_arrives(
    chunk: MaskedInputChunk | EncryptedShareChunk,
) -> None:
    # Regression: the coordinator allocated (and zeroed) the whole announced vector
    # or share on its first chunk: a few tiny messages, with distinct job ids, from any
    # registered stream, took gigabytes.
    reassembler = ChunkReassembler()
    tracemalloc.start()
    try:
        for i in range(4):
            chunk.job_id = f"job-{i}"
            assert reassembler.feed(chunk) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_many_announced_vectors_on_one_stream_leave_the_coordinator_serving(
    fed3: fed.Client, channel: grpc.Channel
) -> None:
    register = node_pb2.NodeMessage(register=VALID_REGISTER).SerializeToString()
    chunks = [
        node_pb2.NodeMessage(
            secagg=node_pb2.SecAggNodeMessage(
                job_id=f"job-{i}",
                masked_input=node_pb2.VectorChunk(
                    offset=0, total_length=MAX_VECTOR_LENGTH, data=b"\0" * 8
                ),
            )
        ).SerializeToString()
        for i in range(64)
    ]
    outcome = _connect(channel, [register, *chunks], "half_close")
    assert (outcome.status, outcome.responses) == (_S.OK, 1)
    assert_still_serves(fed3, channel)


# --- bugs found outside the transport (fixed) ---------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM t WHERE " + " AND ".join(["x > 1"] * 600),
        "SELECT COUNT(*) FROM t WHERE " + "(" * 3000 + "x > 1" + ")" * 3000,
    ],
    ids=["long-and-chain", "deep-parentheses"],
)
def test_long_or_deeply_nested_where_clauses_are_refused_clearly(
    channel: grpc.Channel, sql: str
) -> None:
    body = analyst_pb2.SubmitQueryRequest(sql=sql).SerializeToString()
    outcome = _server_stream(channel, "SubmitQuery", body)
    assert_clear(outcome)


def test_a_dp_request_whose_rho_underflows_is_refused_before_the_nodes(
    channel: grpc.Channel,
) -> None:
    request = analyst_pb2.SubmitQueryRequest(
        sql="SELECT COUNT(*) FROM t", dp=common_pb2.DPParams(epsilon=1e-300, delta=0.5)
    )
    outcome = _server_stream(channel, "SubmitQuery", request.SerializeToString())
    assert (outcome.status, outcome.code) == (_S.INVALID_ARGUMENT, "invalid_config")
