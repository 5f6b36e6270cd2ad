"""Which dispatch rates a topic runs under: its own (topic policies `dispatchRate`,
`subscriptionDispatchRate`) or else its namespace's, as Pulsar resolves them."""

from __future__ import annotations

from typing import Any

from taureau.broker.dispatch.rate import DispatchRate, DispatchRates
from taureau.broker.resources import NamespacePolicies
from taureau.broker.topic import PersistentTopic

TOPIC_DISPATCH_RATE = "dispatchRate"  # the topic-level overrides, Pulsar's field names
TOPIC_SUBSCRIPTION_DISPATCH_RATE = "subscriptionDispatchRate"
# One subscription's own rate, as Pulsar's TopicPolicies keep it: {sub: {"dispatchRate": {...}}}.
SUBSCRIPTION_POLICIES = "subscriptionPolicies"


def apply_dispatch_rates(topic: PersistentTopic, policies: NamespacePolicies, own: dict[str, Any]) -> None:
    """Set the topic's rates (`own`: its topic policies, Resources.get_topic_policies) and wake
    its dispatchers, so a raised or removed limit applies now rather than at the end of the
    current period."""
    own_topic, own_sub = own.get(TOPIC_DISPATCH_RATE), own.get(TOPIC_SUBSCRIPTION_DISPATCH_RATE)
    per_subscription = own.get(SUBSCRIPTION_POLICIES) or {}
    wanted = DispatchRates(
        topic=DispatchRate.from_json(own_topic) if own_topic is not None else policies.topicDispatchRate,
        subscription=DispatchRate.from_json(own_sub) if own_sub is not None else policies.subscriptionDispatchRate,
        own={name: DispatchRate.from_json(p["dispatchRate"]) for name, p in per_subscription.items()},
    )
    if wanted == topic.dispatch_rates:
        return
    topic.dispatch_rates.set(wanted.topic, wanted.subscription, wanted.own)
    for sub in list(topic.subscriptions.values()):
        sub.notify_new_entries()
