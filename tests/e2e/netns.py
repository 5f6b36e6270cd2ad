"""Several hosts on one machine for partition tests: Linux network namespaces joined by veth pairs.

Each host is a namespace of the test's own (unique names) with one address on its loopback,
in a private /24 picked at random in 10.200.0.0/13 (a range no ordinary network here uses),
and one veth link to every other host, with a route to that host's address over it. Nothing
is added to the machine's own namespace, so the test's traffic stays among its hosts.
Processes run in a host behind `wrap(role)` (`ip netns exec`); the test process reaches into
one with `in_host` (a thread that enters the namespace: the sockets it opens live there).
`cut` takes down one link of a host, or all of them (packets are dropped, nothing is reset:
as a pulled cable), `heal` brings every link back.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


def missing_reason() -> str | None:
    """Why two namespaces cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "network-partition tests need root (ip netns, veth)"
    for tool in ("ip",):
        if shutil.which(tool) is None:
            return f"network-partition tests need `{tool}` (iproute2)"
    probe = f"tauprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        return f"network namespaces are not available here: {detail}"
    _ip("netns", "del", probe)
    return None


class Hosts:
    """Hosts (network namespaces) joined pairwise by veth pairs: one link per pair of hosts,
    so a test can cut any one link or every link of a host."""

    def __init__(self, *roles: str) -> None:
        tag = f"{os.getpid() % 100000}{random.randrange(1000):03d}"
        self.ns = {role: f"tau-{role}-{tag}" for role in roles}
        net = f"10.{200 + random.randrange(8)}.{random.randrange(256)}"
        self.addr = {role: f"{net}.{i + 1}" for i, role in enumerate(roles)}
        # (x, y) -> the name of x's end of the x-y link (at most 15 characters)
        self._veth = {}
        for i, x in enumerate(roles):
            for j, y in enumerate(roles):
                if x != y:
                    self._veth[(x, y)] = f"tv{i}{j}{tag}"
        self._made: list[str] = []

    def __enter__(self) -> Hosts:
        try:
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self) -> None:
        for role, ns in self.ns.items():
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("link", "set", "lo", "up", netns=ns)
            # Its address on its loopback: reachable over whichever link routes to it.
            _ip("addr", "add", f"{self.addr[role]}/32", "dev", "lo", netns=ns)
        for (x, y), veth in self._veth.items():
            if x < y:
                _ip("link", "add", veth, "netns", self.ns[x], "type", "veth", "peer", "name", self._veth[(y, x)],
                    "netns", self.ns[y])
        for (x, y), veth in self._veth.items():
            _ip("link", "set", veth, "up", netns=self.ns[x])
            _ip("route", "add", f"{self.addr[y]}/32", "dev", veth, "src", self.addr[x], netns=self.ns[x])

    def __exit__(self, *exc: object) -> None:
        for ns in self._made:  # the veth pairs go with their namespaces
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self._made = []

    def wrap(self, role: str) -> list[str]:
        """The prefix that runs a command in `role`'s namespace."""
        return ["ip", "netns", "exec", self.ns[role]]

    def cut(self, role: str, peer: str | None = None) -> None:
        """Take down `role`'s link to `peer`, or all of its links."""
        for (x, y), veth in self._veth.items():
            if x == role and peer in (None, y):
                _ip("link", "set", veth, "down", netns=self.ns[x])

    def heal(self) -> None:
        for (x, y), veth in self._veth.items():
            _ip("link", "set", veth, "up", netns=self.ns[x])
            # A link set down loses its routes: put them back (an existing one is kept).
            subprocess.run([*self.wrap(x), "ip", "route", "replace", f"{self.addr[y]}/32", "dev", veth, "src",
                            self.addr[x]], capture_output=True, timeout=30)

    def in_host(self, role: str, fn: Callable[[], T]) -> T:
        """fn() on a thread inside `role`'s network namespace (sockets it opens live there)."""
        result: list[T] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                with open(f"/var/run/netns/{self.ns[role]}") as ns:
                    if libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {self.ns[role]} failed")
                result.append(fn())
            except BaseException as exc:
                error.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return result[0]
