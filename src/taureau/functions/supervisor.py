"""InstanceSupervisor: keeps one instance of a function running, restarting it with backoff.

Theory of operation:

    STARTING --ready--> RUNNING --exit/kill--> BACKOFF --delay--> STARTING
        |                  |                                          ^
        +--failed----------+------------------------------------------+
    any --stop()--> STOPPED (final)

- STARTING: take a warm host from the runtime, put it in its resource limits, send `assign`;
  the host answers `ready` (subscribed) or `failed` (its code does not load, the broker
  refused). A failure or an exit goes to BACKOFF: 0.1 s doubling to 30 s, reset once an
  instance has stayed up for a minute.
- RUNNING: the host reports its status every second. The supervisor kills it when it is over
  its memory limit (where the kernel does not enforce it) or stuck in one call longer than
  `--timeout-ms` plus a grace (code stuck in C cannot be interrupted from inside).
- Messages the host sends about state go to the function's state table (`on_state`).
- With authentication on, each start is given a freshly minted token for the function's role,
  and a running host a new one (`token`) every half of the token's life: the instance hands
  it to the broker when its connection's token expires (AUTH_CHALLENGE) and to the state
  store, so it keeps running across expiries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from taureau.functions.channel import ChannelError, Message
from taureau.functions.errors import FunctionNotRunningError, FunctionTimeoutError
from taureau.functions.instance import InstanceSpec
from taureau.functions.links import InstanceLink
from taureau.functions.runtime.base import Host, Runtime
from taureau.functions.runtime.limits import ResourceLimiter, rss_bytes

log = logging.getLogger("taureau.functions.supervisor")

READY_TIMEOUT_S = 60.0
STABLE_AFTER_S = 60.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 30.0
STUCK_GRACE_S = 5.0
STOP_GRACE_S = 5.0
LOG_FILE_MAX = 10 * 1024 * 1024

StateHandler = Callable[[InstanceLink, Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TokenRenewal:
    mint: Callable[[], str | None]  # a fresh token for the function's role
    every_s: float  # half the life of a minted token


class InstanceState(Enum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"


_ALLOWED = {
    InstanceState.STARTING: {InstanceState.RUNNING, InstanceState.BACKOFF, InstanceState.STOPPED},
    InstanceState.RUNNING: {InstanceState.BACKOFF, InstanceState.STOPPED},
    InstanceState.BACKOFF: {InstanceState.STARTING, InstanceState.STOPPED},
    InstanceState.STOPPED: set(),
}


class InstanceSupervisor:
    def __init__(self, spec: InstanceSpec, runtime: Runtime, limiter: ResourceLimiter,
                 on_state: StateHandler, log_file: str, renewal: TokenRenewal | None = None) -> None:
        self.spec = spec
        self._renewal = renewal
        self._minted_at = 0.0  # monotonic time the running host's token was minted
        self.instance_id = spec.instance_id
        self._runtime = runtime
        self._limiter = limiter
        self._on_state = on_state
        self.log_file = log_file
        self.state = InstanceState.STARTING
        self.status: dict[str, Any] = {}  # the host's last report
        self.isolation: dict[str, str] = {}  # what the running host confined itself to
        self.error = ""  # why the last start failed, or why it was killed
        self.restarts = 0
        self.started_at = 0.0  # monotonic time the current host became ready
        self.host: Host | None = None
        self.ready = asyncio.Event()  # set while RUNNING
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._exited_totals: dict[str, int] = {}  # counters of hosts that are gone, so totals only grow
        self._outcome: asyncio.Future[str] | None = None  # "ready" or "failed: why", per start

    def _set_state(self, new: InstanceState) -> None:
        if new is self.state:
            return
        if new not in _ALLOWED[self.state]:
            raise RuntimeError(f"instance {self.instance_id}: {self.state.value} -> {new.value} is not allowed")
        self.state = new
        if new is InstanceState.RUNNING:
            self.ready.set()
        else:
            self.ready.clear()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stop.set()
        host = self.host
        if host is not None:
            with contextlib.suppress(ChannelError):
                host.link.send({"t": "stop"})
            try:
                await asyncio.wait_for(host.wait(), STOP_GRACE_S)
            except TimeoutError:
                host.kill()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.state is not InstanceState.STOPPED:
            self._set_state(InstanceState.STOPPED)

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._stop.is_set():
            if self.state is InstanceState.BACKOFF:
                self._set_state(InstanceState.STARTING)
            stable = await self._one_life()
            if self._stop.is_set():
                break
            self.restarts += 1
            self._set_state(InstanceState.BACKOFF)
            backoff = BACKOFF_MIN_S if stable else min(backoff * 2, BACKOFF_MAX_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)

    async def _one_life(self) -> bool:
        """Start a host and watch it until it goes; True if it stayed up long enough."""
        try:
            host = await self._runtime.acquire()
        except Exception as exc:
            self.error = f"cannot start an instance: {exc}"
            return False
        self.host = host
        groups: list[str] = []
        link = host.link
        link.set_handler(self._on_message)
        try:
            if host.pid is not None:
                r = self.spec.config.resources
                groups = self._limiter.apply(f"{self.spec.config.fqfn.replace('/', '.')}.{self.instance_id}",
                                             host.pid, r.cpu, r.ram)
            limits = dict(self.spec.limits, log_file=self.log_file)
            spec = self.spec.to_dict() | {"limits": limits}
            if self._renewal is not None:  # the spec's first token may be long expired by now
                spec["authToken"] = self._renewal.mint()
                self._minted_at = time.monotonic()
            self._outcome = asyncio.get_running_loop().create_future()
            link.send({"t": "assign", "spec": spec})
            try:
                outcome = await asyncio.wait_for(asyncio.shield(self._outcome), READY_TIMEOUT_S)
            except TimeoutError:
                outcome = f"failed: no answer in {READY_TIMEOUT_S:.0f}s"
            if outcome != "ready":
                self.error = outcome.removeprefix("failed: ")
                host.kill()
                await host.wait()
                return False
            self.started_at = time.monotonic()  # `error` keeps the last failure for status
            self._set_state(InstanceState.RUNNING)
            watcher = asyncio.ensure_future(self._watch(host))
            code = await host.wait()
            watcher.cancel()
            if not self._stop.is_set():
                self.error = self.error or f"instance exited (code {code})"
                log.warning("%s instance %d: %s", self.spec.config.fqfn, self.instance_id, self.error)
            return time.monotonic() - self.started_at >= STABLE_AFTER_S
        finally:
            self._fold_totals()
            self.host = None
            link.close()
            self._limiter.release(groups)

    def _on_message(self, link: InstanceLink, message: Message) -> Awaitable[None] | None:
        kind = message.header["t"]
        if kind == "status":
            self.status = message.header["status"]
        elif kind == "state":
            return self._on_state(link, message)
        elif kind in ("ready", "failed", "closed"):
            if kind == "ready":
                self.isolation = dict(message.header.get("isolation") or {})
            outcome = "ready" if kind == "ready" else f"failed: {message.header.get('error', 'instance went away')}"
            if self._outcome is None or self._outcome.done():
                return None
            self._outcome.set_result(outcome)
        return None

    async def _watch(self, host: Host) -> None:
        """Kill a host that is over its memory or stuck past its timeout; trim its log."""
        config = self.spec.config
        while True:
            await asyncio.sleep(1.0)
            self._renew_token(host)
            if host.pid is not None and not self._limiter.enforces_memory_in_kernel:
                rss = rss_bytes(host.pid)
                if rss is not None and rss > config.resources.ram:
                    self.error = f"killed: {rss} bytes resident, over its {config.resources.ram} byte limit"
                    host.kill()
                    return
            busy_since = self.status.get("busySinceMs", 0)
            if config.timeout_ms and busy_since and host.pid is not None:
                stuck_s = time.time() - busy_since / 1000
                if stuck_s > config.timeout_ms / 1000 + STUCK_GRACE_S:
                    self.error = f"killed: stuck in one call for {stuck_s:.1f}s (timeout {config.timeout_ms} ms)"
                    host.kill()
                    return
            _trim_log(self.log_file)

    def _renew_token(self, host: Host) -> None:
        renewal = self._renewal
        if renewal is None or time.monotonic() - self._minted_at < renewal.every_s:
            return
        self._minted_at = time.monotonic()
        with contextlib.suppress(ChannelError):  # a host going away is the loop's to notice
            host.link.send({"t": "token", "token": renewal.mint()})

    def limits_in_force(self) -> dict[str, str]:
        """How --cpu / --ram are enforced on this instance (for status)."""
        if self.host is None or self.host.pid is None:
            return {"cpu": "none (thread runtime)", "memory": "none (thread runtime)"}
        return {
            "cpu": "cgroup" if self._limiter.enforces_cpu else "not enforced (no writable cgroup)",
            "memory": "cgroup" if self._limiter.enforces_memory_in_kernel else "resident memory watched",
            **self.isolation,
        }

    def _fold_totals(self) -> None:
        for key in ("received", "processedOk", "userExceptions", "systemExceptions"):
            self._exited_totals[key] = self._exited_totals.get(key, 0) + int(self.status.get(key, 0))
        self.status = {k: v for k, v in self.status.items() if k.startswith("latest") or k == "userMetrics"}

    def totals(self) -> dict[str, int]:
        """Counters over every host this supervisor ran (a restart does not reset them)."""
        return {k: self._exited_totals.get(k, 0) + int(self.status.get(k, 0))
                for k in ("received", "processedOk", "userExceptions", "systemExceptions")}

    # -- invocations --------------------------------------------------------------------------

    async def invoke(self, header: dict[str, Any], payload: bytes, timeout: float) -> Message:
        host = self.host
        if host is None or self.state is not InstanceState.RUNNING:
            raise FunctionNotRunningError(f"instance {self.instance_id} is not running")
        try:
            return await host.link.request({"t": "invoke", **header}, payload, timeout)
        except TimeoutError:
            raise FunctionTimeoutError(f"no answer from instance {self.instance_id} in {timeout:.0f}s") from None
        except ChannelError as exc:
            raise FunctionNotRunningError(f"instance {self.instance_id} went away: {exc}") from None


def _trim_log(path: str) -> None:
    """Keep an instance's log under LOG_FILE_MAX: the old part moves to `.1`."""
    try:
        if os.path.getsize(path) > LOG_FILE_MAX:
            shutil.copyfile(path, path + ".1")
            os.truncate(path, 0)
    except OSError:
        pass
