"""The load manager's flags (Pulsar's broker.conf names, kebab-cased), shared by `taureau
broker` and `taureau standalone`."""

from __future__ import annotations

import argparse

from taureau.cli import args as checked


def _minutes(text: str) -> float:
    """Minutes as Pulsar's settings count them; fractions allowed (0.05 is 3 s)."""
    value = checked.seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: minutes must be more than 0")
    return value


def _bundles(text: str) -> int:
    from taureau.broker.ownership.bundles import MAX_BUNDLES

    value = checked.positive_int(text)
    if value > MAX_BUNDLES:
        raise argparse.ArgumentTypeError(f"{text!r}: at most {MAX_BUNDLES} bundles")
    return value


# (flag, LoadBalancerSettings field, parse, to the field's unit, help)
_FLAGS = [
    ("--load-balancer-enabled", "enabled", checked.true_or_false, None,
     "true: the load manager sheds and splits bundles"),
    ("--load-balancer-shedding-enabled", "shedding_enabled", checked.true_or_false, None,
     "true: the leader moves bundles off brokers above the average load"),
    ("--load-balancer-shedding-interval-minutes", "interval_s", _minutes, 60.0,
     "minutes between shedding (and auto split) rounds"),
    ("--load-balancer-broker-threshold-shedder-percentage", "threshold_pct", checked.seconds, None,
     "percent above the brokers' average message rate that makes a broker overloaded"),
    ("--load-balancer-shedding-grace-period-minutes", "grace_s", checked.seconds, 60.0,
     "minutes a shed bundle is not shed again"),
    ("--load-balancer-min-unload-msg-rate", "min_unload_msg_rate", checked.seconds, None,
     "messages/s above the average a broker must carry before it sheds"),
    ("--load-balancer-auto-bundle-split-enabled", "auto_split_enabled", checked.true_or_false, None,
     "true: a bundle past the topic or message rate limits below is split"),
    ("--load-balancer-namespace-bundle-max-topics", "split_max_topics", checked.positive_int, None,
     "topics that make a bundle split"),
    ("--load-balancer-namespace-bundle-max-msg-rate", "split_max_msg_rate", checked.seconds, None,
     "messages/s in and out that make a bundle split"),
    ("--load-balancer-namespace-maximum-bundles", "max_bundles", _bundles, None,
     "bundles a namespace may be split into, at most"),
]


def add_flags(p: argparse.ArgumentParser) -> None:
    from taureau.broker.ownership.settings import LoadBalancerSettings

    defaults = LoadBalancerSettings()
    for flag, field, parse, unit, text in _FLAGS:
        default = getattr(defaults, field)
        shown = default / unit if unit else default
        if isinstance(shown, bool):
            shown = str(shown).lower()
        metavar = "true|false" if parse is checked.true_or_false else "N"
        p.add_argument(flag, dest=f"lb_{field}", type=parse, default=None, metavar=metavar,
                       help=f"{text} (default {shown})")


def settings(args: argparse.Namespace):
    """The LoadBalancerSettings the flags give (defaults where not given)."""
    from taureau.broker.ownership.settings import LoadBalancerSettings

    given = {}
    for _flag, field, _parse, unit, _text in _FLAGS:
        value = getattr(args, f"lb_{field}")
        if value is not None:
            given[field] = value * unit if unit else value
    return LoadBalancerSettings(**given)
