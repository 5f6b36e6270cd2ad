"""The stored form of one worker's assignments, `/functions/assignments/<worker id>`:

    {"functions": {"<tenant>/<ns>/<name>": {"version": <record node version>, "instances": [0, 2]}}}

Decoding never trusts the node: one that is not this shape raises AssignmentError (the caller
logs it and keeps what it runs); an entry that is bad on its own is dropped and named."""

from __future__ import annotations

import json
from typing import Any

from taureau.functions.cluster.scheduler import Assigned

MAX_INSTANCE_ID = 1_000_000


class AssignmentError(ValueError):
    """An assignment node that cannot be read."""


def encode(functions: dict[str, Assigned]) -> bytes:
    return json.dumps({"functions": {
        fqfn: {"version": a.version, "instances": list(a.instances)} for fqfn, a in sorted(functions.items())
    }}, sort_keys=True).encode()


def decode(data: bytes) -> tuple[dict[str, Assigned], list[str]]:
    """(the assignments, one reason per entry dropped)."""
    try:
        raw: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AssignmentError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("functions"), dict):
        raise AssignmentError("not an object with a 'functions' object")
    out: dict[str, Assigned] = {}
    dropped: list[str] = []
    for fqfn, entry in raw["functions"].items():
        reason = _check(fqfn, entry)
        if reason is not None:
            dropped.append(f"{fqfn!r}: {reason}")
            continue
        out[fqfn] = Assigned(entry["version"], tuple(sorted(set(entry["instances"]))))
    return out, dropped


def _check(fqfn: str, entry: Any) -> str | None:
    parts = fqfn.split("/")
    if len(parts) != 3 or not all(parts):
        return "not tenant/namespace/name"
    if not isinstance(entry, dict):
        return "not an object"
    version, instances = entry.get("version"), entry.get("instances")
    if type(version) is not int or version < 0:
        return "version is not a non-negative integer"
    if not isinstance(instances, list) or not all(
        type(i) is int and 0 <= i <= MAX_INSTANCE_ID for i in instances
    ):
        return "instances is not a list of instance ids"
    return None
