"""NonPersistentTopics: the loaded non-persistent topics of a broker, their rates and their
idle unloading. The broker service owns one and hands it the checks every new topic passes
(namespace, auto-creation, limits): both kinds of topic are admitted by the same code.

A non-persistent topic is in memory only, so loading one is making it: nothing to read, no
load task to share, and unloading an idle one is forgetting it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from taureau.broker.nonpersistent.topic import NonPersistentTopic
from taureau.broker.resources import NamespacePolicies, PreconditionFailedError
from taureau.common.errors import TopicNotFoundError
from taureau.common.names import PARTITION_SUFFIX, NamespaceName, TopicName
from taureau.metadata.store import MetadataStore

log = logging.getLogger(__name__)

RATE_INTERVAL_S = 1.0
SLICE = 200  # topics handled per loop turn by the periodic sweeps

# (name, create, explicit) -> the namespace's policies, or raises: may this topic be made?
Admit = Callable[[TopicName, bool, bool], Awaitable[NamespacePolicies]]
# Applies a namespace's limits (producers, consumers, publish rate) to a topic.
Configure = Callable[[NonPersistentTopic, NamespacePolicies], None]


class NonPersistentTopics:
    def __init__(self, store: MetadataStore, admit: Admit, configure: Configure, idle_unload_s: float) -> None:
        self._store = store
        self._admit = admit
        self._configure = configure
        self._idle_unload_s = idle_unload_s
        self._topics: dict[str, NonPersistentTopic] = {}  # by name; owned here
        self._tasks: list[asyncio.Task[None]] = []
        self.unloaded = 0  # idle topics forgotten so far (stats, tests)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._rate_loop()))
        if self._idle_unload_s > 0:
            self._tasks.append(loop.create_task(self._unload_idle_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        for topic in self._topics.values():
            topic.disconnect_all()
        self._topics.clear()

    # -- topics ------------------------------------------------------------------------------

    def find(self, name: TopicName) -> NonPersistentTopic | None:
        return self._topics.get(str(name))

    def loaded(self) -> list[NonPersistentTopic]:
        return list(self._topics.values())

    async def get(self, name: TopicName, create: bool = True, explicit: bool = False) -> NonPersistentTopic:
        """The topic `name`, made now if it may be (as a persistent topic is created)."""
        key = str(name)
        topic = self._topics.get(key)
        if topic is None:
            policies = await self._admit(name, create, explicit)
            made = NonPersistentTopic(name, self._store)
            await made.access.load()  # a fenced producer stays fenced across an unload
            topic = self._topics.get(key)  # made meanwhile by a concurrent request?
            if topic is None:
                topic = self._topics[key] = made
                self._configure(topic, policies)
                log.info("made non-persistent topic %s", name)
        topic.last_used = time.monotonic()
        return topic

    def require(self, name: TopicName) -> NonPersistentTopic:
        """A topic that exists (has been used since it was last unloaded), or 404."""
        topic = self._topics.get(str(name))
        if topic is None:
            raise TopicNotFoundError(f"Topic {name} not found")
        return topic

    def names(self, ns: NamespaceName) -> list[str]:
        prefix = f"non-persistent://{ns}/"
        return sorted(key for key in self._topics if key.startswith(prefix))

    def partitions_of(self, name: TopicName) -> list[NonPersistentTopic]:
        prefix = f"{name.partitioned_name}{PARTITION_SUFFIX}"
        found = [t for key, t in self._topics.items() if key.startswith(prefix) and t.name.partition >= 0]
        return sorted(found, key=lambda t: t.name.partition)

    def configure_namespace(self, ns: NamespaceName, policies: NamespacePolicies) -> None:
        for topic in self._topics.values():
            if topic.name.namespace_name == ns:
                self._configure(topic, policies)

    async def delete(self, name: TopicName, force: bool = False) -> None:
        """Forget the topic, disconnecting its clients with force; nothing if it is not loaded
        (as Pulsar: deleting an unknown non-persistent topic succeeds)."""
        topic = self._topics.get(str(name))
        if topic is None:
            return
        if (topic.producers or topic.subscriptions) and not force:
            count = len(topic.producers) + topic.consumer_count()
            raise PreconditionFailedError(f"Topic has {count} connected producers/consumers")
        del self._topics[str(name)]
        topic.disconnect_all()
        await topic.access.forget()

    # -- sweeps ------------------------------------------------------------------------------

    async def _rate_loop(self) -> None:
        while True:
            await asyncio.sleep(RATE_INTERVAL_S)
            now = time.monotonic()
            for i, topic in enumerate(list(self._topics.values())):
                topic.tick(now)
                if i % SLICE == SLICE - 1:
                    await asyncio.sleep(0)

    async def _unload_idle_loop(self) -> None:
        idle_s = self._idle_unload_s
        while True:
            await asyncio.sleep(max(idle_s / 4, 0.05))
            now = time.monotonic()
            for i, (key, topic) in enumerate(list(self._topics.items())):
                if self._topics.get(key) is topic and topic.idle_for(now) >= idle_s:
                    del self._topics[key]
                    self.unloaded += 1
                    log.info("unloaded idle topic %s", topic.name)
                if i % SLICE == SLICE - 1:
                    await asyncio.sleep(0)
