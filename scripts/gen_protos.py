"""Generate the Python protobuf/gRPC code for protos/ into federation/v1/.

Usage: python scripts/gen_protos.py [--out DIR]

The output is committed; tests/unit/transport/test_protos_generated.py regenerates
it into a temporary directory and fails if anything differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
INIT = '"""Generated protobuf code for the federation.v1 wire contract. Do not edit."""\n'


def generate(out: Path) -> None:
    """Run protoc on every .proto under protos/ writing into ``out``."""
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out / "federation" / "v1" / "__init__.py").write_text(INIT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    sys.exit(main())
