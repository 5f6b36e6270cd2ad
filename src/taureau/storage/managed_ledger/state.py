"""The managed ledger's state enum and its legal transitions (see ledger.py's theory of operation)."""

from __future__ import annotations

import time
from enum import Enum


class MLState(Enum):
    INITIALIZING = "initializing"
    OPEN = "open"
    ROLLING = "rolling"
    FENCED = "fenced"
    CLOSED = "closed"
    DELETED = "deleted"


_ALLOWED = {
    MLState.INITIALIZING: {MLState.OPEN, MLState.FENCED, MLState.CLOSED},
    MLState.OPEN: {MLState.ROLLING, MLState.FENCED, MLState.CLOSED, MLState.DELETED},
    MLState.ROLLING: {MLState.OPEN, MLState.FENCED, MLState.CLOSED, MLState.DELETED},
    MLState.FENCED: {MLState.CLOSED, MLState.DELETED},
    MLState.CLOSED: {MLState.DELETED},
    MLState.DELETED: set(),
}


def _now_ms() -> int:
    return int(time.time() * 1000)
