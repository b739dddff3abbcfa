"""Node configuration: who the node is, where its coordinator is, what data it serves.

A node config is a TOML file::

    [node]
    name = "hospital-a"
    coordinator = "coordinator.example.org:50051"
    state_dir = "state"              # the node's DP budget ledger (needed for DP queries)
    credentials = "pki/issued/node/hospital-a"   # mutual TLS (federation pki issue node ...)
    # insecure = true                # plaintext instead: local simulations only

    [[dataset]]
    name = "patients"
    source = "data/patients.csv"     # .csv, .parquet, or a DuckDB file (see `table`)
    # table = "patients"             # the table inside a DuckDB database file
    # in_memory = false              # read the source on every query (default: load it
                                     # once into memory, reloaded when the file changes)

    [[dataset.column]]
    name = "age"
    type = "integer"                 # integer | double | categorical | text
    classification = "internal"      # public | internal | confidential | restricted
    bounds = [0, 120]                # optional, numeric columns

    [[dataset.column]]
    name = "sex"
    type = "categorical"
    domain = ["F", "M"]

    [dataset.policy]                 # optional; see federation.policy
    min_cell_size = 5
    min_query_set_size = 10

Relative source paths are resolved against the config file's directory. A dataset
without ``[dataset.policy]`` gets :data:`federation.policy.DEFAULT_POLICY`.
"""

from __future__ import annotations

import enum
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.errors import ConfigError
from federation.policy import DEFAULT_POLICY, ApprovalMode, Policy
from federation.schema import Column, DatasetSchema

__all__ = [
    "DatasetConfig",
    "NodeConfig",
    "SourceFormat",
    "load_node_config",
    "node_config_to_toml",
    "parse_node_config",
]


class SourceFormat(enum.Enum):
    """Where a dataset's rows live."""

    CSV = "csv"
    PARQUET = "parquet"
    DUCKDB = "duckdb"


_SUFFIXES = {
    ".csv": SourceFormat.CSV,
    ".tsv": SourceFormat.CSV,
    ".parquet": SourceFormat.PARQUET,
    ".pq": SourceFormat.PARQUET,
    ".duckdb": SourceFormat.DUCKDB,
    ".db": SourceFormat.DUCKDB,
}


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset a node serves: its published schema and its private source."""

    schema: DatasetSchema
    source: Path
    format: SourceFormat
    table: str | None = None
    policy: Policy = DEFAULT_POLICY
    """What the data holder allows the dataset to be used for (enforced by the node)."""
    in_memory: bool = True
    """Load the validated rows into the node's in-memory DuckDB once (and again whenever
    the source file changes), categorical columns as ENUMs of their declared domains;
    False reads the source on every query (for data larger than the node's memory)."""


@dataclass(frozen=True)
class NodeConfig:
    """A node agent's whole configuration."""

    name: str
    coordinator: str
    datasets: tuple[DatasetConfig, ...]
    duckdb_threads: int = 1
    """DuckDB worker threads for local computation."""
    state_dir: Path | None = None
    """Where the node keeps its state (the DP budget ledger); without one the node
    refuses differentially private queries, whose spends it could not persist."""
    credentials: Path | None = None
    """The node's issued credentials (directory or key file): mutual TLS."""
    insecure: bool = False
    """Plaintext (no credentials): for local simulations only."""
    server_name: str | None = None
    """The name the coordinator's certificate must carry, when it differs from the
    host in ``coordinator``."""


def _require(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: '{key}' must be a {kind.__name__}, got {value!r}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _dataset(raw: Mapping[str, Any], base: Path, index: int) -> DatasetConfig:
    where = f"dataset #{index + 1}"
    _check_keys(
        raw,
        {"name", "source", "format", "table", "description", "column", "policy", "in_memory"},
        where,
    )
    name = _require(raw, "name", str, where)
    where = f"dataset {name!r}"
    source = base / _require(raw, "source", str, where)
    fmt_raw = raw.get("format")
    if fmt_raw is None:
        fmt = _SUFFIXES.get(source.suffix.lower())
        if fmt is None:
            raise ConfigError(
                f"{where}: cannot tell the format of {source.name!r} from its extension; "
                f"set format = one of {[f.value for f in SourceFormat]}"
            )
    else:
        try:
            fmt = SourceFormat(fmt_raw)
        except ValueError:
            raise ConfigError(
                f"{where}: format must be one of {[f.value for f in SourceFormat]}, got {fmt_raw!r}"
            ) from None
    table = raw.get("table")
    if fmt is SourceFormat.DUCKDB and not isinstance(table, str):
        raise ConfigError(f'{where}: a DuckDB source needs table = "<table name>"')
    if fmt is not SourceFormat.DUCKDB and table is not None:
        raise ConfigError(f"{where}: 'table' applies to DuckDB sources only")
    columns_raw = raw.get("column")
    if not isinstance(columns_raw, list) or not columns_raw:
        raise ConfigError(f"{where}: declare its columns with [[dataset.column]] tables")
    schema = DatasetSchema(
        name=name,
        columns=tuple(Column.from_dict(c) for c in columns_raw),
        description=str(raw.get("description", "")),
    )
    policy_raw = raw.get("policy")
    policy = (
        DEFAULT_POLICY
        if policy_raw is None
        else Policy.from_dict(policy_raw, where=f"{where}: [dataset.policy]")
    )
    policy.validate_for(schema)
    in_memory = raw.get("in_memory", True)
    if not isinstance(in_memory, bool):
        raise ConfigError(f"{where}: in_memory must be true or false, got {in_memory!r}")
    return DatasetConfig(
        schema=schema, source=source, format=fmt, table=table, policy=policy, in_memory=in_memory
    )


def parse_node_config(data: Mapping[str, Any], base: Path) -> NodeConfig:
    """Build a NodeConfig from parsed TOML; relative paths resolve against ``base``."""
    _check_keys(data, {"node", "dataset"}, "node config")
    node = data.get("node")
    if not isinstance(node, dict):
        raise ConfigError("node config: a [node] table with name and coordinator is required")
    _check_keys(
        node,
        {
            "name",
            "coordinator",
            "duckdb_threads",
            "state_dir",
            "credentials",
            "insecure",
            "server_name",
        },
        "[node]",
    )
    name = _require(node, "name", str, "[node]")
    coordinator = _require(node, "coordinator", str, "[node]")
    threads = node.get("duckdb_threads", 1)
    if not isinstance(threads, int) or threads < 1:
        raise ConfigError("[node]: duckdb_threads must be a positive integer")
    state_raw = node.get("state_dir")
    if state_raw is not None and not isinstance(state_raw, str):
        raise ConfigError("[node]: state_dir must be a path string")
    state_dir = None if state_raw is None else base / state_raw
    credentials_raw = node.get("credentials")
    insecure = node.get("insecure", False)
    server_name = node.get("server_name")
    if credentials_raw is not None and not isinstance(credentials_raw, str):
        raise ConfigError("[node]: credentials must be a path string")
    if not isinstance(insecure, bool):
        raise ConfigError("[node]: insecure must be true or false")
    if server_name is not None and not isinstance(server_name, str):
        raise ConfigError("[node]: server_name must be a string")
    if (credentials_raw is None) == (not insecure):
        raise ConfigError(
            "[node]: set credentials (the node's certificate and key from `federation pki "
            "issue node NAME`, for mutual TLS), or insecure = true for a local plaintext "
            "simulation; not both"
        )
    credentials = None if credentials_raw is None else base / credentials_raw
    datasets_raw = data.get("dataset", [])
    if not isinstance(datasets_raw, list):
        raise ConfigError("node config: datasets are declared as [[dataset]] tables")
    datasets = tuple(_dataset(d, base, i) for i, d in enumerate(datasets_raw))
    manual = [d.schema.name for d in datasets if d.policy.approval is ApprovalMode.MANUAL]
    if manual and state_dir is None:
        raise ConfigError(
            f"dataset(s) {manual} need manual approval, which keeps its requests in the "
            "node's state directory: set state_dir in [node]"
        )
    names = [d.schema.name for d in datasets]
    if len(set(names)) != len(names):
        raise ConfigError(f"node config: a dataset name is declared twice in {names}")
    return NodeConfig(
        name=name,
        coordinator=coordinator,
        datasets=datasets,
        duckdb_threads=threads,
        state_dir=state_dir,
        credentials=credentials,
        insecure=insecure,
        server_name=server_name,
    )


def load_node_config(path: str | Path) -> NodeConfig:
    """Read and validate a node's TOML config file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"node config {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"node config {str(path)!r} is not valid TOML: {exc}") from None
    return parse_node_config(data, path.resolve().parent)


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def node_config_to_toml(config: NodeConfig) -> str:
    """The TOML text that :func:`load_node_config` reads back as ``config``."""
    lines = [
        "[node]",
        f"name = {_toml_value(config.name)}",
        f"coordinator = {_toml_value(config.coordinator)}",
        f"duckdb_threads = {config.duckdb_threads}",
    ]
    if config.state_dir is not None:
        lines.append(f"state_dir = {_toml_value(str(config.state_dir))}")
    if config.credentials is not None:
        lines.append(f"credentials = {_toml_value(str(config.credentials))}")
    else:
        lines.append("insecure = true")
    if config.server_name is not None:
        lines.append(f"server_name = {_toml_value(config.server_name)}")
    for dataset in config.datasets:
        lines += [
            "",
            "[[dataset]]",
            f"name = {_toml_value(dataset.schema.name)}",
            f"source = {_toml_value(str(dataset.source))}",
            f"format = {_toml_value(dataset.format.value)}",
        ]
        if dataset.table is not None:
            lines.append(f"table = {_toml_value(dataset.table)}")
        if not dataset.in_memory:
            lines.append("in_memory = false")
        if dataset.schema.description:
            lines.append(f"description = {_toml_value(dataset.schema.description)}")
        for column in dataset.schema.columns:
            lines += ["", "[[dataset.column]]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in column.to_dict().items()]
        lines += ["", "[dataset.policy]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in dataset.policy.to_dict().items()]
    return "\n".join(lines) + "\n"
