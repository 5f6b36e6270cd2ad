"""pulsar-admin's verbs for dispatch rates, subscription expiration and inactive-topic
policies, namespace- and topic-level: get-X, set-X, remove-X over one REST path each."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from taureau.cli.admin import NAMESPACE, TOPIC, VERB_HELP, _rate, _topic_path, arg, duration_seconds, verb

Target = tuple[list[str], dict]


def _minutes(text: str) -> int | float:
    """Minutes as pulsar-admin takes them; a fraction too (0.5 = 30 s), as the broker does."""
    if not re.fullmatch(r"\d+(\.\d+)?", text.strip()):
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: a number of minutes >= 0 (0: never)")
    return int(text) if text.strip().isdigit() else float(text)


def _namespace_path(a: argparse.Namespace) -> str:
    return f"/admin/v2/namespaces/{a.namespace}"


def _topic_base(a: argparse.Namespace) -> str:
    return _topic_path(a.topic)


TARGETS: dict[str, tuple[Target, Callable[[argparse.Namespace], str]]] = {
    "namespaces": (NAMESPACE, _namespace_path),
    "topics": (TOPIC, _topic_base),
}


def policy_verbs(groups: tuple[str, ...], suffix: str, path: str | Callable[[argparse.Namespace], str],
                 options: list[Target], body: Callable[[argparse.Namespace], Any], what: str,
                 topic_options: tuple[Target, ...] = ()) -> None:
    """get-`suffix`, set-`suffix` (its `options` made into a body) and remove-`suffix` of the
    policy at `path` (or path(args)) under a namespace or a topic; `topic_options` are
    added to the topic verbs (all three)."""
    def url(a: argparse.Namespace, base: Callable[[argparse.Namespace], str]) -> str:
        return f"{base(a)}/{path if isinstance(path, str) else path(a)}"

    for group in groups:
        target, base = TARGETS[group]
        more = topic_options if group == "topics" else ()
        verb(group, f"get-{suffix}", target, *more)(lambda c, a, base=base: c.call("GET", url(a, base)))
        verb(group, f"set-{suffix}", target, *more, *options)(
            lambda c, a, base=base: c.call("POST", url(a, base), body(a)))
        verb(group, f"remove-{suffix}", target, *more)(lambda c, a, base=base: c.call("DELETE", url(a, base)))
    VERB_HELP.update({f"get-{suffix}": f"show the {what}", f"set-{suffix}": f"set the {what}",
                      f"remove-{suffix}": f"drop the {what}"})


DISPATCH_OPTIONS = [
    arg("-md", "--msg-dispatch-rate", type=_rate, default=-1, help="messages per period (-1: no limit)"),
    arg("-bd", "--byte-dispatch-rate", type=_rate, default=-1, help="bytes per period (-1: no limit)"),
    arg("-dt", "--dispatch-rate-period", type=int, default=1, help="the period in seconds (default 1)"),
]


def _dispatch_body(a: argparse.Namespace) -> dict:
    return {"dispatchThrottlingRateInMsg": a.msg_dispatch_rate, "dispatchThrottlingRateInByte": a.byte_dispatch_rate,
            "ratePeriodInSecond": a.dispatch_rate_period}


policy_verbs(("namespaces", "topics"), "dispatch-rate", "dispatchRate", DISPATCH_OPTIONS, _dispatch_body,
             "dispatch rate of each topic (all its subscriptions together)")
def _subscription_rate_path(a: argparse.Namespace) -> str:
    """A topic's rate for each subscription, or with -s one subscription's own."""
    subscription = getattr(a, "subscription", None)
    return f"{quote(subscription, safe='')}/dispatchRate" if subscription else "subscriptionDispatchRate"


policy_verbs(("namespaces", "topics"), "subscription-dispatch-rate", _subscription_rate_path, DISPATCH_OPTIONS,
             _dispatch_body, "dispatch rate of each subscription (with -s: of that one)",
             topic_options=(arg("-s", "--subscription", help="one subscription's own rate"),))
policy_verbs(("namespaces",), "subscription-expiration-time", "subscriptionExpirationTime",
             [arg("-t", "--time", type=_minutes, required=True, help="minutes without a consumer (0: never)")],
             lambda a: a.time, "time after which a subscription without consumers is deleted")

INACTIVE_OPTIONS = [
    arg("-e", "--enable-delete-while-inactive", action="store_true"),
    arg("-d", "--disable-delete-while-inactive", action="store_true"),
    arg("-t", "--max-inactive-duration", type=duration_seconds, required=True, help="e.g. 60s, 5m, 1h"),
    arg("-m", "--delete-mode", required=True,
        choices=["delete_when_no_subscriptions", "delete_when_subscriptions_caught_up"]),
]


def _inactive_body(a: argparse.Namespace) -> dict:
    if a.enable_delete_while_inactive == a.disable_delete_while_inactive:
        raise ValueError("give exactly one of --enable-delete-while-inactive or --disable-delete-while-inactive")
    return {"deleteWhileInactive": a.enable_delete_while_inactive, "maxInactiveDurationSeconds": a.max_inactive_duration,
            "inactiveTopicDeleteMode": a.delete_mode}


policy_verbs(("namespaces", "topics"), "inactive-topic-policies", "inactiveTopicPolicies", INACTIVE_OPTIONS,
             _inactive_body, "inactive-topic deletion policy")

PERSISTENCE_OPTIONS = [
    arg("-e", "--bookkeeper-ensemble", type=int, required=True, help="bookies each ledger is spread over (E)"),
    arg("-w", "--bookkeeper-write-quorum", type=int, required=True, help="copies of each entry (Qw)"),
    arg("-a", "--bookkeeper-ack-quorum", type=int, required=True, help="copies acknowledged before an add is (Qa)"),
    arg("-r", "--ml-mark-delete-max-rate", type=float, default=0.0,
        help="mark-delete saves per second (stored, not applied)"),
]


def _persistence_body(a: argparse.Namespace) -> dict:
    return {"bookkeeperEnsemble": a.bookkeeper_ensemble, "bookkeeperWriteQuorum": a.bookkeeper_write_quorum,
            "bookkeeperAckQuorum": a.bookkeeper_ack_quorum, "managedLedgerMaxMarkDeleteRate": a.ml_mark_delete_max_rate}


policy_verbs(("namespaces", "topics"), "persistence", "persistence", PERSISTENCE_OPTIONS, _persistence_body,
             "persistence policy (E/Qw/Qa of the next ledgers)")
