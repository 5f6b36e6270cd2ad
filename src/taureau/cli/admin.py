"""`taureau admin`: the verbs of `pulsar-admin` for tenants, namespaces, topics and schemas, over REST."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any
from urllib.parse import quote

import httpx

from taureau.cli import args as checked
from taureau.cli import credentials
from taureau.common.errors import TaureauError
from taureau.common.names import TopicName


class AdminError(Exception):
    pass


MAX_REDIRECTS = 5  # 307s to a topic's owner followed at most


class AdminClient:
    """A thin synchronous client for the /admin/v2 API."""

    def __init__(self, url: str, auth: credentials.ClientAuth | None = None) -> None:
        options = auth.http_options() if auth is not None else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=30.0, **options)

    def call(self, method: str, path: str, body: Any = None, params: dict | None = None, *,
             files: dict | None = None, form: dict | None = None, content: bytes | None = None) -> Any:
        target: str = path
        try:
            for _ in range(MAX_REDIRECTS + 1):
                response = self.http.request(method, target, json=body if body is not None else None,
                                             params=params, files=files, data=form, content=content)
                # A topic served by another broker of a cluster: the same call there, with the
                # same credentials (httpx's own redirects would drop them for another port).
                if response.status_code not in (307, 308) or "location" not in response.headers:
                    break
                target, params = response.headers["location"], None
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


def duration_seconds(text: str) -> int:
    """pulsar-admin's relative time: seconds, or a number with s, m, h, d or w ('5m', '1h')."""
    match = re.fullmatch(r"(\d+)([smhdw]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 30s, 5m, 1h, 2d)")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}[match.group(2)]


_BINARY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _size_bytes(text: str) -> int:
    """A pulsar-admin size in bytes: '-1' (unlimited), bytes, or a number with k, m, g or t,
    which pulsar-admin reads as binary units (1G = 1024 MiB)."""
    match = re.fullmatch(r"(-1|\d+)([kKmMgGtT]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 100M, 10G, -1)")
    value, unit = int(match.group(1)), match.group(2).lower()
    return -1 if value < 0 else value * _BINARY_UNITS[unit]


def _size_mb(text: str) -> int:
    """A pulsar-admin size as whole MiB (-1 stays -1)."""
    size = _size_bytes(text)
    return -1 if size < 0 else size // (1024 * 1024)


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
TXN_MOST = arg("-m", "--most-sig-bits", dest="most", type=int, required=True, help="the transaction id's most bits")
TXN_LEAST = arg("-l", "--least-sig-bits", dest="least", type=int, required=True, help="its least bits")


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
    ("topics", "create"): ("PUT", "{topic}", [TOPIC]),
    ("topics", "stats"): ("GET", "{topic}/stats", [TOPIC]),
    ("topics", "stats-internal"): ("GET", "{topic}/internalStats", [TOPIC]),
    ("topics", "info-internal"): ("GET", "{topic}/internal-info", [TOPIC]),
    ("topics", "last-message-id"): ("GET", "{topic}/lastMessageId", [TOPIC]),
    ("topics", "get-partitioned-topic-metadata"): ("GET", "{topic}/partitions", [TOPIC]),
    ("topics", "partitioned-stats"): ("GET", "{topic}/partitioned-stats", [TOPIC]),
    ("topics", "subscriptions"): ("GET", "{topic}/subscriptions", [TOPIC]),
    ("topics", "clear-backlog"): ("POST", "{topic}/subscription/{subscription}/skip_all", [TOPIC, SUB]),
    ("topics", "get-deduplication"): ("GET", "{topic}/deduplication", [TOPIC]),
    ("topics", "remove-deduplication"): ("DELETE", "{topic}/deduplication", [TOPIC]),
    ("topics", "compact"): ("PUT", "{topic}/compaction", [TOPIC]),
    ("topics", "compaction-status"): ("GET", "{topic}/compaction", [TOPIC]),
    ("topics", "get-schema-compatibility-strategy"): ("GET", "{topic}/schemaCompatibilityStrategy", [TOPIC]),
    ("topics", "remove-schema-compatibility-strategy"): ("DELETE", "{topic}/schemaCompatibilityStrategy", [TOPIC]),
    ("namespaces", "get-compaction-threshold"): (
        "GET", "/admin/v2/namespaces/{namespace}/compactionThreshold", [NAMESPACE]
    ),
    ("namespaces", "remove-compaction-threshold"): (
        "DELETE", "/admin/v2/namespaces/{namespace}/compactionThreshold", [NAMESPACE]
    ),
    ("namespaces", "get-message-ttl"): ("GET", "/admin/v2/namespaces/{namespace}/messageTTL", [NAMESPACE]),
    ("namespaces", "remove-message-ttl"): ("DELETE", "/admin/v2/namespaces/{namespace}/messageTTL", [NAMESPACE]),
    ("namespaces", "get-backlog-quotas"): ("GET", "/admin/v2/namespaces/{namespace}/backlogQuotaMap", [NAMESPACE]),
    ("topics", "get-message-ttl"): ("GET", "{topic}/messageTTL", [TOPIC]),
    ("topics", "remove-message-ttl"): ("DELETE", "{topic}/messageTTL", [TOPIC]),
    ("namespaces", "get-schema-compatibility-strategy"): (
        "GET", "/admin/v2/namespaces/{namespace}/schemaCompatibilityStrategy", [NAMESPACE]
    ),
    ("transactions", "coordinator-stats"): ("GET", "/admin/v3/transactions/coordinatorStats", []),
    ("transactions", "transaction-metadata"): (
        "GET", "/admin/v3/transactions/transactionMetadata/{most}/{least}", [TXN_MOST, TXN_LEAST]
    ),
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


def _both_domains(suffix: str):
    """pulsar-admin's topic listings: persistent and non-persistent topics, together."""

    def call(c, a):
        return [name for domain in ("persistent", "non-persistent")
                for name in c.call("GET", f"/admin/v2/{domain}/{a.namespace}{suffix}")]

    return call


verb("topics", "list", NAMESPACE)(_both_domains(""))
verb("topics", "list-partitioned-topics", NAMESPACE)(_both_domains("/partitioned"))


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: an integer >= 0 (0: no limit)")
    return value


def _rate(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -2
    if value < -1:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: an integer >= -1 (-1: no limit)")
    return value


# pulsar-admin's namespace limits: (verb suffix, REST path, option flags)
NAMESPACE_LIMITS = [
    ("max-producers-per-topic", "maxProducersPerTopic", ("-p", "--max-producers-per-topic")),
    ("max-consumers-per-topic", "maxConsumersPerTopic", ("-c", "--max-consumers-per-topic")),
    ("max-subscriptions-per-topic", "maxSubscriptionsPerTopic", ("-s", "--max-subscriptions-per-topic")),
    ("max-topics-per-namespace", "maxTopicsPerNamespace", ("-t", "--max-topics-per-namespace")),
]


def _limit_verbs(suffix: str, path: str, flags: tuple[str, str]) -> None:
    url = "/admin/v2/namespaces/{ns}/" + path
    dest = flags[1][2:].replace("-", "_")
    verb("namespaces", f"get-{suffix}", NAMESPACE)(lambda c, a: c.call("GET", url.format(ns=a.namespace)))
    verb("namespaces", f"set-{suffix}", NAMESPACE, arg(*flags, type=_count, required=True))(
        lambda c, a: c.call("POST", url.format(ns=a.namespace), getattr(a, dest))
    )
    verb("namespaces", f"remove-{suffix}", NAMESPACE)(lambda c, a: c.call("DELETE", url.format(ns=a.namespace)))


for _suffix, _limit_path, _flags in NAMESPACE_LIMITS:
    _limit_verbs(_suffix, _limit_path, _flags)


@verb("namespaces", "set-publish-rate", NAMESPACE,
      arg("-m", "--msg-publish-rate", type=_rate, default=-1, help="messages per second per topic (-1: no limit)"),
      arg("-b", "--byte-publish-rate", type=_rate, default=-1, help="bytes per second per topic (-1: no limit)"))
def _(c, a):
    body = {"publishThrottlingRateInMsg": a.msg_publish_rate, "publishThrottlingRateInByte": a.byte_publish_rate}
    return c.call("POST", f"/admin/v2/namespaces/{a.namespace}/publishRate", body)


@verb("namespaces", "get-publish-rate", NAMESPACE)
def _(c, a):
    return c.call("GET", f"/admin/v2/namespaces/{a.namespace}/publishRate")


@verb("namespaces", "remove-publish-rate", NAMESPACE)
def _(c, a):
    return c.call("DELETE", f"/admin/v2/namespaces/{a.namespace}/publishRate")


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


def _role_path(role: str) -> str:
    return quote(role, safe="")  # a function's role holds `/`


ROLE = arg("--role", type=checked.role, required=True, help="the role (a token's subject, a user, a certificate's CN)")
ACTIONS = arg("--actions", type=checked.actions, required=True, help="produce,consume,functions,packages,sources,sinks")


def _permission_verbs(group: str, target: tuple[list[str], dict], base) -> None:
    """permissions, grant-permission and revoke-permission on a namespace or a topic: the
    same REST shape under the namespace's or the topic's path."""
    def url(a) -> str:
        return f"{base(a)}/permissions"

    verb(group, "permissions", target)(lambda c, a: c.call("GET", url(a)))
    verb(group, "grant-permission", target, ROLE, ACTIONS)(
        lambda c, a: c.call("POST", f"{url(a)}/{_role_path(a.role)}", a.actions)
    )
    verb(group, "revoke-permission", target, ROLE)(
        lambda c, a: c.call("DELETE", f"{url(a)}/{_role_path(a.role)}")
    )


_permission_verbs("namespaces", NAMESPACE, lambda a: f"/admin/v2/namespaces/{a.namespace}")
_permission_verbs("topics", TOPIC, lambda a: _topic_path(a.topic))


@verb("namespaces", "grant-subscription-permission", NAMESPACE, SUB,
      arg("--roles", type=checked.roles, required=True, help="the only roles that may use the subscription"))
def _(c, a):
    path = f"/admin/v2/namespaces/{a.namespace}/permissions/subscription/{quote(a.subscription, safe='')}"
    return c.call("POST", path, a.roles)


@verb("namespaces", "revoke-subscription-permission", NAMESPACE, SUB, ROLE)
def _(c, a):
    path = f"/admin/v2/namespaces/{a.namespace}/permissions/{quote(a.subscription, safe='')}/{_role_path(a.role)}"
    return c.call("DELETE", path)


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


# -- schemas ----------------------------------------------------------------------------------

STRATEGIES = ["UNDEFINED", "ALWAYS_INCOMPATIBLE", "ALWAYS_COMPATIBLE", "BACKWARD", "FORWARD", "FULL",
              "BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE", "FULL_TRANSITIVE"]


def _schema_path(topic: str) -> str:
    name = TopicName.parse(topic)
    return f"/admin/v2/schemas/{name.tenant}/{name.namespace}/{name.local_name}"


def _schema_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise AdminError(f"cannot read the schema file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise AdminError(f"the schema file {path} is not JSON: {exc}") from None


SCHEMA_FILE = arg("-f", "--filename", required=True,
                  help='JSON file: {"type": "AVRO", "schema": "<definition>", "properties": {}}')


@verb("schemas", "get", TOPIC, arg("-v", "--version", type=int, help="a version (default: the latest)"),
      arg("-a", "--all-version", action="store_true", help="every version"))
def _(c, a):
    if a.all_version:
        return c.call("GET", _schema_path(a.topic) + "/schemas")["getSchemaResponses"]
    suffix = "" if a.version is None else f"/{a.version}"
    return c.call("GET", _schema_path(a.topic) + "/schema" + suffix)


@verb("schemas", "upload", TOPIC, SCHEMA_FILE)
def _(c, a):
    return c.call("POST", _schema_path(a.topic) + "/schema", _schema_file(a.filename))


@verb("schemas", "delete", TOPIC)
def _(c, a):
    return c.call("DELETE", _schema_path(a.topic) + "/schema")


@verb("schemas", "compatibility", TOPIC, SCHEMA_FILE)
def _(c, a):
    return c.call("POST", _schema_path(a.topic) + "/compatibility", _schema_file(a.filename))


def _on_off(a) -> bool:
    if a.enable == a.disable:
        raise AdminError("give exactly one of --enable or --disable")
    return bool(a.enable)


ON_OFF = (arg("--enable", action="store_true"), arg("--disable", action="store_true"))

for _flag, _field in (("schema-validation-enforce", "schemaValidationEnforced"),
                      ("is-allow-auto-update-schema", "isAllowAutoUpdateSchema")):
    verb("namespaces", f"get-{_flag}", NAMESPACE)(
        lambda c, a, field=_field: c.call("GET", f"/admin/v2/namespaces/{a.namespace}/{field}"))
    verb("namespaces", f"set-{_flag}", NAMESPACE, *ON_OFF)(
        lambda c, a, field=_field: c.call("POST", f"/admin/v2/namespaces/{a.namespace}/{field}", _on_off(a)))


@verb("namespaces", "set-schema-compatibility-strategy", NAMESPACE,
      arg("-c", "--compatibility", required=True, type=str.upper, choices=STRATEGIES))
def _(c, a):
    return c.call("PUT", f"/admin/v2/namespaces/{a.namespace}/schemaCompatibilityStrategy", a.compatibility)


@verb("topics", "set-schema-compatibility-strategy", TOPIC,
      arg("-s", "--strategy", required=True, type=str.upper, choices=STRATEGIES))
def _(c, a):
    return c.call("PUT", _topic_path(a.topic) + "/schemaCompatibilityStrategy", a.strategy)


# -- compaction -------------------------------------------------------------------------------


@verb("namespaces", "set-compaction-threshold", NAMESPACE,
      arg("-t", "--threshold", type=_size_bytes, required=True, help="bytes added that start a compaction: 10M, 1G; 0 never"))
def _(c, a):
    if a.threshold < 0:
        raise AdminError("the threshold must be 0 (never) or a size")
    return c.call("PUT", f"/admin/v2/namespaces/{a.namespace}/compactionThreshold", a.threshold)


# -- message TTL and backlog quotas -----------------------------------------------------------

TTL = arg("-ttl", "--messageTTL", dest="ttl", type=int, required=True, help="seconds; 0 keeps messages")


@verb("namespaces", "set-message-ttl", NAMESPACE, TTL)
def _(c, a):
    return c.call("POST", f"/admin/v2/namespaces/{a.namespace}/messageTTL", a.ttl)


@verb("topics", "set-message-ttl", TOPIC, TTL)
def _(c, a):
    return c.call("POST", _topic_path(a.topic) + "/messageTTL", params={"messageTTL": a.ttl})


QUOTA_TYPES = ["destination_storage", "message_age"]


@verb("namespaces", "set-backlog-quota", NAMESPACE,
      arg("-l", "--limit", type=_size_bytes, default=-1, help="backlog size (destination_storage): 10M, 2G"),
      arg("-lt", "--limitTime", dest="limit_time", type=duration_seconds, default=-1,
          help="age of the oldest unacknowledged message (message_age): seconds, or 30m, 2h, 1d"),
      arg("-p", "--policy", required=True,
          choices=["producer_request_hold", "producer_exception", "consumer_backlog_eviction"]),
      arg("-t", "--type", default="destination_storage", choices=QUOTA_TYPES))
def _(c, a):
    body = {"limitSize": a.limit, "limitTime": a.limit_time, "policy": a.policy}
    return c.call("POST", f"/admin/v2/namespaces/{a.namespace}/backlogQuota", body,
                  params={"backlogQuotaType": a.type})


@verb("namespaces", "remove-backlog-quota", NAMESPACE,
      arg("-bqt", "--backlogQuotaType", dest="type", default="destination_storage", choices=QUOTA_TYPES))
def _(c, a):
    return c.call("DELETE", f"/admin/v2/namespaces/{a.namespace}/backlogQuota", params={"backlogQuotaType": a.type})


@verb("namespaces", "bundles", NAMESPACE)
def _bundles(c: AdminClient, a: argparse.Namespace) -> Any:
    return c.call("GET", f"/admin/v2/namespaces/{a.namespace}/bundles")


@verb("namespaces", "unload", NAMESPACE, arg("-b", "--bundle", default=None, help="one bundle, e.g. 0x00000000_0x40000000"),
      arg("-d", "--destinationBroker", dest="destination", default=None,
          help="with --bundle: the broker (host:web-port, as `brokers list` shows) its next lookup places it on"))
def _unload(c: AdminClient, a: argparse.Namespace) -> Any:
    if a.destination and not a.bundle:
        raise AdminError("--destinationBroker needs --bundle")
    bundle = f"/{a.bundle}" if a.bundle else ""
    params = {"destinationBroker": a.destination} if a.destination else None
    return c.call("PUT", f"/admin/v2/namespaces/{a.namespace}{bundle}/unload", params=params)


@verb("namespaces", "split-bundle", NAMESPACE,
      arg("-b", "--bundle", required=True, help="the bundle to split, e.g. 0x00000000_0x40000000"),
      arg("-u", "--unload", action="store_true", help="accepted for pulsar-admin: the split closes the bundle's topics anyway"),
      arg("--split-algorithm-name", default="range_equally_divide", help="range_equally_divide (the only one)"))
def _split_bundle(c: AdminClient, a: argparse.Namespace) -> Any:
    return c.call("PUT", f"/admin/v2/namespaces/{a.namespace}/{a.bundle}/split",
                  params={"unload": str(a.unload).lower(), "splitAlgorithmName": a.split_algorithm_name})


@verb("brokers", "list", arg("cluster", help="the cluster name, e.g. standalone"))
def _brokers(c: AdminClient, a: argparse.Namespace) -> Any:
    return c.call("GET", f"/admin/v2/brokers/{a.cluster}")


@verb("functions-worker", "rebalance")
def _rebalance(c: AdminClient, a: argparse.Namespace) -> Any:
    # At any function worker of a cluster (--admin-url http://worker:6750).
    return c.call("PUT", "/admin/v2/worker/rebalance")


GROUP_HELP = {
    "brokers": "the live brokers of a cluster",
    "functions-worker": "the function workers of a cluster (--admin-url of any worker)",
    "tenants": "create, list, update and delete tenants",
    "namespaces": ("namespaces and their policies (retention, TTL, backlog quota, auto topic creation, de-duplication, "
                   "schemas, compaction, dispatch rates, subscription expiration, inactive topics)"),
    "schemas": "a topic's schema versions: get, upload, delete, test compatibility",
    "topics": "topics, partitioned topics, subscriptions, stats and messages",
    "transactions": "the transaction coordinator: its stats and open transactions, one transaction",
}

VERB_HELP = {
    "rebalance": "spread every function instance anew over the live function workers",
    "coordinator-stats": "the coordinator's counts and its open transactions",
    "transaction-metadata": "one open transaction: status, timeout, partitions, pending acks",
    "list": "list them",
    "bundles": "show a namespace's bundles (hash ranges of topic names, each served by one broker)",
    "unload": "make the owners of a namespace's bundles (or of one, --bundle) let them go: placed again on next use",
    "split-bundle": "cut one bundle of a namespace in two at the middle of its hash range",
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
    "info-internal": "show what the metadata holds for a topic: its ledgers and saved cursor positions",
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
    "compact": "start a compaction: keep the latest message of each key for compacted readers",
    "compaction-status": "show how the last compaction went",
    "set-compaction-threshold": "compact topics automatically once this many bytes were added",
    "get-compaction-threshold": "show the automatic compaction threshold",
    "remove-compaction-threshold": "stop compacting automatically",
    "set-message-ttl": "acknowledge messages older than this many seconds, for every subscription",
    "get-message-ttl": "show the message TTL",
    "remove-message-ttl": "keep messages until acknowledged",
    "set-backlog-quota": "limit the backlog size or age: hold or refuse producers, or evict the slowest readers",
    "get-backlog-quotas": "show the backlog quotas",
    "remove-backlog-quota": "drop the backlog quota",
    "upload": "store a schema (a new version if it differs and fits the strategy)",
    "compatibility": "test whether a schema would be accepted",
    "get-schema-compatibility-strategy": "show how a schema may change",
    "set-schema-compatibility-strategy": "set how a schema may change",
    "remove-schema-compatibility-strategy": "drop the topic's own strategy (its namespace's applies)",
    "get-schema-validation-enforce": "show whether producers must send a schema",
    "set-schema-validation-enforce": "require producers to send a schema on topics that have one",
    "get-is-allow-auto-update-schema": "show whether producers may register new schema versions",
    "set-is-allow-auto-update-schema": "let producers register new schema versions, or not",
    "permissions": "show the roles' permissions",
    "grant-permission": "grant a role actions (produce, consume, functions, packages...)",
    "revoke-permission": "revoke a role's permission",
    "grant-subscription-permission": "limit a subscription to some roles",
    "revoke-subscription-permission": "take a role off a subscription's roles",
    **{f"{how}-{suffix}": f"{what} the namespace's {suffix.replace('-', ' ')} (0: no limit)"
       for suffix, _, _ in NAMESPACE_LIMITS
       for how, what in (("get", "show"), ("set", "set"), ("remove", "drop"))},
    "set-publish-rate": "limit what each topic of the namespace may publish per second",
    "get-publish-rate": "show the namespace's publish rate",
    "remove-publish-rate": "drop the namespace's publish rate",
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
    credentials.add_options(admin)
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
        credentials.add_options(p, after_verb=True)
        p.set_defaults(func=run_verb(fn))


def run_verb(fn):
    def run(args: argparse.Namespace) -> int:
        try:
            result = fn(AdminClient(args.admin_url, credentials.from_args(args)), args)
        except (AdminError, TaureauError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if result is not None:
            print(json.dumps(result, indent=2) if not isinstance(result, str) else result)
        return 0

    return run


# The policy and cluster verbs register themselves into VERBS and VERB_HELP (they import this module).
from taureau.cli import admin_clusters, admin_policies  # noqa: E402, F401
