"""`taureau admin`: the verbs of `pulsar-admin` for tenants, namespaces and topics, over REST."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any

import httpx

from taureau.cli import args as checked
from taureau.common.errors import TaureauError
from taureau.common.names import TopicName


class AdminError(Exception):
    pass


class AdminClient:
    """A thin synchronous client for the /admin/v2 API."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=30.0)

    def call(self, method: str, path: str, body: Any = None, params: dict | None = None, *,
             files: dict | None = None, form: dict | None = None, content: bytes | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=body if body is not None else None, params=params,
                                         files=files, data=form, content=content)
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach the admin API at {self.http.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                reason = response.json().get("reason") or response.json().get("detail")
            except ValueError:
                reason = response.text
            raise AdminError(f"{response.status_code}: {reason}")
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response


def _topic_path(topic: str) -> str:
    name = TopicName.parse(topic)
    return f"/admin/v2/{name.domain}/{name.tenant}/{name.namespace}/{name.local}"


def _duration_minutes(text: str) -> float:
    """'-1', '0', '90' (minutes), '10m', '2h', '3d', '1w' -> minutes."""
    match = re.fullmatch(r"(-1|\d+)([smhdw]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 30m, 2h, 7d, -1)")
    value, unit = int(match.group(1)), match.group(2) or "m"
    if value < 0:
        return -1
    return value * {"s": 1 / 60, "m": 1, "h": 60, "d": 1440, "w": 10080}[unit]


_BINARY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _size_mb(text: str) -> int:
    """A pulsar-admin size as whole MiB: '-1' (unlimited), bytes, or a number with k, m, g or t,
    which pulsar-admin reads as binary units (1G = 1024 MiB)."""
    match = re.fullmatch(r"(-1|\d+)([kKmMgGtT]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 100M, 10G, -1)")
    value, unit = int(match.group(1)), match.group(2).lower()
    if value < 0:
        return -1
    return value * _BINARY_UNITS[unit] // (1024 * 1024)


def _message_id(text: str) -> dict:
    if text == "earliest":
        return {"ledgerId": -1, "entryId": -1}
    if text == "latest":
        return {"ledgerId": 2**63 - 1, "entryId": 2**63 - 1}
    ledger, _, entry = text.partition(":")
    if not (ledger.isdigit() and entry.isdigit()):
        raise argparse.ArgumentTypeError("message id must be earliest, latest or LEDGER:ENTRY")
    return {"ledgerId": int(ledger), "entryId": int(entry)}


def _time_ms(text: str) -> int:
    """An absolute ms timestamp, or a relative duration back from now ('10m', '1h')."""
    if text.isdigit() and len(text) >= 10:
        return int(text)
    return int(time.time() * 1000 - _duration_minutes(text) * 60_000)


# (group, verb) -> (arguments, handler(client, args) -> output)
VERBS: dict[tuple[str, str], tuple[list[tuple[list[str], dict]], Any]] = {}


def verb(group: str, name: str, *arguments: tuple[list[str], dict]):
    def register(fn):
        VERBS[(group, name)] = (list(arguments), fn)
        return fn

    return register


def arg(*names: str, **kwargs) -> tuple[list[str], dict]:
    return list(names), kwargs


TENANT = arg("tenant", type=checked.tenant)
NAMESPACE = arg("namespace", type=checked.namespace, help="tenant/namespace")
TOPIC = arg("topic", type=checked.topic, help="e.g. persistent://public/default/my-topic, or my-topic")
SUB = arg("-s", "--subscription", required=True)


# Verbs that are one REST call with no body: (group, verb) -> (method, path, arguments).
# `{topic}` in a path is the topic's REST path; other fields come from the arguments.
SIMPLE_VERBS = {
    ("tenants", "list"): ("GET", "/admin/v2/tenants", []),
    ("tenants", "get"): ("GET", "/admin/v2/tenants/{tenant}", [TENANT]),
    ("tenants", "delete"): ("DELETE", "/admin/v2/tenants/{tenant}", [TENANT]),
    ("namespaces", "list"): ("GET", "/admin/v2/namespaces/{tenant}", [TENANT]),
    ("namespaces", "policies"): ("GET", "/admin/v2/namespaces/{namespace}", [NAMESPACE]),
    ("namespaces", "create"): ("PUT", "/admin/v2/namespaces/{namespace}", [NAMESPACE]),
    ("namespaces", "delete"): ("DELETE", "/admin/v2/namespaces/{namespace}", [NAMESPACE]),
    ("namespaces", "topics"): ("GET", "/admin/v2/namespaces/{namespace}/topics", [NAMESPACE]),
    ("namespaces", "get-retention"): ("GET", "/admin/v2/namespaces/{namespace}/retention", [NAMESPACE]),
    ("namespaces", "get-auto-topic-creation"): (
        "GET", "/admin/v2/namespaces/{namespace}/autoTopicCreation", [NAMESPACE]
    ),
    ("namespaces", "get-deduplication"): ("GET", "/admin/v2/namespaces/{namespace}/deduplication", [NAMESPACE]),
    ("topics", "list"): ("GET", "/admin/v2/persistent/{namespace}", [NAMESPACE]),
    ("topics", "list-partitioned-topics"): ("GET", "/admin/v2/persistent/{namespace}/partitioned", [NAMESPACE]),
    ("topics", "create"): ("PUT", "{topic}", [TOPIC]),
    ("topics", "stats"): ("GET", "{topic}/stats", [TOPIC]),
    ("topics", "stats-internal"): ("GET", "{topic}/internalStats", [TOPIC]),
    ("topics", "last-message-id"): ("GET", "{topic}/lastMessageId", [TOPIC]),
    ("topics", "get-partitioned-topic-metadata"): ("GET", "{topic}/partitions", [TOPIC]),
    ("topics", "partitioned-stats"): ("GET", "{topic}/partitioned-stats", [TOPIC]),
    ("topics", "subscriptions"): ("GET", "{topic}/subscriptions", [TOPIC]),
    ("topics", "clear-backlog"): ("POST", "{topic}/subscription/{subscription}/skip_all", [TOPIC, SUB]),
}  # fmt: skip


def _simple(method: str, path: str):
    def call(c, a):
        fields = dict(vars(a))
        if "topic" in fields:
            fields["topic"] = _topic_path(a.topic)
        return c.call(method, path.format(**fields))

    return call


for (_group, _name), (_method, _path, _arguments) in SIMPLE_VERBS.items():
    verb(_group, _name, *_arguments)(_simple(_method, _path))


def _tenant_body(a) -> dict:
    return {
        "adminRoles": [r for r in (a.admin_roles or "").split(",") if r],
        "allowedClusters": [r for r in (a.allowed_clusters or "standalone").split(",") if r],
    }


TENANT_OPTS = [arg("-r", "--admin-roles", default=""), arg("-c", "--allowed-clusters", default="standalone")]


@verb("tenants", "create", TENANT, *TENANT_OPTS)
def _(c, a):
    return c.call("PUT", f"/admin/v2/tenants/{a.tenant}", _tenant_body(a))


@verb("tenants", "update", TENANT, *TENANT_OPTS)
def _(c, a):
    return c.call("POST", f"/admin/v2/tenants/{a.tenant}", _tenant_body(a))


@verb(
    "namespaces",
    "set-retention",
    NAMESPACE,
    arg("--time", type=_duration_minutes, required=True, help="e.g. 30m, 2h, 7d, -1 (forever)"),
    arg("--size", type=_size_mb, required=True, help="e.g. 100M, 10G, -1 (unlimited)"),
)
def _(c, a):
    body = {"retentionTimeInMinutes": int(a.time), "retentionSizeInMB": a.size}
    return c.call("POST", f"/admin/v2/namespaces/{a.namespace}/retention", body)


@verb(
    "namespaces",
    "set-auto-topic-creation",
    NAMESPACE,
    arg("--enable", action="store_true"),
    arg("--disable", action="store_true"),
    arg("--type", default="non-partitioned", choices=["non-partitioned", "partitioned"]),
    arg("--num-partitions", type=int, default=1),
)
def _(c, a):
    if a.enable == a.disable:
        raise AdminError("give exactly one of --enable or --disable")
    body = {
        "allowAutoTopicCreation": a.enable,
        "topicType": a.type,
        "defaultNumPartitions": a.num_partitions,
    }
    return c.call("POST", f"/admin/v2/namespaces/{a.namespace}/autoTopicCreation", body)


@verb(
    "namespaces",
    "set-deduplication",
    NAMESPACE,
    arg("--enable", action="store_true"),
    arg("--disable", action="store_true"),
)
def _(c, a):
    if a.enable == a.disable:
        raise AdminError("give exactly one of --enable or --disable")
    return c.call("POST", f"/admin/v2/namespaces/{a.namespace}/deduplication", a.enable)


@verb("topics", "set-deduplication", TOPIC, arg("--enable", action="store_true"), arg("--disable", action="store_true"))
def _(c, a):
    if a.enable == a.disable:
        raise AdminError("give exactly one of --enable or --disable")
    return c.call("POST", _topic_path(a.topic) + "/deduplication", a.enable)


@verb("topics", "get-deduplication", TOPIC)
def _(c, a):
    return c.call("GET", _topic_path(a.topic) + "/deduplication")


@verb("topics", "remove-deduplication", TOPIC)
def _(c, a):
    return c.call("DELETE", _topic_path(a.topic) + "/deduplication")


@verb("topics", "delete", TOPIC, arg("-f", "--force", action="store_true"))
def _(c, a):
    return c.call("DELETE", _topic_path(a.topic), params={"force": str(a.force).lower()})


@verb("topics", "create-partitioned-topic", TOPIC, arg("-p", "--partitions", type=int, required=True))
def _(c, a):
    return c.call("PUT", _topic_path(a.topic) + "/partitions", a.partitions)


@verb("topics", "update-partitioned-topic", TOPIC, arg("-p", "--partitions", type=int, required=True))
def _(c, a):
    return c.call("POST", _topic_path(a.topic) + "/partitions", a.partitions)


@verb("topics", "delete-partitioned-topic", TOPIC, arg("-f", "--force", action="store_true"))
def _(c, a):
    return c.call("DELETE", _topic_path(a.topic) + "/partitions", params={"force": str(a.force).lower()})


@verb(
    "topics",
    "create-subscription",
    TOPIC,
    SUB,
    arg("-m", "--messageId", dest="message_id", type=_message_id, default="latest"),
)
def _(c, a):
    body = a.message_id if isinstance(a.message_id, dict) else _message_id(a.message_id)
    return c.call("PUT", _topic_path(a.topic) + f"/subscription/{a.subscription}", body)


@verb("topics", "unsubscribe", TOPIC, SUB, arg("-f", "--force", action="store_true"))
def _(c, a):
    return c.call(
        "DELETE",
        _topic_path(a.topic) + f"/subscription/{a.subscription}",
        params={"force": str(a.force).lower()},
    )


@verb("topics", "skip", TOPIC, SUB, arg("-n", "--count", type=int, required=True))
def _(c, a):
    return c.call("POST", _topic_path(a.topic) + f"/subscription/{a.subscription}/skip/{a.count}")


@verb(
    "topics",
    "reset-cursor",
    TOPIC,
    SUB,
    arg("-t", "--time", help="ms timestamp or duration ago (10m)"),
    arg("-m", "--messageId", dest="message_id", type=_message_id),
)
def _(c, a):
    base = _topic_path(a.topic) + f"/subscription/{a.subscription}/resetcursor"
    if (a.time is None) == (a.message_id is None):
        raise AdminError("give exactly one of --time or --messageId")
    if a.time is not None:
        return c.call("POST", f"{base}/{_time_ms(a.time)}")
    return c.call("POST", base, a.message_id)


@verb("topics", "peek-messages", TOPIC, SUB, arg("-n", "--count", type=int, default=1))
def _(c, a):
    out = []
    for n in range(1, a.count + 1):
        try:
            response = c.call("GET", _topic_path(a.topic) + f"/subscription/{a.subscription}/position/{n}")
        except AdminError as exc:
            if exc.args[0].startswith("404") and out:
                break
            raise
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("x-pulsar")}
        try:
            payload: Any = response.content.decode()
        except UnicodeDecodeError:
            payload = response.content.hex()
        out.append({"headers": headers, "payload": payload})
    return out


GROUP_HELP = {
    "tenants": "create, list, update and delete tenants",
    "namespaces": "namespaces and their policies (retention, auto topic creation, de-duplication)",
    "topics": "topics, partitioned topics, subscriptions, stats and messages",
}

VERB_HELP = {
    "list": "list them",
    "get": "show one",
    "create": "create one",
    "update": "change one",
    "delete": "delete one",
    "policies": "show a namespace's policies",
    "topics": "list a namespace's topics",
    "get-retention": "show the retention policy",
    "set-retention": "set the retention policy (--time, --size)",
    "get-auto-topic-creation": "show the auto topic creation policy",
    "set-auto-topic-creation": "set the auto topic creation policy",
    "get-deduplication": "show whether de-duplication is on",
    "set-deduplication": "turn de-duplication on or off",
    "remove-deduplication": "drop the topic's own de-duplication setting",
    "list-partitioned-topics": "list a namespace's partitioned topics",
    "stats": "show a topic's stats",
    "stats-internal": "show a topic's storage stats",
    "last-message-id": "show the id of a topic's last message",
    "get-partitioned-topic-metadata": "show a partitioned topic's partition count",
    "partitioned-stats": "show a partitioned topic's stats, summed and per partition",
    "subscriptions": "list a topic's subscriptions",
    "clear-backlog": "acknowledge everything a subscription has not read",
    "create-partitioned-topic": "create a partitioned topic",
    "update-partitioned-topic": "add partitions to a partitioned topic",
    "delete-partitioned-topic": "delete a partitioned topic and its partitions",
    "create-subscription": "create a durable subscription",
    "unsubscribe": "delete a subscription",
    "skip": "skip messages of a subscription",
    "reset-cursor": "move a subscription to a time or message id",
    "peek-messages": "show a subscription's next messages without consuming them",
}


def _admin_url_option(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--admin-url",
        type=checked.http_url,
        default=default,
        help="admin REST URL (env TAUREAU_ADMIN_URL, default http://localhost:8080)",
    )


def register(sub) -> None:
    admin = sub.add_parser("admin", help="administer tenants, namespaces and topics (pulsar-admin verbs)")
    _admin_url_option(admin, os.environ.get("TAUREAU_ADMIN_URL", "http://localhost:8080"))
    groups = admin.add_subparsers(dest="group", metavar="GROUP", title="groups")
    groups.required = True
    parsers: dict[str, Any] = {}
    for (group, name), (arguments, fn) in VERBS.items():
        if group not in parsers:
            group_parser = groups.add_parser(group, help=GROUP_HELP[group], description=GROUP_HELP[group])
            parsers[group] = group_parser.add_subparsers(dest="verb", metavar="VERB", title="verbs")
            parsers[group].required = True
        p = parsers[group].add_parser(name, help=VERB_HELP[name], description=VERB_HELP[name])
        for names, kwargs in arguments:
            p.add_argument(*names, **kwargs)
        # Also after the verb, as pulsar-admin users type it; given there, it wins.
        _admin_url_option(p, argparse.SUPPRESS)
        p.set_defaults(func=run_verb(fn))


def run_verb(fn):
    def run(args: argparse.Namespace) -> int:
        try:
            result = fn(AdminClient(args.admin_url), args)
        except (AdminError, TaureauError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if result is not None:
            print(json.dumps(result, indent=2) if not isinstance(result, str) else result)
        return 0

    return run
