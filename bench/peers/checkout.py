"""Another checkout's module, loaded beside this one's: the peer of an A/B benchmark run."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def load_module(path: str, name: str) -> ModuleType:
    """Load the Python file at `path` as module `name` (which must not clash with this
    checkout's own modules, e.g. "peer_journal")."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while a class is built
    spec.loader.exec_module(module)
    return module
