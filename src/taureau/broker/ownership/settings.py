"""The load manager's settings (docs/cluster.md), apart so the broker's configuration holds
them without importing the load manager."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoadBalancerSettings:
    """Pulsar's broker.conf names, where Pulsar has the setting."""

    enabled: bool = True  # loadBalancerEnabled: shedding and auto split run at all
    shedding_enabled: bool = True  # loadBalancerSheddingEnabled
    interval_s: float = 60.0  # loadBalancerSheddingIntervalMinutes (and the auto split check)
    threshold_pct: float = 10.0  # loadBalancerBrokerThresholdShedderPercentage
    grace_s: float = 1800.0  # loadBalancerSheddingGracePeriodMinutes: a shed bundle stays put this long
    # Taureau's: a broker sheds only when it is this many messages/s above the average (Pulsar's
    # loadBalancerBundleUnloadMinThroughputThreshold, counted in messages instead of bytes).
    min_unload_msg_rate: float = 100.0
    auto_split_enabled: bool = True  # loadBalancerAutoBundleSplitEnabled
    split_max_topics: int = 1000  # loadBalancerNamespaceBundleMaxTopics
    split_max_msg_rate: float = 30000.0  # loadBalancerNamespaceBundleMaxMsgRate
    max_bundles: int = 128  # loadBalancerNamespaceMaximumBundles
