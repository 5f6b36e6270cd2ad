"""Who may import whom: a per-package allow-list, and the protocol codec stays sans-IO.

Each package of src/taureau lists the packages it may import. The lists are exactly what each
package imports today, so a new dependency is a decision made here, in review: sibling
packages (functions, state, and later sketches or analytics) cannot import each other by
accident, and a new package fails test_every_package_has_an_allow_list until it declares its
own. The lists must also point down the layer order of DESIGN.md (RANK), so no cycle can form.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "taureau"

# The layer order: a package may only ever be allowed packages of a lower rank.
RANK = {
    "common": 0,
    "auth": 0.5,  # tokens and passwords: above common, below everything that authenticates
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
    "dashboard": 8.5,  # the web page and its live stream, above what it shows
    "web": 9,
    "node": 10,
    "standalone": 11,
    "functions_worker": 11,
    "bookie_server": 11,
    "devcluster": 11,  # `taureau cluster up`: a private ZooKeeper and child processes
    "cli": 12,
}

# package -> the other taureau packages it may import.
ALLOWED = {
    "common": set(),
    "auth": {"common"},
    "metadata": {"common"},
    "storage": {"common", "metadata"},
    "protocol": {"common"},
    "net": {"common"},  # the loop probe's histograms (common.histogram)
    "broker": {"auth", "common", "metadata", "storage", "protocol", "net"},
    "state": {"auth", "common", "metadata"},
    "functions": {"common", "metadata", "storage", "state"},
    "sketches": {"common", "functions"},
    "analytics": {"common", "state"},
    "testing": {"common", "storage"},
    "dashboard": {"broker", "common", "functions"},
    "web": {"net"},
    "node": {"common", "metadata", "storage"},
    "standalone": {"broker", "dashboard", "functions", "net", "node", "sketches", "state", "web"},
    "functions_worker": {"auth", "broker", "common", "functions", "net", "node", "storage", "web"},
    "bookie_server": {"metadata", "net", "node", "storage"},
    "devcluster": {"testing"},
    "cli": {"auth", "bookie_server", "broker", "common", "devcluster", "functions", "functions_worker", "metadata",
            "net", "sketches", "standalone", "state"},
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
        yield layer, path


def packages() -> set[str]:
    return {
        p.name.removesuffix(".py")
        for p in SRC.iterdir()
        if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())
    }


def test_every_package_has_an_allow_list():
    assert packages() == set(ALLOWED), f"declare these in ALLOWED: {sorted(packages() ^ set(ALLOWED))}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_allow_lists_point_down(layer):
    for target in ALLOWED[layer]:
        assert RANK[target] < RANK[layer], f"{layer} may import {target}, which is not below it"


@pytest.mark.parametrize("layer,path", list(source_files()), ids=lambda v: str(v).split("taureau/")[-1])
def test_imports_are_allowed(layer, path):
    for module in imports(path):
        target = layer_of(module)
        if target is None or target == layer:
            continue
        assert target in ALLOWED.get(layer, set()), (
            f"{path.relative_to(SRC)} ({layer}) imports {module}: {target} is not in ALLOWED[{layer!r}]"
        )


def test_protocol_imports_no_io():
    forbidden = {"asyncio", "socket", "selectors", "time"}
    for path in (SRC / "protocol").rglob("*.py"):
        if path.name.endswith("_pb2.py"):
            continue
        for module in imports(path):
            assert module.split(".")[0] not in forbidden, f"{path.name} imports {module}"
