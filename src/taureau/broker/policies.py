"""Namespace policies the broker enforces on a timer: message TTL, backlog quotas,
subscription expiration (broker.subscription_expiration) and inactive-topic deletion
(broker.inactive_topics).

- Message TTL (`message_ttl_in_seconds`, or a topic's own `messageTTL`): every subscription
  acknowledges the messages published longer ago than the TTL, as Pulsar's expiry monitor
  does (consumers holding them get no redelivery of them).
- Backlog quota (`backlog_quota_map["destination_storage"]`): when the backlog of the slowest
  subscription is larger than `limitSize` bytes, `producer_request_hold` and
  `producer_exception` disconnect the topic's producers and refuse new ones (with
  ProducerBlockedQuotaExceededError, which clients retry, or ...Exception, which they do not)
  until consumers catch up; `consumer_backlog_eviction` moves the slowest subscriptions
  forward until the backlog fits.
- Time-based backlog quota (`backlog_quota_map["message_age"]`, broker.backlog_age): the same
  three policies when the oldest unacknowledged message of the slowest subscription is older
  than `limitTime` seconds; eviction moves every subscription past the messages older than it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from taureau.broker.backlog_age import MESSAGE_AGE, age_quota_of, oldest_backlog_age_s
from taureau.broker.compaction.topic_compaction import CURSOR as COMPACTION_CURSOR
from taureau.broker.inactive_topics import InactiveTopics
from taureau.broker.resources import NamespacePolicies, Resources
from taureau.broker.subscription_expiration import expire_subscriptions
from taureau.broker.topic import PersistentTopic
from taureau.common.errors import BrokerError
from taureau.storage.position import Position

log = logging.getLogger(__name__)

TOPIC_TTL = "messageTTLInSeconds"  # the topic-level override, Pulsar's field name
SLICE = 200  # topics checked per loop turn at most
EVICTION_ROUNDS = 8  # slowest subscriptions moved per check, at most


class ProducerBlockedQuotaExceededError(BrokerError):
    """The backlog quota holds producers back (producer_request_hold): clients retry."""


class ProducerBlockedQuotaExceededException(BrokerError):
    """The backlog quota refuses producers (producer_exception): clients give up."""


def quota_of(policies: NamespacePolicies) -> dict | None:
    quota = policies.backlog_quota_map.get("destination_storage")
    return quota if quota and quota.get("limitSize", -1) >= 0 else None


async def check_producer_quota(topic: PersistentTopic, policies: NamespacePolicies) -> None:
    """Refuse a new producer while the topic's backlog is over a producer-blocking quota."""
    for _, reason, quota in await _over_quotas(topic, policies, int(time.time() * 1000)):
        if quota["policy"] == "producer_exception":
            raise ProducerBlockedQuotaExceededException(reason)
        if quota["policy"] == "producer_request_hold":
            raise ProducerBlockedQuotaExceededError(reason)


async def _over_quotas(topic: PersistentTopic, policies: NamespacePolicies, now_ms: int) -> list[tuple[str, str, dict]]:
    """(quota type, why, the quota) of each quota the topic's backlog is over."""
    over = []
    quota = quota_of(policies)
    backlog = topic.ledger.estimated_backlog_size
    if quota is not None and backlog > quota["limitSize"]:
        over.append(("destination_storage", f"the backlog of {topic.name} ({backlog} bytes) is over its quota of "
                                            f"{quota['limitSize']} bytes", quota))
    quota = age_quota_of(policies)
    if quota is not None:
        age = await oldest_backlog_age_s(topic, now_ms)
        if age > quota["limitTime"]:
            over.append((MESSAGE_AGE, f"the oldest message in the backlog of {topic.name} ({age:.0f} s old) is over "
                                      f"its quota of {quota['limitTime']} s", quota))
    return over


class PolicyEnforcer:
    def __init__(self, resources: Resources, inactive: InactiveTopics) -> None:
        self._resources = resources
        self._inactive = inactive

    async def check(self, topics: list[PersistentTopic]) -> None:
        by_namespace: dict[str, NamespacePolicies] = {}
        now_ms, now = int(time.time() * 1000), time.monotonic()
        inactive: list[PersistentTopic] = []
        for i, topic in enumerate(topics):
            if i % SLICE == SLICE - 1:
                await asyncio.sleep(0)  # many topics: let the loop serve clients in between
            if topic.closed:
                continue
            ns = str(topic.name.namespace_name)
            if ns not in by_namespace:
                by_namespace[ns] = await self._resources.get_policies(topic.name.namespace_name)
            policies = by_namespace[ns]
            try:
                own = await self._resources.get_topic_policies(topic.name)  # one read for all of them
                await self._expire(topic, policies, own.get(TOPIC_TTL))
                await expire_subscriptions(topic, policies.subscription_expiration_time_minutes, now_ms)
                await self._enforce_quota(topic, policies, now_ms)
                if await self._inactive.check(topic, policies, own, now):
                    inactive.append(topic)
            except BrokerError as exc:
                log.warning("policies of %s not applied: %s", topic.name, exc)
        await self._inactive.delete(inactive)
        self._inactive.forget(topics)

    async def _expire(self, topic: PersistentTopic, policies: NamespacePolicies, own: int | None) -> None:
        ttl = policies.message_ttl_in_seconds if own is None else int(own)
        if ttl <= 0 or topic.ledger.entries_count == 0:
            return
        await _expire_before(topic, int(time.time() * 1000) - ttl * 1000)

    async def _enforce_quota(self, topic: PersistentTopic, policies: NamespacePolicies, now_ms: int) -> None:
        for kind, _, quota in await _over_quotas(topic, policies, now_ms):
            if quota["policy"] != "consumer_backlog_eviction":
                for producer in list(topic.producers.values()):
                    topic.remove_producer(producer)
                    if producer.disconnect is not None:
                        producer.disconnect()  # they come back and are refused until it fits
            elif kind == MESSAGE_AGE:  # every subscription moves past the messages older than the limit
                await _expire_before(topic, now_ms - quota["limitTime"] * 1000)
            else:
                await self._evict_by_size(topic, quota)

    async def _evict_by_size(self, topic: PersistentTopic, quota: dict) -> None:
        for _ in range(EVICTION_ROUNDS):
            ledger = topic.ledger
            excess = ledger.estimated_backlog_size - quota["limitSize"]
            durable = [s for s in topic.subscriptions.values() if s.durable and s.name != COMPACTION_CURSOR]
            if excess <= 0 or not durable or ledger.entries_count == 0:
                return
            slowest = min(durable, key=lambda s: s.cursor.mark_delete_position)
            average = max(ledger.total_size // ledger.entries_count, 1)
            skip = max(1, -(-excess // average))
            log.info("backlog quota of %s: evicting %d entries from subscription %s", topic.name, skip, slowest.name)
            await slowest.skip(min(skip, max(slowest.cursor.backlog, 1)))


async def _expire_before(topic: PersistentTopic, timestamp_ms: int) -> None:
    """Every subscription acknowledges the messages published before `timestamp_ms`."""
    first_live = await topic.position_for_time(timestamp_ms)
    expired = Position(first_live.ledger_id, first_live.entry_id - 1)  # just before it
    for sub in list(topic.subscriptions.values()):
        if sub.name != COMPACTION_CURSOR and sub.cursor.mark_delete_position < expired:
            await sub.expire_to(expired)
