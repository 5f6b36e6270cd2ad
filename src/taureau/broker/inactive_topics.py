"""Inactive-topic deletion (Pulsar's inactiveTopicPolicies, brokerDeleteInactiveTopics*).

A topic with no producer and no consumer, nothing asked of it for `maxInactiveDurationSeconds`,
and which meets the delete mode, is deleted with its ledgers by the policy check:
- delete_when_no_subscriptions: it has no durable subscription left;
- delete_when_subscriptions_caught_up: every subscription has read everything.
A partition is deleted like any topic; the partitioned topic's metadata goes only once no
partition is left (every one qualified), as Pulsar does.

This module holds the policy value and the decision; the broker service deletes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from taureau.broker.compaction.topic_compaction import CURSOR as COMPACTION_CURSOR
from taureau.broker.policy_json import integer, json_object
from taureau.common.errors import TaureauError
from taureau.common.names import TopicName

if TYPE_CHECKING:
    from taureau.broker.resources import NamespacePolicies
    from taureau.broker.topic import PersistentTopic

log = logging.getLogger(__name__)

TOPIC_INACTIVE_POLICIES = "inactiveTopicPolicies"  # the topic-level override, Pulsar's field name
DELETE_MODES = ("delete_when_no_subscriptions", "delete_when_subscriptions_caught_up")
MAX_INACTIVE_S = 10 * 365 * 86_400  # a bound, so a typo cannot overflow a timer


@dataclass(slots=True, frozen=True)
class InactiveTopicPolicies:
    """Pulsar's InactiveTopicPolicies JSON."""

    inactiveTopicDeleteMode: str = "delete_when_no_subscriptions"  # noqa: N815 - Pulsar's names
    maxInactiveDurationSeconds: int = 60  # noqa: N815
    deleteWhileInactive: bool = False  # noqa: N815

    @classmethod
    def from_json(cls, data: Any) -> InactiveTopicPolicies:
        json_object(data, {"inactiveTopicDeleteMode", "maxInactiveDurationSeconds", "deleteWhileInactive"},
                    "inactive topic policies")
        mode = data.get("inactiveTopicDeleteMode", "delete_when_no_subscriptions")
        if mode not in DELETE_MODES:
            raise ValueError(f"inactiveTopicDeleteMode must be one of {', '.join(DELETE_MODES)}, got {mode!r}")
        duration = integer(data.get("maxInactiveDurationSeconds", 60), "maxInactiveDurationSeconds", 1, MAX_INACTIVE_S)
        enabled = data.get("deleteWhileInactive", False)
        if not isinstance(enabled, bool):
            raise ValueError(f"deleteWhileInactive must be true or false, got {enabled!r}")
        return cls(mode, duration, enabled)


class Deleter(Protocol):
    """What the reaper needs of the broker service."""

    async def delete_topic(self, name: TopicName, force: bool = False) -> None: ...

    async def delete_partitioned_topic(self, name: TopicName, force: bool = False) -> None: ...

    async def stored_partitions(self, name: TopicName) -> list[TopicName]: ...


class InactiveTopics:
    """Finds and deletes inactive topics, one policy check at a time.

    Inactivity is measured here, not by the topic: since the first check that saw the topic
    without producers or consumers and with no message published or dispatched since the
    check before (an admin reading its stats does not make it active, as in Pulsar). A topic
    that meets its delete mode is `pinned`: the idle-topic unload leaves it loaded, else an
    unload (60 s by default) would restart the count on every load and it would never go.
    """

    def __init__(self, defaults: InactiveTopicPolicies, service: Deleter) -> None:
        self._defaults = defaults
        self._service = service
        self._seen: dict[str, tuple[float, int, int]] = {}  # topic -> (idle since, msg in, msg out)
        self.pinned: set[str] = set()  # topics waiting out their inactive duration
        self.deleted = 0  # topics deleted so far (stats, tests)

    def policy_of(self, own: dict[str, Any], policies: NamespacePolicies) -> InactiveTopicPolicies:
        """The topic's own policy (from its topic policies `own`), its namespace's, or the broker's."""
        if own.get(TOPIC_INACTIVE_POLICIES) is not None:
            return InactiveTopicPolicies.from_json(own[TOPIC_INACTIVE_POLICIES])
        return policies.inactive_topic_policies or self._defaults

    async def check(self, topic: PersistentTopic, policies: NamespacePolicies, own: dict[str, Any], now: float) -> bool:
        """Whether `topic` qualifies for deletion now, `own` being its topic policies. Call
        for every loaded topic, then `delete` those that qualify, then `forget`."""
        key = str(topic.name)
        policy = self.policy_of(own, policies)
        counters = (topic.msg_in, sum(s.msg_out for s in topic.subscriptions.values()))
        compacting = topic.compaction is not None and topic.compaction.running
        busy = (topic.producers or topic.access.has_waiting or compacting
                or any(s.consumers for s in topic.subscriptions.values()))
        seen = self._seen.get(key)
        if not policy.deleteWhileInactive or busy or not _mode_met(topic, policy.inactiveTopicDeleteMode):
            self._seen.pop(key, None)
            self.pinned.discard(key)
            return False
        if seen is None or seen[1:] != counters:
            self._seen[key] = (now, *counters)
            self.pinned.add(key)
            return False
        return now - seen[0] >= policy.maxInactiveDurationSeconds

    async def delete(self, qualified: list[PersistentTopic]) -> None:
        """Delete the qualified topics; partitions only when every stored one qualified."""
        names = {str(t.name) for t in qualified}
        done: set[str] = set()
        for topic in qualified:
            name = topic.name
            try:
                if name.partition < 0:
                    await self._service.delete_topic(name)
                    self.deleted += 1
                    log.info("deleted inactive topic %s", name)
                elif name.partitioned_name not in done:
                    done.add(name.partitioned_name)
                    base = TopicName.parse(name.partitioned_name)
                    partitions = await self._service.stored_partitions(base)
                    if all(str(p) in names for p in partitions):
                        await self._service.delete_partitioned_topic(base)
                        self.deleted += len(partitions)
                        log.info("deleted inactive partitioned topic %s", base)
            except TaureauError as exc:  # a client came back meanwhile, or it was deleted already
                log.info("inactive topic %s not deleted: %s", name, exc)

    def forget(self, loaded: list[PersistentTopic]) -> None:
        """Drop what is known of topics no longer loaded (deleted, or unloaded: not pinned)."""
        keep = {str(t.name) for t in loaded if not t.closed}
        for key in [k for k in self._seen if k not in keep]:
            del self._seen[key]
        self.pinned &= keep


def _mode_met(topic: PersistentTopic, mode: str) -> bool:
    durable = [s for name, s in topic.subscriptions.items() if s.durable and name != COMPACTION_CURSOR]
    if mode == "delete_when_no_subscriptions":
        return not durable
    return all(s.cursor.backlog == 0 for s in durable)
