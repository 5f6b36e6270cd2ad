"""`--cpu` / `--ram` as real limits on an instance process.

Where the worker may write to a cgroup hierarchy (v2, or v1's cpu and memory controllers) it
makes one group per instance under its own: a CFS quota of `cpu` cores and a memory limit of
`ram` bytes, enforced by the kernel (an instance over its memory is OOM-killed and the
supervisor restarts it). Where it may not, the supervisor samples the instance's RSS and kills
it past `ram`; the CPU share is then not enforced, and `status` says so.
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("taureau.functions.limits")

CFS_PERIOD_US = 100_000


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path for `controller` (v1), or for the unified hierarchy ("")."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controller in controllers.split(",") or (controller == "" and controllers == ""):
                    return path
    except OSError:
        return None
    return None


class ResourceLimiter:
    """Makes and removes per-instance cgroups; `mode` says which mechanism is in force."""

    def __init__(self, name: str) -> None:
        self.name = name  # the worker's group, e.g. "taureau-1234"
        self.roots: dict[str, str] = {}  # controller -> the worker's group directory
        self.mode = "rss-watch"
        self._detect()

    def _try_make(self, base: str) -> str | None:
        path = os.path.join(base, self.name)
        try:
            os.makedirs(path, exist_ok=True)
            return path
        except OSError:
            return None

    def _detect(self) -> None:
        unified = "/sys/fs/cgroup/cgroup.controllers"
        if os.path.exists(unified):
            own = _own_cgroup("") or "/"
            base = os.path.join("/sys/fs/cgroup", own.lstrip("/"))
            root = self._try_make(base)
            if root is not None:
                with contextlib.suppress(OSError), open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
                    f.write("+cpu +memory")
                self.roots = {"cpu": root, "memory": root}
                self.mode = "cgroup-v2"
            return
        for controller in ("cpu", "memory"):
            mount = f"/sys/fs/cgroup/{controller}"
            own_path = _own_cgroup(controller)
            if own_path is None or not os.path.isdir(mount):
                continue
            base = os.path.join(mount, own_path.lstrip("/"))
            root = self._try_make(base) if os.path.isdir(base) else self._try_make(mount)
            if root is not None:
                self.roots[controller] = root
        if "memory" in self.roots:
            self.mode = "cgroup-v1" if "cpu" in self.roots else "cgroup-v1-memory"

    @property
    def enforces_cpu(self) -> bool:
        return "cpu" in self.roots

    @property
    def enforces_memory_in_kernel(self) -> bool:
        return "memory" in self.roots

    def apply(self, key: str, pid: int, cpu: float, ram: int) -> list[str]:
        """Put `pid` in a group of its own named `key`; returns the groups to remove later."""
        groups = []
        v2 = self.mode == "cgroup-v2"
        for controller, root in self.roots.items():
            path = os.path.join(root, key)
            if path in groups:
                continue
            try:
                os.makedirs(path, exist_ok=True)
                if controller == "cpu" or v2:
                    quota = max(int(cpu * CFS_PERIOD_US), 1000)
                    if v2:
                        _write(path, "cpu.max", f"{quota} {CFS_PERIOD_US}")
                    else:
                        _write(path, "cpu.cfs_period_us", str(CFS_PERIOD_US))
                        _write(path, "cpu.cfs_quota_us", str(quota))
                if controller == "memory" or v2:
                    _write(path, "memory.max" if v2 else "memory.limit_in_bytes", str(ram))
                    if not v2:
                        with contextlib.suppress(OSError):  # no swap to hide in
                            _write(path, "memory.memsw.limit_in_bytes", str(ram))
                _write(path, "cgroup.procs", str(pid))
                groups.append(path)
            except OSError as exc:
                log.warning("cannot limit instance %s through %s: %s", key, path, exc)
        return groups

    def release(self, groups: list[str]) -> None:
        for path in groups:
            with contextlib.suppress(OSError):
                os.rmdir(path)

    def close(self) -> None:
        for root in set(self.roots.values()):
            for child in os.listdir(root) if os.path.isdir(root) else []:
                full = os.path.join(root, child)
                if os.path.isdir(full):
                    with contextlib.suppress(OSError):
                        os.rmdir(full)
            with contextlib.suppress(OSError):
                os.rmdir(root)


def _write(directory: str, name: str, value: str) -> None:
    with open(os.path.join(directory, name), "w") as f:
        f.write(value)


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None

