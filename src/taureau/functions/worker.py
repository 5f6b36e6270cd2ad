"""FunctionWorker: registers functions durably and keeps each one deployed.

It runs inside `taureau standalone` (and on its own as `taureau functions-worker`). It owns
the registry, the package store, the runtimes and warm pool, and one Deployment per function;
the REST API and the CLI call the methods below. Operations on one function are serialised.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taureau.common.private_files import make_private_dirs
from taureau.functions.broker_admin import BrokerAdmin, BrokerAdminError
from taureau.functions.channel import ChannelError
from taureau.functions.cluster.paths import ALONE, WORKERS
from taureau.functions.config import FunctionConfig
from taureau.functions.deployment import Deployment, DeploymentContext, RemoteState
from taureau.functions.ephemeral import space_path
from taureau.functions.errors import (
    FunctionCodeError,
    FunctionConfigError,
    FunctionError,
    FunctionExistsError,
    FunctionInvocationError,
    FunctionNotFoundError,
    FunctionTimeoutError,
)
from taureau.functions.instance import InstanceSpec
from taureau.functions.links import InstanceLink, LinkServer
from taureau.functions.packages import EnvBuilder, PackageRef, PackageStore
from taureau.functions.registry import FunctionRecord, FunctionRegistry
from taureau.functions.runtime.base import Runtime
from taureau.functions.runtime.isolation import Sandbox
from taureau.functions.runtime.limits import ResourceLimiter
from taureau.functions.runtime.process import ProcessRuntime
from taureau.functions.runtime.thread import ThreadRuntime
from taureau.functions.state_table import StateTable, ledger_name
from taureau.metadata.store import MetadataStore
from taureau.storage.managed_ledger.api import ManagedLedgerFactoryBase

if TYPE_CHECKING:
    from taureau.functions.cluster.member import ClusterMember

log = logging.getLogger("taureau.functions.worker")

CHECK_TIMEOUT_S = 60.0
TRIGGER_TIMEOUT_S = 30.0


@dataclass(slots=True)
class WorkerConfig:
    data_dir: str
    service_url: str  # where instances connect (pulsar://host:port)
    admin_url: str  # the broker's admin REST API
    state_address: str | None = None  # the ephemeral state controller, if one runs
    default_runtime: str = "process"
    warm_pool_size: int = 1
    secrets_provider: str = "env"
    secrets_dir: str | None = None  # for the file provider
    worker_id: str = "standalone"
    # With authentication on: the token the worker calls the broker's admin API (and
    # connects its own client) with, and what mints each function's token for its own role.
    admin_token: str | None = None
    token_for: Callable[[str, str, str], str] | None = None
    token_ttl_s: float = 3600.0  # how long a token of token_for lives: renewed at half
    run_as: tuple[int, int] | None = None  # (uid, gid) process instances drop to (the worker runs as root)
    sandbox_files: bool = False  # confine process instances' files (Landlock): runtime/isolation.py
    readable_paths: tuple[str, ...] = ()  # more trees sandboxed instances may read


@dataclass(slots=True)
class Upload:
    filename: str
    data: bytes
    requirements: bytes | None = None


class FunctionWorker:
    def __init__(self, config: WorkerConfig, store: MetadataStore, ledgers: ManagedLedgerFactoryBase) -> None:
        self.config = config
        self._store = store
        self._ledgers = ledgers
        self.registry = FunctionRegistry(store)
        root = os.path.join(config.data_dir, "functions")
        make_private_dirs(root)
        self.packages = PackageStore(os.path.join(root, "packages"))
        self.envs = EnvBuilder(os.path.join(root, "envs"))
        self.log_dir = os.path.join(root, "logs")
        make_private_dirs(self.log_dir)
        # Each process instance's own working directory, and what no instance may reach.
        work_root = os.path.join(root, "work")
        make_private_dirs(work_root)
        protected = tuple(p for p in (config.data_dir, config.secrets_dir) if p)
        self.sandbox = Sandbox(work_root, protected, config.secrets_provider, config.run_as, config.sandbox_files,
                               config.readable_paths)
        # A unix socket path must stay under ~108 bytes: it lives in a private temp dir.
        self._socket_dir = tempfile.mkdtemp(prefix="taureau-fw-")
        socket_path = os.path.join(self._socket_dir, "worker.sock")
        self._links = LinkServer(socket_path, self._on_link)
        self.process_runtime = ProcessRuntime(socket_path, os.path.join(self.log_dir, "instances.log"),
                                              config.warm_pool_size)
        self._runtimes: dict[str, Runtime] = {"process": self.process_runtime,
                                              "thread": ThreadRuntime(socket_path)}
        self.limiter = ResourceLimiter(f"taureau-{os.getpid()}")
        self.broker = BrokerAdmin(config.admin_url, config.admin_token)
        self.deployments: dict[str, Deployment] = {}  # fqfn -> what runs it
        self._locks: dict[str, asyncio.Lock] = {}  # fqfn -> serialises operations on it
        # Packages of creates and updates in progress (a count each: two may share a package).
        self._pending_shas: collections.Counter[str] = collections.Counter()
        self._tasks: list[asyncio.Task] = []
        self._pulsar: Any = None  # the worker's own client, for trigger
        self._state_client: Any = None
        # One worker of several (docs/cluster.md): the leader's assignments say what runs here.
        self.member: ClusterMember | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        # A worker alone deploys every function: beside the workers of a cluster on the same
        # store, each would run twice. Checked before anything of the worker starts.
        if self.member is None:
            if await self._store.children(WORKERS):
                raise FunctionError(f"function workers of a cluster are registered in this metadata store "
                                    f"({WORKERS}); a worker alone would run their functions a second time "
                                    "(use --no-functions)")
            # ... and says so, for cluster workers that start later (gone with this session).
            await self._store.put(ALONE, self.config.worker_id.encode(), ephemeral=True)
        else:
            await self.member.cluster.check_no_worker_alone()
        await self._links.start()
        await self.process_runtime.start()
        if self.config.state_address:
            self._tasks.append(asyncio.ensure_future(self._renew_spaces()))
        if self.member is not None:  # it deploys what the leader assigns here
            await self.member.start()
            log.info("functions worker %s started in a cluster, limits by %s", self.config.worker_id,
                     self.limiter.mode)
            return
        records = await self.registry.load_all()
        for record in records:
            self._tasks.append(asyncio.ensure_future(self._deploy_logged(record)))
        log.info("functions worker started: %d function(s), limits by %s", len(records), self.limiter.mode)

    async def close(self) -> None:
        if self.member is not None:
            await self.member.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(d.close() for d in self.deployments.values()), return_exceptions=True)
        self.deployments.clear()
        for runtime in self._runtimes.values():
            await runtime.close()
        await self._links.close()
        await self.broker.close()
        self.limiter.close()
        if self._pulsar is not None:
            await asyncio.to_thread(self._pulsar.close)
        if self._state_client is not None:
            self._state_client.disconnect()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _on_link(self, link: InstanceLink) -> None:
        for runtime in self._runtimes.values():
            if runtime.claim(link.token, link):
                return
        link.close()

    def _lock(self, fqfn: str) -> asyncio.Lock:
        return self._locks.setdefault(fqfn, asyncio.Lock())

    # -- deploying ----------------------------------------------------------------------------

    async def _code_paths(self, record: FunctionRecord) -> list[str]:
        if self.member is not None:  # assigned a function created at another worker
            await self.member.fetch_packages(record)
        prepared = self.packages.prepare(record.package, record.requirements)
        env = await self.envs.ensure(prepared)
        return prepared.code_paths + ([env] if env else [])

    def _context(self) -> DeploymentContext:
        return DeploymentContext(
            runtimes=self._runtimes,
            default_runtime=self.config.default_runtime,
            limiter=self.limiter,
            broker=self.broker,
            service_url=self.config.service_url,
            state_address=self.config.state_address,
            secrets_provider=self.config.secrets_provider,
            secrets_dir=self.config.secrets_dir,
            log_dir=self.log_dir,
            token_for=self.config.token_for,
            token_ttl_s=self.config.token_ttl_s,
            sandbox=self.sandbox,
        )

    async def _deploy(self, record: FunctionRecord, code_paths: list[str] | None = None,
                      assigned: frozenset[int] | None = None, remote_state: RemoteState | None = None) -> Deployment:
        if code_paths is None:
            code_paths = await self._code_paths(record)
        # One writer per state table: in a cluster, the worker of instance 0.
        table = await StateTable.open(self._ledgers, record.fqfn) if assigned is None or 0 in assigned else None
        deployment = Deployment(record, code_paths, table, self._context(), assigned)
        deployment.remote_state = remote_state
        self.deployments[record.fqfn] = deployment
        await deployment.start()
        return deployment

    async def _deploy_logged(self, record: FunctionRecord) -> None:
        async with self._lock(record.fqfn):
            try:
                await self._deploy(record)
            except Exception:
                log.exception("cannot deploy function %s", record.fqfn)

    async def _check_code(self, config: FunctionConfig, code_paths: list[str]) -> None:
        """Load the code once in a throwaway instance process; raise what went wrong."""
        confinement = self.sandbox.confinement(config.fqfn, "check", config.resources, code_paths, None, {})
        spec = InstanceSpec(config, 0, "check", "0", self.config.service_url, code_paths,
                            limits={"isolation": confinement.to_dict()})
        host = await self.process_runtime.acquire()
        try:
            answer = await host.link.request({"t": "check", "spec": spec.to_dict()}, timeout=CHECK_TIMEOUT_S)
        except TimeoutError:
            raise FunctionCodeError(f"loading the code took over {CHECK_TIMEOUT_S:.0f}s") from None
        except ChannelError:
            raise FunctionCodeError("the process loading the code died (see functions/logs/instances.log)") from None
        finally:
            host.kill()
        if not answer.header.get("ok"):
            raise FunctionCodeError(answer.header.get("error", "the code does not load"))

    async def _check_namespace(self, config: FunctionConfig) -> None:
        try:
            found = await self.broker._get(f"/admin/v2/namespaces/{config.tenant}/{config.namespace}")
        except BrokerAdminError:
            return  # the broker decides at subscribe time
        if found is None:
            raise FunctionConfigError(f"namespace {config.tenant}/{config.namespace} does not exist")

    @contextlib.contextmanager
    def _holding(self, refs: list[PackageRef]):
        """Keep these packages from collection while an operation that stored them runs; then
        collect whatever no function uses (a refused upload leaves nothing behind)."""
        shas = [r.sha for r in refs]
        self._pending_shas.update(shas)
        try:
            yield
        finally:
            self._pending_shas.subtract(shas)
            self._pending_shas += collections.Counter()  # drop the zero counts
            self._collect_packages()

    def _store_upload(self, upload: Upload) -> tuple[PackageRef, PackageRef | None]:
        package = self.packages.put(upload.filename, upload.data)
        requirements = self.packages.put_requirements(upload.requirements) if upload.requirements else None
        return package, requirements

    async def _prepare(self, config: FunctionConfig, package: PackageRef,
                       requirements: PackageRef | None) -> list[str]:
        """The stored package's code paths, once its code is known to load."""
        config.py = package.filename
        code_paths = await self._code_paths(FunctionRecord(config, package, requirements))
        await self._check_code(config, code_paths)
        return code_paths

    # -- the API -------------------------------------------------------------------------------

    async def create(self, config: FunctionConfig, upload: Upload) -> FunctionRecord:
        config.validate()
        async with self._lock(config.fqfn):
            if await self.registry.get(config.fqfn) is not None:
                raise FunctionExistsError(f"function {config.fqfn} already exists")
            await self._check_namespace(config)
            package, requirements = self._store_upload(upload)
            with self._holding([package, *filter(None, [requirements])]):
                code_paths = await self._prepare(config, package, requirements)
                record = FunctionRecord(config, package, requirements)
                if self.member is not None:  # the leader assigns its instances
                    await self.member.share(record)
                    await self.registry.create(record)
                    await self.member.changed()
                    return record
                await self.registry.create(record)
                try:
                    await self._deploy(record, code_paths)
                except Exception as exc:  # refused: nothing of it may stay behind
                    await self._undeploy(record)
                    raise FunctionError(f"cannot start function {record.fqfn}: {exc}") from exc
                return record

    async def _undeploy(self, record: FunctionRecord) -> None:
        deployment = self.deployments.pop(record.fqfn, None)
        if deployment is not None:
            await deployment.close()
        with contextlib.suppress(FunctionNotFoundError):
            await self.registry.delete(record.fqfn)

    async def update(self, fqfn: str, changes: dict[str, Any], upload: Upload | None) -> FunctionRecord:
        async with self._lock(fqfn):
            record = await self._record(fqfn)
            merged = record.config.to_dict()
            merged.update({k: v for k, v in changes.items() if v is not None})
            config = FunctionConfig.from_dict(merged)
            record.config.check_update(config)
            package, requirements = self._store_upload(upload) if upload is not None else (record.package, None)
            with self._holding([package, *filter(None, [requirements])]):
                requirements = requirements or record.requirements
                code_paths = await self._prepare(config, package, requirements)
                record.package, record.requirements = package, requirements
                record.config = config
                record.version += 1
                if self.member is not None:  # its workers redeploy it when assigned the new version
                    await self.member.share(record)
                    await self.registry.save(record)
                    await self.member.changed()
                    return record
                await self.registry.save(record)
                old = self.deployments.pop(fqfn, None)
                if old is not None:
                    await old.close()
                await self._deploy(record, code_paths)
                return record

    async def delete(self, fqfn: str) -> None:
        async with self._lock(fqfn):
            record = await self._record(fqfn)
            deployment = self.deployments.pop(fqfn, None)
            if deployment is not None:
                await deployment.close()
            await self.registry.delete(fqfn)
            c = record.config
            if c.cleanup_subscription:
                for topic in c.input_serdes():
                    with contextlib.suppress(BrokerAdminError):
                        await self.broker.delete_subscription(topic, c.subscription_name)
            if self.member is not None:
                await self.member.changed()
                await self.member.forget_packages(record)
            with contextlib.suppress(Exception):
                await self._ledgers.delete(ledger_name(fqfn))
            if self.config.state_address:
                with contextlib.suppress(Exception):
                    client = await self._state()
                    await asyncio.to_thread(client.remove, space_path(fqfn))
            self._collect_packages()

    def _collect_packages(self) -> None:
        """Remove stored packages no function uses (nor a create or update in progress)."""
        keep = set(self._pending_shas)
        for deployment in self.deployments.values():
            keep.add(deployment.record.package.sha)
            if deployment.record.requirements:
                keep.add(deployment.record.requirements.sha)
        self.packages.remove_unreferenced(keep)

    async def _record(self, fqfn: str) -> FunctionRecord:
        record = await self.registry.get(fqfn)
        if record is None:
            raise FunctionNotFoundError(f"function {fqfn} does not exist")
        return record

    async def get(self, fqfn: str) -> FunctionRecord:
        return await self._record(fqfn)

    async def list(self, tenant: str, namespace: str) -> list[str]:
        return await self.registry.list(tenant, namespace)

    def deployment(self, fqfn: str) -> Deployment:
        deployment = self.deployments.get(fqfn)
        if deployment is None:
            raise FunctionNotFoundError(f"function {fqfn} does not exist (or is still deploying)")
        return deployment

    async def here(self, fqfn: str, instance_id: int | None = None) -> Deployment:
        """The deployment that serves a call on this worker (on `instance_id`, or on any
        instance); in a cluster, FunctionElsewhereError names the worker that serves it."""
        deployment = self.deployments.get(fqfn)
        if self.member is None:
            return self.deployment(fqfn)
        if deployment is not None and deployment.assigned is not None:
            if instance_id is not None and instance_id in deployment.assigned:
                return deployment
            if instance_id is None and deployment.supervisors:  # an instance runs (or starts) here
                return deployment
        elsewhere = await self.member.elsewhere(fqfn, instance_id)
        if isinstance(elsewhere, FunctionNotFoundError) and deployment is not None and instance_id is None:
            return deployment  # nowhere better: it answers why nothing runs (stopped, scaled to zero)
        raise elsewhere

    async def set_running(self, fqfn: str, running: bool, instance_id: int | None = None) -> None:
        """`functions start` / `stop`, of every instance or one; remembered across restarts."""
        async with self._lock(fqfn):
            record = await self._record(fqfn)
            if instance_id is None:
                record.all_stopped = not running
                record.stopped = []
            elif running:
                record.stopped = [i for i in record.stopped if i != instance_id]
            elif instance_id not in record.stopped:
                record.stopped.append(instance_id)
            await self.registry.save(record)
            if self.member is not None:  # every worker of it applies the record's new version
                await self.member.changed()
                if fqfn not in self.deployments:
                    return
            deployment = self.deployment(fqfn)
            await self.apply_record(deployment, record, "started by an operator" if running else "stopped by an operator")

    @staticmethod
    async def apply_record(deployment: Deployment, record: FunctionRecord, reason: str) -> None:
        """A record changed only in which instances run (start/stop): apply it in place."""
        was_stopped = deployment.record.all_stopped
        deployment.record = record
        target = deployment.target
        if record.all_stopped != was_stopped:
            target = 0 if record.all_stopped else record.config.initial_instances
        await deployment.set_target(target, reason)

    async def restart(self, fqfn: str, instance_id: int | None = None) -> None:
        async with self._lock(fqfn):
            await self._record(fqfn)
            if self.member is not None and instance_id is None:  # wherever its instances run
                await self.member.restart_all(fqfn, self.deployments.get(fqfn))
                return
            await (await self.here(fqfn, instance_id)).restart(instance_id)

    # -- invocation ---------------------------------------------------------------------------

    async def invoke(self, fqfn: str, payload: bytes, timeout: float = 30.0) -> tuple[bool, bytes]:
        """HTTP invoke: run the function on `payload`; (has a value, the serialized result)."""
        answer = await (await self.here(fqfn)).invoke(payload, timeout=timeout)
        header = answer.header
        if not header.get("ok"):
            raise FunctionInvocationError(header.get("error", "the function raised"), header.get("trace", ""))
        return bool(header.get("has_value")), answer.blob

    async def trigger(self, fqfn: str, value: bytes, topic: str | None = None) -> bytes | None:
        """Pulsar's trigger: publish `value` to an input topic and wait for the output it
        causes (matched by `__pfn_input_msg_id__`); None if the function has no output."""
        record = await self._record(fqfn)
        inputs = list(record.config.input_serdes())
        if topic is None:
            if not inputs:
                raise FunctionConfigError(f"function {fqfn} has no input topic to trigger (use invoke)")
            topic = inputs[0]
        elif topic not in inputs:
            raise FunctionConfigError(f"{topic} is not an input topic of {fqfn}")
        client = await self._client()
        return await asyncio.to_thread(_trigger_blocking, client, topic, record.config.output, value,
                                       TRIGGER_TIMEOUT_S)

    async def _client(self) -> Any:
        if self._pulsar is None:
            import pulsar

            token = self.config.admin_token
            self._pulsar = await asyncio.to_thread(
                pulsar.Client, self.config.service_url, operation_timeout_seconds=10,
                authentication=pulsar.AuthenticationToken(token) if token else None,
                logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
            )
        return self._pulsar

    # -- durable state ------------------------------------------------------------------------

    def table(self, fqfn: str) -> StateTable:
        """The state table of a function deployed here."""
        return self._open_table(self.deployment(fqfn))

    async def table_anywhere(self, fqfn: str) -> StateTable:
        """The state table, or in a cluster FunctionElsewhereError to the worker holding it."""
        return self._open_table(await self.here(fqfn, 0))

    @staticmethod
    def _open_table(deployment: Deployment) -> StateTable:
        if deployment.table is None:
            raise FunctionError(f"the state of {deployment.config.fqfn} is not open")
        return deployment.table

    # -- ephemeral state ----------------------------------------------------------------------

    async def _state(self) -> Any:
        if self._state_client is None:
            from taureau.state.client import StateClient

            self._state_client = await asyncio.to_thread(
                StateClient, self.config.state_address or "", token=self.config.admin_token
            )
        return self._state_client

    async def _renew_spaces(self) -> None:
        """Keep every function's ephemeral space leased for as long as the function exists."""
        from taureau.state.codec import Op

        while True:
            try:
                client = await self._state()
                paths = [space_path(fqfn) for fqfn in self.deployments]
                if paths:
                    await asyncio.to_thread(client.control, Op.RENEW, {"paths": paths})
                await asyncio.sleep(client.lease_ms / 3000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("renewing function state spaces: %s", exc)
                await asyncio.sleep(1.0)

    # -- status -------------------------------------------------------------------------------

    def status(self, fqfn: str, instance_id: int | None = None) -> dict[str, Any]:
        """Of the instances deployed here."""
        from taureau.functions.views import function_status

        return function_status(self.deployment(fqfn), self.config.worker_id, instance_id)

    def stats(self, fqfn: str, instance_id: int | None = None) -> dict[str, Any]:
        from taureau.functions.views import function_stats

        return function_stats(self.deployment(fqfn), instance_id)

    async def status_anywhere(self, fqfn: str, instance_id: int | None = None, what: str = "status") -> dict[str, Any]:
        """`status` or `stats` as REST answers it: in a cluster, of every instance wherever it
        runs (gathered from the other workers), and one instance's at the worker running it."""
        from taureau.functions.views import function_stats, function_status

        if self.member is not None and instance_id is None:
            return await self.member.gather(fqfn, what)
        deployment = await self.here(fqfn, instance_id)
        if what == "stats":
            return function_stats(deployment, instance_id)
        return function_status(deployment, self.config.worker_id, instance_id)


def _trigger_blocking(client: Any, topic: str, output: str | None, value: bytes, timeout: float) -> bytes | None:
    import pulsar

    reader = client.create_reader(output, pulsar.MessageId.latest) if output else None
    producer = client.create_producer(topic)
    try:
        sent = producer.send(value)
        if reader is None:
            return None
        deadline = time.monotonic() + timeout
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise FunctionTimeoutError(f"no output on {output} for the triggered message in {timeout:.0f}s")
            try:
                message = reader.read_next(min(remaining_ms, 1000))
            except pulsar.Timeout:
                continue
            encoded = message.properties().get("__pfn_input_msg_id__")
            if encoded is None:
                continue
            try:
                source = pulsar.MessageId.deserialize(base64.urlsafe_b64decode(encoded))
            except Exception:
                continue
            if (source.ledger_id(), source.entry_id()) == (sent.ledger_id(), sent.entry_id()):
                return message.data()
    finally:
        producer.close()
        if reader is not None:
            reader.close()
