"""What the state controller counts, and how its numbers read as Prometheus text."""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import asdict, dataclass
from typing import Any

from taureau.state.allocator import Allocator, ServerState
from taureau.state.namespace import Namespace

# Counters are totals since the controller started (a restart starts them again, as
# Prometheus counters may); gauges are read from the allocator and namespace at scrape time.


@dataclass
class Counters:
    splits: int = 0
    merges: int = 0
    appends: int = 0  # queue segments added
    drains: int = 0  # queue segments dropped once empty
    lease_expiries: int = 0  # structures reclaimed or flushed because nobody renewed them
    flushes: int = 0  # mapped structures written to their backing path on expiry
    servers_lost: int = 0
    repairs: int = 0  # replica chains mended after a memory server died
    quota_refusals: int = 0  # allocations refused because a directory was at its block quota


def namespace_blocks(ns: Namespace) -> dict[str, int]:
    """Blocks held under each top-level directory ("/jobs", "/functions"...)."""
    out: Tally[str] = Tally()
    for node in ns.by_id.values():
        top = "/" + node.path.split("/", 2)[1]
        out[top] += sum(len(p.chain) for p in node.partitions)
    return dict(out)


def stats(alloc: Allocator, ns: Namespace, counters: Counters) -> dict[str, Any]:
    """The pool, every memory server with its measured memory, namespaces and counters."""
    st = alloc.stats()
    st["memory_servers"] = [
        {
            "address": s.address,
            "state": s.state.value,
            "block_size": s.block_size,
            "blocks": s.num_blocks,
            "used": s.used,
            "free": s.free,
            "used_bytes": s.used_bytes,
            "budget_bytes": s.budget_bytes,
        }
        for s in alloc.servers.values()
        if s.state is not ServerState.DEAD
    ]
    st["structures"] = len(ns.by_id)
    st["namespaces"] = namespace_blocks(ns)
    st["counters"] = asdict(counters)
    return st


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_lines(st: dict[str, Any], quotas: dict[str, dict[str, int]]) -> list[str]:
    """`st` from stats(); `quotas` maps a directory to its {"blocks", "used"}."""
    lines: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    servers = [(f'{{server="{_esc(s["address"])}"}}', s) for s in st["memory_servers"]]
    family("taureau_state_server_blocks", "gauge", "Blocks in a memory server's pool",
           [(lb, s["blocks"]) for lb, s in servers])  # fmt: skip
    family("taureau_state_server_blocks_used", "gauge", "Blocks handed out on a memory server",
           [(lb, s["used"]) for lb, s in servers])  # fmt: skip
    family("taureau_state_server_blocks_free", "gauge", "Blocks a memory server can still hand out",
           [(lb, s["free"]) for lb, s in servers])  # fmt: skip
    family("taureau_state_server_memory_used_bytes", "gauge", "Memory the blocks' data takes (measured)",
           [(lb, s["used_bytes"]) for lb, s in servers])  # fmt: skip
    family("taureau_state_server_memory_budget_bytes", "gauge", "Memory the blocks' data may take",
           [(lb, s["budget_bytes"]) for lb, s in servers])  # fmt: skip
    family("taureau_state_namespace_blocks_used", "gauge", "Blocks held under a top-level directory",
           [(f'{{namespace="{_esc(n)}"}}', v) for n, v in sorted(st["namespaces"].items())])  # fmt: skip
    family("taureau_state_quota_blocks", "gauge", "A directory's block quota",
           [(f'{{namespace="{_esc(n)}"}}', q["blocks"]) for n, q in sorted(quotas.items())])  # fmt: skip
    family("taureau_state_quota_blocks_used", "gauge", "Blocks held under a directory with a quota",
           [(f'{{namespace="{_esc(n)}"}}', q["used"]) for n, q in sorted(quotas.items())])  # fmt: skip
    family("taureau_state_quota_blocks_free", "gauge", "Blocks a directory with a quota may still take",
           [(f'{{namespace="{_esc(n)}"}}', max(0, q["blocks"] - q["used"])) for n, q in sorted(quotas.items())])  # fmt: skip
    family("taureau_state_structures", "gauge", "Structures in the namespace", [("", st["structures"])])
    for name, value in st["counters"].items():
        family(f"taureau_state_{name}_total", "counter", f"State {name.replace('_', ' ')} since start",
               [("", value)])  # fmt: skip
    return lines
