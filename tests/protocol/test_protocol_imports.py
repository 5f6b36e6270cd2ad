import ast
import subprocess
import sys
from pathlib import Path

import taureau.protocol

FORBIDDEN_MODULES = {"asyncio", "socket", "time", "selectors", "threading", "ssl"}
PACKAGE_DIR = Path(taureau.protocol.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_protocol_sources_import_no_io_clock_or_upper_layers():
    for path in PACKAGE_DIR.glob("*.py"):
        if path.name.endswith("_pb2.py"):
            continue
        for name in _imports(path):
            root = name.split(".")[0]
            assert root not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
            if root == "taureau":
                assert name.startswith(("taureau.common", "taureau.protocol")), f"{path.name} imports {name}"


def test_importing_the_codec_loads_no_event_loop_or_other_layer():
    # `socket` itself is not checked at run time: the crc32c package's __init__ pulls in
    # importlib.metadata -> email -> socket. Our own sources are held to no-socket by the AST test.
    code = (
        "import sys, taureau.protocol\n"
        "bad = [m for m in sys.modules if m == 'asyncio' or m.startswith(('taureau.broker', 'taureau.net', "
        "'taureau.storage', 'taureau.metadata', 'taureau.state', 'taureau.functions'))]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
