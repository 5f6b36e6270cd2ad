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

from dataclasses import dataclass
from typing import Any

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
        if not isinstance(data, dict):
            raise ValueError("inactive topic policies are a JSON object")
        unknown = set(data) - {"inactiveTopicDeleteMode", "maxInactiveDurationSeconds", "deleteWhileInactive"}
        if unknown:
            raise ValueError(f"unknown inactive topic policy field(s) {sorted(unknown)}")
        mode = data.get("inactiveTopicDeleteMode", "delete_when_no_subscriptions")
        if mode not in DELETE_MODES:
            raise ValueError(f"inactiveTopicDeleteMode must be one of {', '.join(DELETE_MODES)}, got {mode!r}")
        duration = data.get("maxInactiveDurationSeconds", 60)
        if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= MAX_INACTIVE_S:
            raise ValueError(f"maxInactiveDurationSeconds must be an integer from 1 to {MAX_INACTIVE_S}, "
                             f"got {duration!r}")
        enabled = data.get("deleteWhileInactive", False)
        if not isinstance(enabled, bool):
            raise ValueError(f"deleteWhileInactive must be true or false, got {enabled!r}")
        return cls(mode, duration, enabled)
