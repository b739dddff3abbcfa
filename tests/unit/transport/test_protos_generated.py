"""The committed generated protobuf code is exactly what protos/ generates."""

from __future__ import annotations

import filecmp
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools is a dev dependency"
)
def test_regenerating_protos_gives_no_diff(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    committed = ROOT / "federation" / "v1"
    generated = tmp_path / "federation" / "v1"
    names = sorted(p.name for p in generated.iterdir())
    assert names == sorted(p.name for p in committed.iterdir() if p.name != "__pycache__")
    cmp = filecmp.dircmp(committed, generated, ignore=["__pycache__"])
    differing = [n for n in names if not filecmp.cmp(committed / n, generated / n, shallow=False)]
    assert not differing, (
        f"generated code is stale: {differing}; run `python scripts/gen_protos.py` and commit"
    )
    assert not cmp.left_only
    assert not cmp.right_only
