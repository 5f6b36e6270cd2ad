"""Subscription expiration (Pulsar's subscription_expiration_time_minutes): a durable
subscription with no consumer connected for longer than the namespace's limit is deleted by
the policy check, with its cursor, so its backlog no longer holds the topic's ledgers.

"Last active" is when a consumer last came or went (Subscription marks the cursor), kept in
the cursor's record, so a restart or an idle-topic unload does not start the count again.
While consumers are connected the check marks it too, so a crash does not make a busy
subscription look idle since it attached. Only loaded topics are checked: the subscriptions
of a topic unloaded while idle expire at the check after its next load.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from taureau.broker.compaction.topic_compaction import CURSOR as COMPACTION_CURSOR

if TYPE_CHECKING:
    from taureau.broker.topic import PersistentTopic

log = logging.getLogger(__name__)

MAX_MINUTES = 10 * 365 * 24 * 60


def check_expiration_minutes(value: Any, what: str = "subscription expiration time") -> int | float:
    """Minutes, 0 for never. Pulsar takes whole minutes; a fraction is accepted too (0.1 is
    6 s), for short-lived subscriptions and tests."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_MINUTES \
            or math.isnan(value):
        raise ValueError(f"{what} must be a number of minutes from 0 (never) to {MAX_MINUTES}, got {value!r}")
    return value


async def expire_subscriptions(topic: PersistentTopic, minutes: float, now_ms: int) -> list[str]:
    """Delete the topic's durable subscriptions idle for more than `minutes`; their names."""
    if minutes <= 0:
        return []
    expired = []
    for sub in list(topic.subscriptions.values()):
        if not sub.durable or sub.name == COMPACTION_CURSOR:
            continue
        if sub.consumers:
            sub.cursor.mark_active(now_ms)
            continue
        if now_ms - sub.cursor.last_active_ms > minutes * 60_000:
            log.info("subscription %s of %s had no consumer for %d minute(s): deleted", sub.name, topic.name, minutes)
            await topic.unsubscribe(sub.name)
            expired.append(sub.name)
    return expired
