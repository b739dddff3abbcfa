"""Node configs: valid files load, invalid ones fail at load time with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.errors import ConfigError
from federation.schema import ColumnType
from nodes.config import SourceFormat, load_node_config

ROOT = Path(__file__).resolve().parents[3]

GOOD = """
[node]
name = "n1"
coordinator = "127.0.0.1:1"
credentials = "pki/issued/node/n1"

[[dataset]]
name = "t"
source = "data.parquet"

[[dataset.column]]
name = "x"
type = "double"
bounds = [0, 1]

[[dataset.column]]
name = "g"
type = "categorical"
domain = ["a", "b"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_example_configs_load() -> None:
    for path in sorted((ROOT / "examples" / "nodes").glob("*.toml")):
        config = load_node_config(path)
        [dataset] = config.datasets
        assert dataset.source.exists()
        assert dataset.format is SourceFormat.CSV
        assert dataset.schema.column("sex").domain == ("F", "M")


def test_relative_sources_resolve_against_the_config(tmp_path: Path) -> None:
    config = load_node_config(_write(tmp_path, GOOD))
    [d] = config.datasets
    assert d.source == tmp_path.resolve() / "data.parquet"
    assert d.format is SourceFormat.PARQUET
    assert d.schema.column("x").type is ColumnType.DOUBLE


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[node", "not valid TOML"),
        ("", r"\[node\] table"),
        (GOOD.replace('name = "n1"', "name = 3"), "'name' must be a str"),
        (GOOD.replace('"data.parquet"', '"data.xlsx"'), "cannot tell the format"),
        (GOOD.replace('type = "double"', 'type = "float"'), "type must be one of"),
        (GOOD.replace('domain = ["a", "b"]', ""), "needs a declared domain"),
        (GOOD.replace("bounds = [0, 1]", "bounds = [1, 0]"), "lower <= upper"),
        (
            GOOD + '\n[[dataset]]\nname = "t"\nsource = "x.csv"\n[[dataset.column]]\n'
            'name = "a"\ntype = "integer"\n',
            "declared twice",
        ),
        (GOOD.replace('source = "data.parquet"', 'source = "d.duckdb"'), "needs table"),
        (GOOD.replace("[node]", "[node]\ncolour = 1"), "unknown key"),
        (GOOD.replace('credentials = "pki/issued/node/n1"', ""), "set credentials"),
        (GOOD.replace("[node]", "[node]\ninsecure = true"), "not both"),
        (GOOD.replace("[node]", '[node]\ninsecure = "yes"'), "insecure must be true or false"),
        (
            GOOD.replace('source = "data.parquet"', 'source = "data.parquet"\nin_memory = "no"'),
            "in_memory must be true or false",
        ),
    ],
)
def test_invalid_configs_fail_at_load(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_node_config(_write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_node_config(tmp_path / "absent.toml")


def test_configs_roundtrip_through_toml(tmp_path: Path) -> None:
    from nodes.config import node_config_to_toml

    for path in sorted((ROOT / "examples" / "nodes").glob("*.toml")):
        config = load_node_config(path)
        again = _write(tmp_path, node_config_to_toml(config))
        assert load_node_config(again) == config
    streamed = _write(
        tmp_path,
        GOOD.replace('source = "data.parquet"', 'source = "data.parquet"\nin_memory = false'),
    )
    config = load_node_config(streamed)
    assert not config.datasets[0].in_memory
    assert load_node_config(_write(tmp_path, node_config_to_toml(config))) == config
