"""Imports point down the layer list of DESIGN.md, and the protocol codec stays sans-IO."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "taureau"

# Higher ranks may import lower ranks (and themselves), never the other way round.
RANK = {
    "common": 0,
    "auth": 0,
    "metadata": 1,
    "storage": 2,
    "protocol": 3,
    "net": 4,
    "broker": 5,
    "state": 6,
    "functions": 7,
    "sketches": 7.5,  # sketch functions run on the functions worker
    "analytics": 7.5,  # tasks run on warm workers with data in state
    "testing": 8,
    "web": 9,
    "node": 10,
    "standalone": 11,
    "functions_worker": 11,
    "cli": 12,
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "taureau" or len(parts) < 2:
        return None
    return parts[1]


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def source_files():
    for path in sorted(SRC.rglob("*.py")):
        if path.name.endswith("_pb2.py"):
            continue
        rel = path.relative_to(SRC)
        layer = rel.parts[0].removesuffix(".py")
        if layer in RANK:
            yield layer, path


@pytest.mark.parametrize("layer,path", list(source_files()), ids=lambda v: str(v).split("taureau/")[-1])
def test_imports_point_down(layer, path):
    for module in imports(path):
        target = layer_of(module)
        if target is None or target not in RANK:
            continue
        assert RANK[target] <= RANK[layer], f"{path.relative_to(SRC)} ({layer}) imports {module} ({target})"


def test_protocol_imports_no_io():
    forbidden = {"asyncio", "socket", "selectors", "time"}
    for path in (SRC / "protocol").rglob("*.py"):
        if path.name.endswith("_pb2.py"):
            continue
        for module in imports(path):
            assert module.split(".")[0] not in forbidden, f"{path.name} imports {module}"
