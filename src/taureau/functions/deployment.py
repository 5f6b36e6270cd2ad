"""Deployment: one registered function on this worker, with everything it runs.

It owns the function's supervisors (one per instance), its durable state table, its cron
schedule and its autoscaling loop; the worker owns the list of deployments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from croniter import croniter

from taureau.functions.broker_admin import BrokerAdmin, BrokerAdminError
from taureau.functions.channel import Message
from taureau.functions.config import ProcessingGuarantees, SubscriptionPosition
from taureau.functions.errors import FunctionError, FunctionNotRunningError, FunctionTimeoutError
from taureau.functions.instance import InstanceSpec
from taureau.functions.links import InstanceLink
from taureau.functions.registry import FunctionRecord
from taureau.functions.runtime.base import Runtime
from taureau.functions.runtime.isolation import Sandbox
from taureau.functions.runtime.limits import ResourceLimiter
from taureau.functions.scaler import Decision, ScaleInput, decide
from taureau.functions.secrets import function_secrets_dir
from taureau.functions.state_table import StateTable
from taureau.functions.supervisor import InstanceState, InstanceSupervisor, TokenRenewal

log = logging.getLogger("taureau.functions.deployment")

WAKE_TIMEOUT_S = 30.0
SCALE_TICK_IDLE_S = 0.05  # how often a function at zero instances looks for work
SCALE_TICK_S = 1.0

# (an instance's state op header, its blob) -> (the answer's header, its blob)
RemoteState = Callable[[dict[str, Any], bytes], Awaitable[tuple[dict[str, Any], bytes]]]


@dataclass(slots=True)
class DeploymentContext:
    """What the worker lends each deployment."""

    runtimes: dict[str, Runtime]
    default_runtime: str
    limiter: ResourceLimiter
    broker: BrokerAdmin
    service_url: str
    state_address: str | None
    secrets_provider: str
    log_dir: str
    secrets_dir: str | None = None  # the file provider's root: a directory per function under it
    # With authentication on: (tenant, namespace, name) -> a token for that function's role.
    token_for: Callable[[str, str, str], str] | None = None
    token_ttl_s: float = 3600.0  # the life of a token_for token: each instance gets a new one at half
    sandbox: Sandbox | None = None  # OS-level isolation of process-runtime instances


@dataclass(slots=True)
class ScalingEvent:
    time_ms: int
    from_instances: int
    to_instances: int
    reason: str


class Deployment:
    def __init__(self, record: FunctionRecord, code_paths: list[str], table: StateTable | None,
                 ctx: DeploymentContext, assigned: frozenset[int] | None = None) -> None:
        self.record = record
        # In a cluster of workers, the instance ids this worker runs (the leader's assignment);
        # None: every instance (a worker alone).
        self.assigned = assigned
        # In a cluster, without instance 0 here: where this worker's instances' state ops go.
        self.remote_state: RemoteState | None = None
        self.config = record.config
        self.code_paths = code_paths
        self.table = table  # None only while the state store cannot be opened
        self._ctx = ctx
        self.supervisors: dict[int, InstanceSupervisor] = {}  # instance id -> its supervisor
        self.target = 0  # instances wanted (autoscaled functions move it)
        self.scaling: list[ScalingEvent] = []  # the latest decisions, newest last
        self._tasks: list[asyncio.Task] = []
        self._next_instance = 0  # round robin over running instances for invocations
        self._pending_invocations = 0
        self._wake = asyncio.Event()  # an invocation arrived for a function at zero
        self._last_change = time.monotonic()
        self._last_busy = time.monotonic()  # last time work was seen (backlog or receipts)
        self._last_received = time.monotonic()
        self._rate_sample: tuple[float, int] = (time.monotonic(), 0)
        self.rate = 0.0
        self.backlog = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        c = self.config
        if c.processing_guarantees is ProcessingGuarantees.EFFECTIVELY_ONCE and c.output:
            try:
                await self._ctx.broker.enable_deduplication(c.output)
            except BrokerAdminError as exc:
                log.warning("%s: %s", c.fqfn, exc)
        # The subscription exists from the moment the function does: messages published right
        # after `functions create` wait for the instances (which start a moment later), and an
        # autoscaled function at zero instances accumulates a backlog that wakes it.
        await self._ensure_subscriptions()
        self.target = 0 if self.record.all_stopped else c.initial_instances
        await self._reconcile()
        if c.autoscaled:
            self._tasks.append(asyncio.ensure_future(self._scale_loop()))
        if c.schedule and self.holds_first:  # one worker fires the schedule
            self._tasks.append(asyncio.ensure_future(self._schedule_loop()))

    @property
    def holds_first(self) -> bool:
        """Whether this worker runs instance 0, and so holds the function's state table and
        fires its schedule (a worker alone holds everything)."""
        return self.assigned is None or 0 in self.assigned

    async def _ensure_subscriptions(self) -> None:
        c = self.config
        earliest = c.subscription_position is SubscriptionPosition.EARLIEST
        topics = list(c.input_serdes())
        if c.topics_pattern:
            topics = await self._ctx.broker.topics_matching(c.topics_pattern)
        for topic in topics:
            try:
                await self._ctx.broker.ensure_subscription(topic, c.subscription_name, earliest)
            except BrokerAdminError as exc:
                log.warning("%s: %s", c.fqfn, exc)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await asyncio.gather(*(s.stop() for s in self.supervisors.values()))
        self.supervisors.clear()
        if self.table is not None:
            await self.table.close()

    def _spec(self, instance_id: int) -> InstanceSpec:
        return InstanceSpec(
            config=self.config,
            instance_id=instance_id,
            function_id=self.record.function_id,
            version=str(self.record.version),
            service_url=self._ctx.service_url,
            code_paths=self.code_paths,
            state_address=self._ctx.state_address,
            secrets_provider=self._ctx.secrets_provider,
            secrets_dir=self._secrets_dir(),
            auth_token=self._token(),
            limits=self._isolation(instance_id),
        )

    def _isolation(self, instance_id: int) -> dict[str, Any]:
        sandbox, c = self._ctx.sandbox, self.config
        if sandbox is None or self._runtime().kind != "process":
            return {}  # the thread runtime shares the worker's process: nothing to confine
        confinement = sandbox.confinement(c.fqfn, instance_id, c.resources, self.code_paths, self._secrets_dir(),
                                          c.secrets)
        return {"isolation": confinement.to_dict()}

    def _secrets_dir(self) -> str | None:
        root, c = self._ctx.secrets_dir, self.config
        return function_secrets_dir(root, c.tenant, c.namespace, c.name) if root else None

    def _token(self) -> str | None:
        mint = self._ctx.token_for
        c = self.config
        return mint(c.tenant, c.namespace, c.name) if mint is not None else None

    def _runtime(self) -> Runtime:
        kind = self.config.runtime_kind or self._ctx.default_runtime
        return self._ctx.runtimes[kind]

    async def _reconcile(self) -> None:
        """Run exactly the instances 0..target-1 that an operator has not stopped."""
        wanted = {i for i in range(self.target) if i not in self.record.stopped
                  and (self.assigned is None or i in self.assigned)}
        for instance_id in sorted(set(self.supervisors) - wanted):
            await self.supervisors.pop(instance_id).stop()
        for instance_id in sorted(wanted - set(self.supervisors)):
            log_file = os.path.join(self._ctx.log_dir, f"{self.config.fqfn.replace('/', '.')}.{instance_id}.log")
            renew = TokenRenewal(self._token, self._ctx.token_ttl_s / 2) if self._ctx.token_for else None
            supervisor = InstanceSupervisor(self._spec(instance_id), self._runtime(), self._ctx.limiter,
                                            self._on_state, log_file, renew)
            self.supervisors[instance_id] = supervisor
            supervisor.start()

    async def set_target(self, target: int, reason: str) -> None:
        if target != self.target:
            self.scaling.append(ScalingEvent(int(time.time() * 1000), self.target, target, reason))
            del self.scaling[:-20]
            log.info("%s: %d -> %d instances (%s)", self.config.fqfn, self.target, target, reason)
            self._last_change = time.monotonic()
        self.target = target
        await self._reconcile()

    async def restart(self, instance_id: int | None = None) -> None:
        ids = [instance_id] if instance_id is not None else list(self.supervisors)
        for i in ids:
            supervisor = self.supervisors.pop(i, None)
            if supervisor is not None:
                await supervisor.stop()
        await self._reconcile()

    # -- state ops from instances -------------------------------------------------------------

    async def _on_state(self, link: InstanceLink, message: Message) -> None:
        header = message.header
        if self.table is None and self.remote_state is not None:
            # In a cluster, the worker running instance 0 holds the table: the op goes there.
            answer, blob = await self.remote_state(header, message.blob)
        else:
            unavailable = ("the function's state store is not open" if self.holds_first else
                           "the function's state is held by the worker running its instance 0")
            answer, blob = await state_answer(self.table, header, message.blob, unavailable)
        answer.update({"t": "answer", "req": header.get("req")})
        if not link.closed.is_set():
            link.send(answer, blob)

    # -- invocations --------------------------------------------------------------------------

    def running(self) -> list[InstanceSupervisor]:
        return [s for s in self.supervisors.values() if s.state is InstanceState.RUNNING]

    async def invoke(self, payload: bytes, *, timeout: float, **header: Any) -> Message:
        """Run the function once on one of its instances (waking one if it is at zero)."""
        self._pending_invocations += 1
        self._last_busy = self._last_received = time.monotonic()
        try:
            supervisor = await self._an_instance(timeout)
            return await supervisor.invoke(header, payload, timeout)
        finally:
            self._pending_invocations -= 1

    async def _an_instance(self, timeout: float) -> InstanceSupervisor:
        deadline = time.monotonic() + min(timeout, WAKE_TIMEOUT_S)
        while True:
            running = self.running()
            if running:
                self._next_instance += 1
                return running[self._next_instance % len(running)]
            if self.target == 0:
                if not self.config.autoscaled or self.record.all_stopped:
                    raise FunctionNotRunningError(f"function {self.config.fqfn} is stopped")
                await self.set_target(max(self.config.min_instances or 0, 1), "woke up: invocation")
            waiters = [asyncio.ensure_future(s.ready.wait()) for s in self.supervisors.values()]
            if not waiters:
                raise FunctionNotRunningError(f"function {self.config.fqfn} has no instance")
            remaining = deadline - time.monotonic()
            done, pending = await asyncio.wait(waiters, timeout=max(remaining, 0),
                                               return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
            if not done:
                errors = "; ".join(s.error for s in self.supervisors.values() if s.error)
                raise FunctionTimeoutError(f"no instance of {self.config.fqfn} became ready"
                                           + (f": {errors}" if errors else ""))

    async def _schedule_loop(self) -> None:
        schedule = croniter(self.config.schedule or "", time.time())
        while True:
            fire_at = schedule.get_next(float)
            await asyncio.sleep(max(fire_at - time.time(), 0))
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fire_at))
            try:
                await self.invoke(b"", timeout=60.0, cron=stamp, publish=True)
            except FunctionError as exc:
                log.warning("%s: scheduled run at %s failed: %s", self.config.fqfn, stamp, exc)

    # -- autoscaling --------------------------------------------------------------------------

    async def _scale_loop(self) -> None:
        while True:
            await asyncio.sleep(SCALE_TICK_IDLE_S if self.target == 0 else SCALE_TICK_S)
            try:
                await self._scale_once()
            except BrokerAdminError as exc:
                log.debug("%s: scaling skipped: %s", self.config.fqfn, exc)

    async def _measure(self) -> None:
        c = self.config
        topics = list(c.input_serdes())
        if c.topics_pattern:
            topics = await self._ctx.broker.topics_matching(c.topics_pattern)
        backlog = 0
        for topic in topics:
            backlog += await self._ctx.broker.backlog(topic, c.subscription_name)
        self.backlog = backlog
        now = time.monotonic()
        received = sum(s.totals()["received"] for s in self.supervisors.values())
        then, before = self._rate_sample
        if now - then >= 1.0:
            self.rate = max(received - before, 0) / (now - then)
            self._rate_sample = (now, received)
        if received > before:
            self._last_received = now
        if backlog > 0 or received > before:
            self._last_busy = now

    async def _scale_once(self) -> Decision | None:
        c = self.config
        await self._measure()
        now = time.monotonic()
        decision = decide(ScaleInput(
            current=self.target,
            running=len(self.running()),
            minimum=c.min_instances or 0,
            maximum=c.max_instances or 1,
            backlog=self.backlog,
            pending_invocations=self._pending_invocations,
            rate=self.rate,
            idle_s=now - self._last_busy,
            quiet_s=now - self._last_received,
            since_change_s=now - self._last_change,
            idle_timeout_s=c.idle_timeout_ms / 1000,
        ))
        if decision is not None and not self.record.all_stopped:
            await self.set_target(decision.target, decision.reason)
        return decision


async def state_answer(table: StateTable | None, header: dict[str, Any], blob: bytes,
                       unavailable: str = "the function's state store is not open") -> tuple[dict[str, Any], bytes]:
    """Apply one state op an instance sent (`op`, `key`, `amount`) to `table`: the answer's
    header (`ok`, a value, or an error and its kind) and blob."""
    answer: dict[str, Any] = {"ok": True}
    out = b""
    try:
        if table is None:
            raise FunctionError(unavailable)
        op, key = header.get("op"), header.get("key", "")
        if not isinstance(key, str):
            raise FunctionError("a state key is a string")
        if op == "incr":
            answer["value"] = await table.incr(key, int(header.get("amount", 0)))
        elif op == "get_counter":
            answer["value"] = table.get_counter(key)
        elif op == "put":
            await table.put(key, blob)
        elif op == "get":
            value = table.get(key)
            answer["found"] = value is not None
            out = value or b""
        elif op == "delete":
            with contextlib.suppress(FunctionError):
                await table.delete(key)
        elif op == "keys":
            answer["keys"] = table.keys(key)
        else:
            raise FunctionError(f"unknown state op {op!r}")
    except (FunctionError, ValueError, TypeError) as exc:
        kind = type(exc).__name__ if isinstance(exc, FunctionError) else "FunctionStateError"
        return {"ok": False, "error": str(exc), "kind": kind}, b""
    return answer, out
