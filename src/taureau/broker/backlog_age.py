"""Time-based backlog quotas (Pulsar's backlogQuotaType `message_age`, `limitTime` seconds):
the age of a topic's backlog is the age of the oldest message its slowest durable
subscription has not acknowledged, read from that message's publish time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taureau.broker.compaction.topic_compaction import CURSOR as COMPACTION_CURSOR
from taureau.broker.entries import publish_time

if TYPE_CHECKING:
    from taureau.broker.resources import NamespacePolicies
    from taureau.broker.topic import PersistentTopic

MESSAGE_AGE = "message_age"


def age_quota_of(policies: NamespacePolicies) -> dict[str, Any] | None:
    quota = policies.backlog_quota_map.get(MESSAGE_AGE)
    return quota if quota and quota.get("limitTime", -1) > 0 else None


async def oldest_backlog_age_s(topic: PersistentTopic, now_ms: int) -> float:
    """Seconds since the oldest unacknowledged message of the slowest durable subscription was
    published; 0 with no backlog. One entry read (usually from the cache)."""
    durable = [s for name, s in topic.subscriptions.items()
               if s.durable and name != COMPACTION_CURSOR and s.cursor.backlog > 0]
    if not durable:
        return 0.0
    slowest = min(durable, key=lambda s: s.cursor.mark_delete_position)
    entries = await slowest.cursor.peek(1)
    if not entries:
        return 0.0
    return max(now_ms - publish_time(entries[0].data), 0) / 1000
