"""Producer access modes: who may produce to a topic (Pulsar's ProducerAccessMode).

- Shared: any number of Shared producers, refused (ProducerBusy) while an exclusive one holds
  the topic or waits for it.
- Exclusive: refused (ProducerFenced) while any other producer is connected or waiting.
- ExclusiveWithFencing: fences every connected producer (they are closed, and their
  reconnection is refused because the epoch moved) and every waiting one, then takes over.
- WaitForExclusive: queued while the topic has producers; answered "not ready" at once and
  made the exclusive producer, in arrival order, when the last producer before it leaves.

Each time an exclusive producer takes the topic, the topic epoch goes up (stored in the
metadata store, so a restart cannot hand out an epoch twice) and is sent to that producer,
which presents it when it reconnects: a producer whose epoch is older than the topic's was
fenced out and is refused (ProducerFenced).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping
from enum import IntEnum
from typing import NamedTuple

from taureau.broker.producer import Producer
from taureau.common.errors import BrokerError, ProducerBusyError
from taureau.metadata.store import MetadataStore

ROOT = "/topic-epochs"
# WaitForExclusive producers queued per topic at most; more are refused (ProducerBusy, which
# clients retry), so no client can make a topic hold an endless queue.
MAX_WAITING = 1000


class AccessMode(IntEnum):
    SHARED = 0
    EXCLUSIVE = 1
    WAIT_FOR_EXCLUSIVE = 2
    EXCLUSIVE_WITH_FENCING = 3


class ProducerFencedError(BrokerError):
    """An exclusive producer holds the topic, or took it over from this one."""


class Admitted(NamedTuple):
    epoch: int | None  # the topic epoch to tell an exclusive producer; None for Shared


class Queued(NamedTuple):
    ready: asyncio.Future[int]  # resolves with the epoch once the producer holds the topic


class ProducerAccess:
    """Owns the exclusive holder, the waiting producers and the topic epoch of one topic."""

    def __init__(self, store: MetadataStore, storage_name: str) -> None:
        self._store = store
        self._path = f"{ROOT}/{storage_name}"
        self.epoch = -1  # no exclusive producer ever held this topic
        self.exclusive: Producer | None = None
        self._waiting: deque[tuple[Producer, asyncio.Future[int]]] = deque()

    async def load(self) -> None:
        found = await self._store.get(self._path)
        if found is not None:
            self.epoch = int(json.loads(found[0])["epoch"])

    async def forget(self) -> None:
        await self._store.delete_recursive(self._path)

    def check_new(self, producer: Producer, producers: Mapping[str, Producer], max_producers: int,
                  topic: str, requested_epoch: int | None) -> None:
        """Every check a topic (of either kind) makes of a new producer: its name is free, the
        topic is under its producer limit (0: none), and its access mode allows it now."""
        if producer.name in producers:
            raise ProducerBusyError(f"producer {producer.name!r} is already connected to {topic}")
        if max_producers and len(producers) >= max_producers:
            # Pulsar's words, which clients and operators search for.
            raise ProducerBusyError(f"Topic reached max producers limit ({max_producers}): {topic}")
        self.check(producer, producers, requested_epoch)

    async def add(
        self, producer: Producer, producers: dict[str, Producer], requested_epoch: int | None
    ) -> Admitted | Queued:
        """Admit `producer` into the topic's `producers` (checked by check_new first): Admitted
        (with the topic epoch for an exclusive one), or Queued (WaitForExclusive) with a future
        that resolves once it holds the topic (it is added then). Producers an
        ExclusiveWithFencing one fences out are dropped and told to reconnect, which their
        epoch then refuses."""
        admission, fenced = await self.admit(producer, producers, requested_epoch)
        for old in fenced:
            if producers.get(old.name) is old:
                del producers[old.name]
            if old.disconnect is not None:
                old.disconnect()
        if isinstance(admission, Admitted):
            producers[producer.name] = producer
        return admission

    def remove(self, producer: Producer, producers: dict[str, Producer]) -> None:
        """`producer` left the topic's `producers`; the first waiting one takes the topic
        once no producer is left."""
        if producers.get(producer.name) is producer:
            del producers[producer.name]
        self.release(producer)
        if self.has_waiting and not producers:
            asyncio.get_running_loop().create_task(self._promote_into(producers))

    async def _promote_into(self, producers: dict[str, Producer]) -> None:
        promoted = await self.promote(producers)
        if promoted is not None:
            producers[promoted.name] = promoted

    def check(
        self, producer: Producer, producers: Mapping[str, Producer], requested_epoch: int | None
    ) -> None:
        """Raise if `producer` may not produce now (or ever); changes nothing."""
        mode = producer.access_mode
        held = self.exclusive is not None or bool(self._waiting)
        if mode == AccessMode.SHARED:
            if held:
                raise ProducerBusyError(f"the topic has an exclusive producer: {self._holder_name()}")
            return
        if requested_epoch is not None and requested_epoch < self.epoch:
            raise ProducerFencedError(
                f"the topic epoch moved to {self.epoch} past this producer's {requested_epoch}: it was fenced"
            )
        if mode == AccessMode.EXCLUSIVE and (held or producers):
            raise ProducerFencedError(
                f"the topic has an exclusive producer: {self._holder_name()}"
                if held
                else "the topic has shared producers"
            )

    async def admit(
        self, producer: Producer, producers: Mapping[str, Producer], requested_epoch: int | None
    ) -> tuple[Admitted | Queued, list[Producer]]:
        """Admit `producer` (check first). Returns how, and the producers it fences out, which
        the topic must drop and disconnect."""
        self.check(producer, producers, requested_epoch)
        mode = producer.access_mode
        if mode == AccessMode.SHARED:
            return Admitted(None), []
        fenced: list[Producer] = []
        if mode == AccessMode.WAIT_FOR_EXCLUSIVE and (
            self.exclusive is not None or producers or self._waiting
        ):
            if len(self._waiting) >= MAX_WAITING:
                raise ProducerBusyError(f"{MAX_WAITING} producers already wait for exclusive access")
            ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._waiting.append((producer, ready))
            return Queued(ready), []
        if mode == AccessMode.EXCLUSIVE_WITH_FENCING:
            fenced = list(producers.values())
            waiting, self._waiting = self._waiting, deque()
            for _, ready in waiting:
                if not ready.done():
                    ready.set_exception(ProducerFencedError("fenced out by an ExclusiveWithFencing producer"))
        epoch = await self._take(producer, requested_epoch)
        return Admitted(epoch), fenced

    async def _take(self, producer: Producer, requested_epoch: int | None) -> int:
        self.exclusive = producer
        epoch = (
            requested_epoch
            if requested_epoch is not None and requested_epoch >= self.epoch
            else self.epoch + 1
        )
        if epoch != self.epoch:
            self.epoch = epoch
            await self._store.put(self._path, json.dumps({"epoch": epoch}).encode())
        return epoch

    def release(self, producer: Producer) -> None:
        """`producer` left the topic (closed, fenced, or its connection went)."""
        if self.exclusive is producer:
            self.exclusive = None
        for entry in list(self._waiting):
            if entry[0] is producer:
                self._waiting.remove(entry)
                if not entry[1].done():
                    entry[1].cancel()

    @property
    def has_waiting(self) -> bool:
        return bool(self._waiting)

    async def promote(self, producers: Mapping[str, Producer]) -> Producer | None:
        """Once the topic has no producer, make the first waiting one its exclusive producer
        (it resolves its `ready` future); that producer, or None."""
        while self._waiting and self.exclusive is None and not producers:
            producer, ready = self._waiting.popleft()
            if ready.done():
                continue  # gave up meanwhile
            epoch = await self._take(producer, None)
            ready.set_result(epoch)
            return producer
        return None

    def _holder_name(self) -> str:
        if self.exclusive is not None:
            return self.exclusive.name
        return self._waiting[0][0].name if self._waiting else "?"
