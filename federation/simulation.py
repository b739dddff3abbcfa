"""Simulate a whole federation on one machine, really talking gRPC on loopback.

``simulate`` writes each partition to its own Parquet file, starts a
coordinator (SQLite state in a temporary directory) and one node agent per
partition, waits until every node has registered, and yields a connected
:class:`~federation.sdk.client.Client`. Faults can be injected: ``dropout``
kills chosen nodes at chosen protocol stages.

>>> import pandas as pd, federation as fed                       # doctest: +SKIP
>>> parts = [pd.DataFrame({"x": [1.0, 2.0]}), pd.DataFrame({"x": [3.0]})]
>>> with fed.simulate({"t": parts}) as client:                  # doctest: +SKIP
...     client.query("SELECT COUNT(*), AVG(x) FROM t").rows
[(3, 2.0)]
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from federation.errors import ConfigError, CoordinatorUnavailableError
from federation.pki import Role, init_ca, issue
from federation.policy import DEFAULT_POLICY, Policy
from federation.schema import Column, ColumnType, DatasetSchema
from federation.sdk.client import Client
from federation.transport.security import TransportSecurity

if TYPE_CHECKING:
    import pandas as pd

    from coordinator.service import Coordinator
    from nodes.config import NodeConfig
    from nodes.task import DropoutStage

__all__ = ["MAX_INFERRED_DOMAIN", "LocalPKI", "infer_schema", "simulate"]

MAX_INFERRED_DOMAIN = 1000
"""A text column with at most this many distinct values is inferred as categorical."""


def infer_schema(name: str, partitions: Sequence[pd.DataFrame]) -> DatasetSchema:
    """Infer a schema from all partitions (the simulator sees every partition).

    Integers -> integer, floats -> double, booleans and text with few distinct
    values -> categorical (domain: the sorted distinct values), other text -> text.
    """
    import pandas as pd

    if not partitions:
        raise ConfigError(f"dataset {name!r} has no partitions")
    columns: list[Column] = []
    for col in partitions[0].columns:
        series = [p[col] for p in partitions if col in p.columns]
        if len(series) != len(partitions):
            raise ConfigError(f"dataset {name!r}: column {col!r} is missing from some partitions")
        dtype = series[0].dtype
        if pd.api.types.is_bool_dtype(dtype):
            columns.append(Column(str(col), ColumnType.CATEGORICAL, domain=("false", "true")))
        elif pd.api.types.is_integer_dtype(dtype):
            columns.append(Column(str(col), ColumnType.INTEGER))
        elif pd.api.types.is_float_dtype(dtype):
            columns.append(Column(str(col), ColumnType.DOUBLE))
        else:
            values = sorted({str(v) for s in series for v in s.dropna().unique()})
            if len(values) <= MAX_INFERRED_DOMAIN and values:
                columns.append(Column(str(col), ColumnType.CATEGORICAL, domain=tuple(values)))
            else:
                columns.append(Column(str(col), ColumnType.TEXT))
    return DatasetSchema(name, tuple(columns))


def _write_partition(frame: pd.DataFrame, schema: DatasetSchema, path: Path) -> None:
    import duckdb

    out = frame.copy()
    for c in schema.columns:
        if c.type is ColumnType.CATEGORICAL and out[c.name].dtype == bool:
            out[c.name] = out[c.name].map({True: "true", False: "false"})
    con = duckdb.connect()
    try:
        con.register("partition", out)
        con.execute(f"COPY partition TO '{path.as_posix()}' (FORMAT parquet)")
    finally:
        con.close()


@contextlib.contextmanager
def simulate(
    datasets: Mapping[str, Sequence[pd.DataFrame]],
    *,
    dropout: Mapping[int, str] | None = None,
    schemas: Mapping[str, DatasetSchema] | None = None,
    policies: Mapping[str, Policy | Sequence[Policy]] | None = None,
    round_timeout: float = 30.0,
    min_nodes: int = 3,
    dropout_tolerance: float = 0.4,
    workdir: str | Path | None = None,
    startup_timeout: float = 60.0,
    isolation: str = "thread",
    insecure: bool = False,
    analyst: str = "analyst",
) -> Iterator[Client]:
    """Run a local federation and yield a connected client.

    Args:
        datasets: Dataset name -> partitions; partition ``i`` lives on node ``i``
            (named ``node-i``), so a federation has as many nodes as the longest list.
        dropout: Node index -> stage at which that node dies during its first task:
            ``"before_keys"``, ``"after_keys"``, ``"after_shares"`` or ``"after_upload"``.
        schemas: Explicit schemas by dataset name (inferred from the data otherwise).
        policies: Dataset name -> its :class:`~federation.policy.Policy` on every node,
            or one policy per partition (node ``i`` gets the ``i``-th). A dataset not
            named gets :data:`~federation.policy.DEFAULT_POLICY`, as in a deployment.
        round_timeout: Seconds a protocol round waits for silent nodes.
        min_nodes: Fewest nodes whose data a released result may combine.
        dropout_tolerance: Fraction of each node's neighbourhood that may drop out
            during a job (at most 0.45).
        workdir: Where partitions and the coordinator database go (a temporary
            directory, removed afterwards, by default).
        startup_timeout: Seconds to wait for every node to register.
        isolation: ``"thread"`` runs every node agent in this process (fast to start,
            the default); ``"process"`` runs each as its own ``federation node serve``
            process with its own config file, as in a deployment (slower to start, and
            nodes no longer share this process's interpreter lock).
        insecure: Plaintext gRPC instead of mutual TLS. By default the simulation
            makes its own PKI in ``workdir/pki`` (``federation pki init`` and ``issue``:
            a CA, the coordinator, every node, and the analyst) and every channel is
            mutual TLS, as in a deployment; issue more identities there with
            ``federation pki issue ... --dir WORKDIR/pki``.
        analyst: The name on the yielded client's certificate (whose DP budget pays).

    The yielded client has ``client.address``: point the CLI at it with
    ``federation query --coordinator ADDRESS``.
    """
    from coordinator.jobs import JobSettings
    from coordinator.service import Coordinator, CoordinatorSettings
    from nodes.config import DatasetConfig, NodeConfig, SourceFormat
    from nodes.task import DropoutStage

    stages = {}
    for index, stage in (dropout or {}).items():
        try:
            stages[index] = DropoutStage(stage)
        except ValueError:
            raise ConfigError(
                f"dropout stage {stage!r} for node {index} is not one of "
                f"{[s.value for s in DropoutStage]}"
            ) from None
    node_count = max((len(parts) for parts in datasets.values()), default=0)
    if node_count == 0:
        raise ConfigError("simulate() needs at least one dataset with at least one partition")
    unknown = sorted(i for i in stages if not 0 <= i < node_count)
    if unknown:
        raise ConfigError(f"dropout names node(s) {unknown}; nodes are 0..{node_count - 1}")

    with contextlib.ExitStack() as stack:
        root = (
            Path(workdir)
            if workdir
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="federation-sim-")))
        )
        all_schemas = {
            name: (schemas or {}).get(name) or infer_schema(name, parts)
            for name, parts in datasets.items()
        }
        node_policies = _node_policies(policies or {}, datasets, all_schemas)
        configs = []
        for i in range(node_count):
            node_dir = root / f"node-{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            served: list[DatasetConfig] = []
            for name, parts in datasets.items():
                if i < len(parts):
                    path = node_dir / f"{name}.parquet"
                    _write_partition(parts[i], all_schemas[name], path)
                    served.append(
                        DatasetConfig(
                            all_schemas[name],
                            path,
                            SourceFormat.PARQUET,
                            policy=node_policies[name][i],
                        )
                    )
            configs.append((f"node-{i}", served))

        identities = LocalPKI(root / "pki", insecure)
        coordinator = Coordinator(
            CoordinatorSettings(
                database=root / "coordinator.db",
                heartbeat_interval=1.0,
                jobs=JobSettings(
                    round_timeout=round_timeout,
                    min_nodes=min_nodes,
                    dropout_tolerance=dropout_tolerance,
                ),
            )
        )
        stack.callback(coordinator.close)
        server = coordinator.serve("127.0.0.1", 0, security=identities.coordinator())
        node_configs = [
            NodeConfig(
                name=name,
                coordinator=server.address,
                datasets=tuple(served),
                state_dir=root / name / "state",
                credentials=identities.path(Role.NODE, name),
                insecure=insecure,
            )
            for name, served in configs
        ]
        if isolation == "process":
            _start_processes(stack, root, node_configs, stages)
        elif isolation == "thread":
            _start_threads(stack, node_configs, stages)
        else:
            raise ConfigError(f"isolation must be 'thread' or 'process', got {isolation!r}")
        _wait_until_online(coordinator, [c.name for c in node_configs], startup_timeout)
        client = Client(server.address, security=identities.client(analyst))
        stack.callback(client.close)
        yield client


class LocalPKI:
    """A local federation's own CA and identities, issued on first use (nothing, when
    plaintext): what `federation pki init` and `issue` would make, for simulations and
    the demo."""

    FEDERATION = "simulation"

    def __init__(self, directory: Path, insecure: bool) -> None:
        self.directory = directory
        self.insecure = insecure
        if not insecure and not (directory / "ca.crt").exists():
            init_ca(directory, self.FEDERATION, valid_days=30)

    def path(self, role: Role, name: str) -> Path | None:
        """The issued directory of ``name`` in ``role`` (issued on first use)."""
        if self.insecure:
            return None
        where = self.directory / "issued" / role.value / name
        if not (where / f"{name}.key").exists():
            hosts = ("localhost", "127.0.0.1") if role is Role.COORDINATOR else ()
            issue(self.directory, role, name, hosts=hosts, valid_days=29)
        return where

    def coordinator(self) -> TransportSecurity:
        """The coordinator's security (with the CA's revocation list)."""
        where = self.path(Role.COORDINATOR, "localhost")
        if where is None:
            return TransportSecurity.insecure("the simulated coordinator")
        return TransportSecurity.mutual_tls(where, crl=self.directory / "crl.pem")

    def client(self, analyst: str) -> TransportSecurity:
        """An analyst client's security."""
        where = self.path(Role.ANALYST, analyst)
        if where is None:
            return TransportSecurity.insecure("the simulation's analyst client")
        return TransportSecurity.mutual_tls(where)


def _node_policies(
    policies: Mapping[str, Policy | Sequence[Policy]],
    datasets: Mapping[str, Sequence[pd.DataFrame]],
    schemas: Mapping[str, DatasetSchema],
) -> dict[str, list[Policy]]:
    """Every dataset's policy on each of its nodes, validated against its schema."""
    unknown = sorted(set(policies) - set(datasets))
    if unknown:
        raise ConfigError(f"policies name dataset(s) {unknown} that simulate() was not given")
    out: dict[str, list[Policy]] = {}
    for name, parts in datasets.items():
        given = policies.get(name, DEFAULT_POLICY)
        per_node = [given] * len(parts) if isinstance(given, Policy) else list(given)
        if len(per_node) != len(parts) or not all(isinstance(p, Policy) for p in per_node):
            raise ConfigError(
                f"policies[{name!r}] must be one Policy or one per partition ({len(parts)})"
            )
        for policy in per_node:
            policy.validate_for(schemas[name])
        out[name] = per_node
    return out


def _start_threads(
    stack: contextlib.ExitStack, configs: list[NodeConfig], stages: Mapping[int, DropoutStage]
) -> None:
    from nodes.agent import NodeAgent

    for i, config in enumerate(configs):
        agent = NodeAgent(config, die_at=stages.get(i))
        stack.callback(agent.stop)
        agent.start()


def _start_processes(
    stack: contextlib.ExitStack,
    root: Path,
    configs: list[NodeConfig],
    stages: Mapping[int, DropoutStage],
) -> None:
    from nodes.config import node_config_to_toml

    for i, config in enumerate(configs):
        path = root / f"{config.name}.toml"
        path.write_text(node_config_to_toml(config))
        command = [
            sys.executable,
            "-m",
            "federation.cli.main",
            "node",
            "serve",
            "--config",
            str(path),
        ]
        if i in stages:
            command += ["--fault", stages[i].value]
        log = stack.enter_context((root / f"{config.name}.log").open("wb"))
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        stack.callback(_terminate, process)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_online(coordinator: Coordinator, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    wanted = set(names)
    while True:
        online = {s.name for s in coordinator.directory.online_sessions()}
        if wanted <= online:
            return
        if time.monotonic() > deadline:
            missing = sorted(wanted - online)
            raise CoordinatorUnavailableError(
                f"node(s) {missing} did not register within {timeout:.0f} s"
            )
        time.sleep(0.02)
