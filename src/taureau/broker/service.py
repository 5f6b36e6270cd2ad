"""BrokerService: the topic registry; loads topics, applies namespace policies, answers lookups."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from taureau.auth.config import build_authentication
from taureau.broker.admission import ConnectionLimits
from taureau.broker.authorization import AuthorizationService
from taureau.broker.client_topic import AnyClientTopic
from taureau.broker.compaction.topic_compaction import TopicCompaction
from taureau.broker.config import BrokerConfig
from taureau.broker.dispatch.base import DispatchLimits
from taureau.broker.dispatch_policies import apply_dispatch_rates
from taureau.broker.inactive_topics import InactiveTopicPolicies, InactiveTopics
from taureau.broker.nonpersistent.registry import NonPersistentTopics
from taureau.broker.nonpersistent.topic import NonPersistentTopic
from taureau.broker.ownership.api import Ownership, SingleBroker
from taureau.broker.ownership.bundles import DEFAULT_BUNDLES
from taureau.broker.ownership.layout import BundleLayouts
from taureau.broker.ownership.registry import BrokerUrls
from taureau.broker.persistence import TOPIC_PERSISTENCE, quorum_of
from taureau.broker.policies import PolicyEnforcer
from taureau.broker.rate_limit import PublishRateLimiter
from taureau.broker.replication.clusters import ClusterData, ClusterRegistry
from taureau.broker.replication.resume import load_replicated_topics
from taureau.broker.replication.topic_replication import TopicReplication
from taureau.broker.resources import (
    TOPIC_DEDUPLICATION,
    TOPIC_REPLICATION,
    ConflictError,
    NamespacePolicies,
    PreconditionFailedError,
    ResourceNotFoundError,
    Resources,
    check_partition_count,
)
from taureau.broker.schemas.model import schema_id
from taureau.broker.schemas.registry import SchemaRegistry
from taureau.broker.schemas.topics import TopicSchemas
from taureau.broker.topic import PersistentTopic
from taureau.broker.transactions.coordinator import TransactionCoordinator
from taureau.broker.transactions.setup import start_coordinator
from taureau.common.errors import NotAllowedError, TopicNotFoundError
from taureau.common.memory import HeapTrimmer
from taureau.common.names import PARTITION_SUFFIX, NamespaceName, TopicName
from taureau.metadata.store import MetadataStore
from taureau.protocol.framing import READ_SIZE
from taureau.storage.managed_ledger.api import ManagedLedgerConfig, ManagedLedgerFactoryBase

log = logging.getLogger(__name__)

RATE_INTERVAL_S = 1.0
RATE_SLICE = 200  # topics whose rates are updated per loop turn
ALL_TOPICS = 2  # GET_TOPICS_OF_NAMESPACE's mode: both domains (max_topics_per_namespace counts both)


def _ready(task: asyncio.Task[PersistentTopic]) -> PersistentTopic | None:
    """The topic a load task made, if it is done and did not fail."""
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result()
    return None


class BrokerService:
    """Owns the map of loaded topics. One instance per broker process, passed explicitly."""

    def __init__(self, config: BrokerConfig, store: MetadataStore, factory: ManagedLedgerFactoryBase) -> None:
        self.config = config
        self.store = store
        self.factory = factory
        self.resources = Resources(store, config.max_num_partitions_per_partitioned_topic)
        self.clusters = ClusterRegistry(store, config.cluster_name)  # geo-replication's peers
        self.schemas = TopicSchemas(SchemaRegistry(store), self.resources)
        self._compacting = asyncio.Semaphore(1)  # compactions at once: CPU work on this event loop
        self.connections = ConnectionLimits(config.max_connections, config.max_connections_per_ip)
        # Lent to every connection's socket reads (FrameDecoder.get_buffer): each read is
        # decoded, or its partial frame copied out, before the loop reads another socket.
        self.read_buffer = bytearray(READ_SIZE)
        self.heap_trimmer = HeapTrimmer()  # connections ask for a trim when they close
        # None while authentication is off; a bad configuration fails here, before any port opens.
        self.authentication = build_authentication(config.auth)
        self.authorization = AuthorizationService(config.auth, self.resources)
        self._topics: dict[str, asyncio.Task[PersistentTopic]] = {}  # name -> loading/loaded topic
        self._unloading: dict[str, asyncio.Task[None]] = {}  # name -> close of an idle topic
        self._idle_task: asyncio.Task | None = None
        self.unloaded = 0  # idle topics unloaded so far (stats, tests)
        self.rates: dict[str, dict[str, float]] = {}  # topic -> msgRateIn/Out, throughputs
        self._rate_task: asyncio.Task | None = None
        self._policy_task: asyncio.Task | None = None
        self._resume_task: asyncio.Task | None = None  # loads replicated topics at start
        defaults = InactiveTopicPolicies(config.delete_inactive_topics_mode,
                                         config.delete_inactive_topics_max_inactive_duration_s,
                                         config.delete_inactive_topics_enabled)
        self.inactive = InactiveTopics(defaults, self)
        self.policies = PolicyEnforcer(self.resources, self.inactive)
        self._last_counters: dict[str, tuple[float, int, int, int, int]] = {}
        self.transactions: TransactionCoordinator | None = None  # while transactions are enabled
        # non-persistent:// topics: in memory only, admitted by the same checks as these.
        self.non_persistent = NonPersistentTopics(store, self._admit_new_topic, apply_limits,
                                                  config.idle_topic_unload_s)
        # Who serves which topic: this broker alone, unless cluster mode replaces it (ownership/).
        self.ownership: Ownership = SingleBroker(self.own_urls, self.unload_topics,
                                                 BundleLayouts(store, DEFAULT_BUNDLES, watch=False), self.topic_loads)

    async def start(self) -> None:
        await self.resources.bootstrap(self.config.cluster_name)
        await self.clusters.register_local(
            ClusterData(serviceUrl=self.config.web_service_url, brokerServiceUrl=self.config.service_url))
        if self.config.transactions.enabled:
            self.transactions = await start_coordinator(
                self.config.transactions, self.resources, self.store, self.factory,
                lambda name: self.get_topic(name, create=False), self.authorization.is_superuser,
            )
        self.non_persistent.start()
        self._rate_task = asyncio.get_running_loop().create_task(self._rate_loop())
        if self.config.policy_check_interval_s > 0:
            self._policy_task = asyncio.get_running_loop().create_task(self._policy_loop())
        if self.config.idle_topic_unload_s > 0:
            self._idle_task = asyncio.get_running_loop().create_task(self._unload_idle_loop())
        if self.ownership.owned() is None:  # this broker serves every topic: resume replicators
            self._resume_task = asyncio.get_running_loop().create_task(load_replicated_topics(
                self.resources, self.config.cluster_name, self.list_topics,
                lambda name: self.get_topic(name, create=False)))

    async def close(self) -> None:
        self.heap_trimmer.close()
        if self.transactions is not None:
            await self.transactions.close()
        for task in (self._rate_task, self._policy_task, self._idle_task, self._resume_task):
            if task is not None:
                task.cancel()
        await self.non_persistent.close()
        if self._unloading:
            await asyncio.wait(list(self._unloading.values()))
        for name in list(self._topics):
            topic = await self._loaded(name)
            if topic is not None:
                try:
                    await topic.close()
                except Exception:
                    log.exception("closing topic %s failed", name)
        self._topics.clear()

    # -- topics ------------------------------------------------------------------------------

    async def _loaded(self, name: str) -> PersistentTopic | None:
        task = self._topics.get(name)
        if task is None:
            return None
        try:
            return await asyncio.shield(task)
        except Exception:
            return None

    def loaded_topics(self) -> list[PersistentTopic]:
        return [topic for task in self._topics.values() if (topic := _ready(task)) is not None]

    async def client_topic(self, name: TopicName) -> AnyClientTopic:
        """The topic a producer or consumer attaches to, of either kind; may create it."""
        if name.persistent:
            return await self.get_topic(name)
        return await self.non_persistent.get(name)

    async def get_topic(
        self, name: TopicName, create: bool = True, explicit: bool = False
    ) -> PersistentTopic:
        """The loaded topic `name`. create: may create it if the namespace policy allows
        auto-creation; explicit: an admin creates it whatever that policy says."""
        key = str(name)
        task = self._topics.get(key)
        topic = _ready(task) if task is not None else None
        if topic is not None:
            topic.last_used = time.monotonic()  # an attach may follow: not idle yet
            return topic
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load_topic(name, create, explicit))
            self._topics[key] = task

            def forget_on_failure(done: asyncio.Task, key: str = key) -> None:
                failed = done.cancelled() or done.exception() is not None
                if failed and self._topics.get(key) is done:
                    del self._topics[key]

            task.add_done_callback(forget_on_failure)
        return await asyncio.shield(task)

    async def _load_topic(self, name: TopicName, create: bool, explicit: bool) -> PersistentTopic:
        if not name.persistent:  # those are self.non_persistent's
            raise NotAllowedError(f"{name} is not a persistent topic")
        unloading = self._unloading.get(str(name))
        if unloading is not None:  # its cursors and ledger must be saved and closed first
            await asyncio.wait([unloading])
        exists = await self.factory.exists(name.storage_name)
        policies = await self._admit_topic(name, create, explicit, exists)
        # The topic's own persistence policy shapes its first ledger, so it is read before the open.
        own_persistence = await self.resources.get_topic_policy(name, TOPIC_PERSISTENCE)
        ledger = await self.factory.open(name.storage_name, self._ledger_config(policies, own_persistence))
        limits = DispatchLimits(
            self.config.max_unacked_messages_per_consumer, self.config.max_unacked_messages_per_subscription
        )
        topic = PersistentTopic(name, ledger, self.store, limits)
        topic.compaction = TopicCompaction(name.storage_name, ledger, self.factory, self.store, self._compacting)
        await topic.compaction.load()
        topic.compaction_threshold = policies.compaction_threshold
        topic.restore_subscriptions()
        topic.replication = TopicReplication(str(name), ledger, self.clusters)
        await topic.access.load()
        await topic.load_validation_mark()
        await self._apply_own_policies(topic, policies)
        apply_limits(topic, policies)
        if self.transactions is not None:
            self.transactions.attach(topic)  # what open transactions acknowledged stays held
        log.info("loaded topic %s", name)
        return topic

    async def _admit_new_topic(self, name: TopicName, create: bool, explicit: bool) -> NamespacePolicies:
        return await self._admit_topic(name, create, explicit, exists=False)

    async def _admit_topic(self, name: TopicName, create: bool, explicit: bool, exists: bool) -> NamespacePolicies:
        """The checks a topic passes before it is loaded: this broker serves it (cluster mode),
        its namespace exists, it is not the base of a partitioned topic and, if it does not
        exist yet, it may be created (auto-creation policy, topic count). Its namespace's
        policies."""
        await self.ownership.check_serves(name)  # another broker's topic is never opened here
        policies = await self._policies_for(name)
        if name.partition < 0 and await self.resources.get_partitions(name) > 0:
            raise NotAllowedError(f"{name} is a partitioned topic: use its partitions")
        if not exists:
            if not create and not explicit:
                raise TopicNotFoundError(f"topic {name} does not exist")
            if not explicit and not await self._may_create(name, policies):
                raise TopicNotFoundError(f"topic {name} does not exist and auto-creation is disabled")
            await self._check_topic_count(name.namespace_name, policies, 1, explicit, creating=name)
        return policies

    async def check_room_for_topics(self, ns: NamespaceName, adding: int) -> None:
        """An admin adding `adding` topics (or partitions) to `ns`: 412 past its limit."""
        await self._check_topic_count(ns, await self.resources.get_policies(ns), adding, explicit=True)

    async def _check_topic_count(self, ns: NamespaceName, policies: NamespacePolicies, adding: int,
                                 explicit: bool, creating: TopicName | None = None) -> None:
        """Refuse topics past the namespace's max_topics_per_namespace (partitions count one
        each, as in Pulsar): 412 for an admin's create, NotAllowedError for an auto-creation.
        Checked before creating, not under a lock: concurrent creations may pass it together."""
        limit = policies.max_topics_per_namespace
        if not limit:
            return
        # The topic being created is listed already (loading): it is not held yet.
        held = sum(1 for topic in await self.topics_of_namespace(ns, ALL_TOPICS) if topic != str(creating))
        if held + adding > limit:
            reason = f"Exceed maximum number of topics in namespace {ns}: {held} of {limit}"
            raise PreconditionFailedError(reason) if explicit else NotAllowedError(reason)

    async def _apply_own_policies(self, topic: PersistentTopic, policies: NamespacePolicies) -> None:
        """De-duplication, replication clusters and dispatch rates: the topic's own settings
        (one read of its policies for all) win over its namespace's."""
        own = await self.resources.get_topic_policies(topic.name)
        dedup = own.get(TOPIC_DEDUPLICATION)
        await topic.set_deduplication(policies.deduplicationEnabled if dedup is None else bool(dedup))
        if topic.replication is not None:
            clusters = own.get(TOPIC_REPLICATION)
            await topic.replication.apply(policies.replication_clusters if clusters is None else clusters)
        apply_dispatch_rates(topic, policies, own)
        # Persistence: the next ledger's E/Qw/Qa (the current one keeps its own, as in Pulsar).
        topic.ledger.set_quorum(*quorum_of(self.config.managed_ledger, policies.persistence,
                                           own.get(TOPIC_PERSISTENCE)))

    async def apply_topic_policies(self, name: TopicName) -> None:
        """Push a changed topic policy into the topic (or its loaded partitions)."""
        policies = await self._policies_for(name)
        for topic in self.loaded_topics():
            if topic.name.partitioned_name == name.partitioned_name:
                await self._apply_own_policies(topic, policies)

    async def _policies_for(self, name: TopicName) -> NamespacePolicies:
        try:
            return await self.resources.get_policies(name.namespace_name)
        except ResourceNotFoundError:
            raise TopicNotFoundError(f"namespace {name.namespace_name} does not exist") from None

    async def _may_create(self, name: TopicName, policies: NamespacePolicies) -> bool:
        if name.partition >= 0:
            partitions = await self.resources.get_partitions(name)
            if partitions:
                return name.partition < partitions
        return policies.autoTopicCreationOverride.allowAutoTopicCreation

    def _ledger_config(self, policies: NamespacePolicies, own_persistence: Any = None) -> ManagedLedgerConfig:
        retention = policies.retention_policies
        ensemble, write, ack = quorum_of(self.config.managed_ledger, policies.persistence, own_persistence)
        return dataclasses.replace(
            self.config.managed_ledger,
            ensemble_size=ensemble,
            write_quorum=write,
            ack_quorum=ack,
            retention_time_s=-1
            if retention.retentionTimeInMinutes < 0
            else retention.retentionTimeInMinutes * 60.0,
            retention_size_bytes=-1
            if retention.retentionSizeInMB < 0
            else retention.retentionSizeInMB * 1024 * 1024,
        )

    async def topic_exists(self, name: TopicName) -> bool:
        if not name.persistent:  # exists while loaded: nothing of it is stored
            return self.non_persistent.find(name) is not None
        return str(name) in self._topics or await self.factory.exists(name.storage_name)

    async def create_topic(self, name: TopicName) -> None:
        """Admin: create a non-partitioned topic (409 if it exists)."""
        await self._policies_for(name)
        if await self.topic_exists(name) or await self.resources.get_partitions(name):
            raise ConflictError(f"topic {name} already exists")
        await self.get_topic(name, explicit=True)

    async def delete_topic(self, name: TopicName, force: bool = False) -> None:
        topic = await self.get_topic(name, create=False)
        busy = topic.producers or any(s.consumers for s in topic.subscriptions.values())
        if busy and not force:
            raise PreconditionFailedError(f"topic {name} has active producers or consumers")
        _send_clients_away(topic)
        self._topics.pop(str(name), None)
        await topic.close()
        if topic.dedup is not None:
            await topic.dedup.delete()
        await topic.forget_validation_mark()
        await topic.access.forget()
        if topic.compaction is not None:
            await topic.compaction.delete()
        await self.factory.delete(name.storage_name)
        if name.partition < 0:  # a partition's schema is its topic's, dropped with the topic
            await self.schemas.registry.drop(schema_id(name))

    async def delete_partitioned_topic(self, name: TopicName, force: bool = False) -> None:
        """Delete every partition of partitioned topic `name`, then its metadata and schema."""
        if not await self.resources.get_partitions(name):
            raise ResourceNotFoundError(f"partitioned topic {name} does not exist")
        for partition in await self.stored_partitions(name):
            await self.delete_topic(partition, force=force)
        await self.resources.delete_partitioned_topic(name)
        await self.schemas.registry.drop(schema_id(name))

    async def unload_topics(self, which: Callable[[TopicName], bool]) -> int:
        """Close the loaded topics `which` picks, their clients told to go (they look the
        topic up again): what a bundle unload does. The number closed."""
        picked = [(key, task) for key, task in self._topics.items() if which(TopicName.parse(key))]
        for key, task in picked:
            if self._topics.get(key) is task:
                del self._topics[key]
        closed = 0
        for key, task in picked:
            try:
                topic = await asyncio.shield(task)
            except Exception:
                continue  # failed to load: nothing open
            _send_clients_away(topic)
            try:
                await topic.close()
                closed += 1
            except Exception:
                log.exception("closing topic %s for an unload failed", key)
        return closed

    def topic_loads(self) -> list[tuple[TopicName, float]]:
        """Each loaded topic with its messages per second in and out (the load manager's input)."""
        loads = []
        for topic in self.loaded_topics():
            rate = self.rates.get(str(topic.name), {})
            loads.append((topic.name, rate.get("msgRateIn", 0.0) + rate.get("msgRateOut", 0.0)))
        return loads

    def own_urls(self) -> BrokerUrls:
        config = self.config
        host = f"{config.advertised_address}:{config.web_port if config.plain_ports else config.web_port_tls}"
        web_tls = f"https://{config.advertised_address}:{config.web_port_tls}" if config.tls else ""
        return BrokerUrls(host, config.service_url if config.plain_ports else "", config.service_url_tls or "",
                          config.web_service_url if config.plain_ports else "", web_tls)

    async def partitioned_metadata(self, name: TopicName) -> int:
        """Partition count for a lookup; may auto-create a partitioned topic per policy."""
        if name.partition >= 0:
            # One partition is a topic of its own, as Pulsar answers: a client told its parent's
            # count would write to `t-partition-0-partition-0`.
            return 0
        partitions = await self.resources.get_partitions(name)
        if partitions:
            return partitions
        policies = await self._policies_for(name)
        auto = policies.autoTopicCreationOverride
        if (
            auto.allowAutoTopicCreation
            and auto.topicType == "partitioned"
            and not await self.topic_exists(name)
        ):
            # A policy stored before the limit existed may ask for more: refuse, do not clamp.
            check_partition_count(auto.defaultNumPartitions, self.resources.max_partitions)
            await self._check_topic_count(name.namespace_name, policies, auto.defaultNumPartitions, False)
            try:
                await self.resources.create_partitioned_topic(name, auto.defaultNumPartitions)
            except ConflictError:  # created concurrently by another lookup
                pass
            return await self.resources.get_partitions(name)
        return 0

    async def stored_partitions(self, name: TopicName) -> list[TopicName]:
        """The partitions of partitioned topic `name` that exist (stored or loaded), in index
        order. Walks what exists, never range(partition count): a count stored before the
        limit existed may be 2^31."""
        count = await self.resources.get_partitions(name)
        prefix = f"{name.storage_name}{PARTITION_SUFFIX}"
        found: set[int] = set()
        for stored in await self.factory.list(prefix):
            suffix = stored[len(prefix) :]
            if suffix.isdigit() and int(suffix) < count:
                found.add(int(suffix))
        for key in list(self._topics):
            loaded = TopicName.parse(key)
            if loaded.partitioned_name == name.partitioned_name and 0 <= loaded.partition < count:
                found.add(loaded.partition)
        return [name.partition_name(index) for index in sorted(found)]

    async def list_topics(self, ns: NamespaceName, domain: str = "persistent") -> list[str]:
        """The topics of namespace `ns` as Pulsar lists them: stored and loaded topics (only
        loaded ones for non-persistent) plus every partition of its partitioned topics,
        stored yet or not (Pulsar creates them with the partitioned topic; here they are
        stored on first use). At most the partition limit per topic, whatever an old record
        says."""
        if domain == "persistent":
            prefix = f"{ns}/persistent/"
            names = {f"persistent://{ns}/{n[len(prefix) :]}" for n in await self.factory.list(prefix)}
            names.update(str(TopicName.parse(k)) for k in self._topics if k.startswith(f"persistent://{ns}/"))
        else:
            names = set(self.non_persistent.names(ns))
        limit = self.resources.max_partitions
        for base in await self.resources.list_partitioned_topics(ns, domain):
            parsed = TopicName.parse(base)
            count = await self.resources.get_partitions(parsed)
            for index in range(min(count, limit) if limit > 0 else count):
                names.add(str(parsed.partition_name(index)))
            await asyncio.sleep(0)  # one topic's names per loop turn
        return sorted(names)

    async def topics_of_namespace(self, ns: NamespaceName, mode: int = 0) -> list[str]:
        """Every topic name a regex consumer may match; `mode` as GET_TOPICS_OF_NAMESPACE's
        (0 persistent, 1 non-persistent, 2 both)."""
        domains = {0: ["persistent"], 1: ["non-persistent"]}.get(mode, ["persistent", "non-persistent"])  # 2: ALL
        return [name for domain in domains for name in await self.list_topics(ns, domain)]

    async def apply_policies(self, ns: NamespaceName) -> None:
        """Push changed namespace policies (retention, de-duplication) into loaded topics."""
        policies = await self.resources.get_policies(ns)
        config = self._ledger_config(policies)
        for topic in self.loaded_topics():
            if topic.name.namespace_name == ns:
                topic.ledger.set_retention(config.retention_time_s, config.retention_size_bytes)
                topic.compaction_threshold = policies.compaction_threshold
                await self._apply_own_policies(topic, policies)
                apply_limits(topic, policies)
        self.non_persistent.configure_namespace(ns, policies)

    # -- idle topics -------------------------------------------------------------------------

    async def _unload_idle_loop(self) -> None:
        """A few times per idle period, one sliced pass over the loaded topics."""
        idle_s = self.config.idle_topic_unload_s
        while True:
            await asyncio.sleep(max(idle_s / 4, 0.05))
            now = time.monotonic()
            for i, (key, task) in enumerate(list(self._topics.items())):
                topic = _ready(task)
                # A topic waiting out its inactive-topic deletion stays: a load would restart the count.
                if topic is not None and key not in self.inactive.pinned and topic.idle_for(now) >= idle_s:
                    self._unload(key, task)
                if i % RATE_SLICE == RATE_SLICE - 1:
                    await asyncio.sleep(0)

    def _unload(self, key: str, task: asyncio.Task[PersistentTopic]) -> None:
        if self._topics.get(key) is not task:
            return
        del self._topics[key]  # the next get_topic loads it again, after this close
        closing = asyncio.get_running_loop().create_task(self._close_unloaded(key, task.result()))
        self._unloading[key] = closing

    async def _close_unloaded(self, key: str, topic: PersistentTopic) -> None:
        try:
            await topic.close()
            self.unloaded += 1
            log.info("unloaded idle topic %s", topic.name)
        except Exception:
            log.exception("unloading idle topic %s failed", topic.name)
        finally:
            if self._unloading.get(key) is asyncio.current_task():
                del self._unloading[key]

    # -- rates -------------------------------------------------------------------------------

    async def _rate_loop(self) -> None:
        """Every second, a slice of topics per loop turn: 5,000 topics in one callback held
        the loop for milliseconds each second."""
        while True:
            await asyncio.sleep(RATE_INTERVAL_S)
            now = time.monotonic()
            topics = self.loaded_topics()
            for i, topic in enumerate(topics):
                self._update_rate(topic, now)
                if i % RATE_SLICE == RATE_SLICE - 1:
                    await asyncio.sleep(0)
            self._forget_rates_of_unloaded(topics)
            self._compact_over_threshold()

    async def _policy_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.policy_check_interval_s)
            try:
                await self.policies.check(self.loaded_topics())
            except Exception:
                log.exception("applying message TTLs and backlog quotas failed")

    def _compact_over_threshold(self) -> None:
        """Pulsar's automatic compaction: a topic whose namespace sets compactionThreshold is
        compacted once that many bytes were added since its last compaction."""
        for topic in self.loaded_topics():
            compaction = topic.compaction
            if compaction is None or topic.compaction_threshold <= 0 or not compaction.may_start_automatically():
                continue
            if compaction.pending_bytes() >= topic.compaction_threshold:
                compaction.trigger()

    def update_rates(self) -> None:
        now = time.monotonic()
        topics = self.loaded_topics()
        for topic in topics:
            self._update_rate(topic, now)
        self._forget_rates_of_unloaded(topics)

    def _forget_rates_of_unloaded(self, loaded: list[PersistentTopic]) -> None:
        if len(self._last_counters) > len(loaded):
            keep = {str(t.name) for t in loaded}
            for key in [k for k in self._last_counters if k not in keep]:
                del self._last_counters[key]
                self.rates.pop(key, None)

    def _update_rate(self, topic: PersistentTopic, now: float) -> None:
        key = str(topic.name)
        subscriptions = topic.subscriptions.values()
        msg_out = sum(s.msg_out for s in subscriptions)
        bytes_out = sum(c.bytes_out for s in subscriptions for c in s.consumers)
        current = (now, topic.msg_in, topic.bytes_in, msg_out, bytes_out)
        previous = self._last_counters.get(key)
        self._last_counters[key] = current
        if previous is None:
            return
        if previous[1:] == current[1:]:
            self.rates.pop(key, None)  # idle: absent reads as zero, and holds no dict per topic
            return
        elapsed = max(now - previous[0], 1e-6)
        self.rates[key] = {
            "msgRateIn": (current[1] - previous[1]) / elapsed,
            "msgThroughputIn": (current[2] - previous[2]) / elapsed,
            "msgRateOut": max(current[3] - previous[3], 0) / elapsed,
            "msgThroughputOut": max(current[4] - previous[4], 0) / elapsed,
        }


def _send_clients_away(topic: PersistentTopic) -> None:
    """Tell every producer and consumer of `topic` to reconnect (CLOSE_PRODUCER/CONSUMER)."""
    for producer in list(topic.producers.values()):
        if producer.disconnect is not None:
            producer.disconnect()
    for sub in list(topic.subscriptions.values()):
        sub.disconnect_consumers()


def apply_limits(topic: PersistentTopic | NonPersistentTopic, policies: NamespacePolicies) -> None:
    """The namespace's producer and consumer caps and publish rate, onto one of its topics.
    Producers and consumers already over a lowered cap stay (as in Pulsar); new ones wait."""
    topic.max_producers = policies.max_producers_per_topic or 0
    topic.max_consumers = policies.max_consumers_per_topic or 0
    topic.max_subscriptions = policies.max_subscriptions_per_topic or 0
    rate = policies.publishMaxMessageRate
    if rate is None or not rate.limited:
        topic.publish_limiter = None
        return
    limiter = topic.publish_limiter
    wanted = (rate.publishThrottlingRateInMsg, rate.publishThrottlingRateInByte)
    if limiter is None:
        topic.publish_limiter = PublishRateLimiter(*wanted)
    elif (limiter.max_messages, limiter.max_bytes) != wanted:
        limiter.set_rates(*wanted)
