"""`taureau admin clusters ...`, `namespaces set-clusters|get-clusters` and `topics
set-|get-|remove-replication-clusters`: geo-replication's verbs, with pulsar-admin's names and
flags (docs/geo-replication.md)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from taureau.cli import args as checked
from taureau.cli.admin import GROUP_HELP, NAMESPACE, TOPIC, VERB_HELP, _topic_path, arg, verb
from taureau.cli.cluster_cmd import cluster_name

CLUSTER = arg("cluster", type=cluster_name, help="the cluster's name")
URLS = [
    arg("--url", type=checked.http_url, required=True, help="the cluster's admin URL, http://host:port"),
    arg("--broker-url", type=checked.service_url, default=None,
        help="the cluster's service URL, pulsar://host:port (replicators publish there)"),
    arg("--url-secure", type=checked.http_url, default=None, help="its https:// admin URL, if any"),
    arg("--broker-url-secure", type=checked.service_url, default=None, help="its pulsar+ssl:// URL, if any"),
]


def _cluster_body(a: argparse.Namespace) -> dict:
    return {"serviceUrl": a.url, "brokerServiceUrl": a.broker_url or "",
            "serviceUrlTls": a.url_secure or "", "brokerServiceUrlTls": a.broker_url_secure or ""}


def _cluster_names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one cluster name, e.g. --clusters a,b")
    return [cluster_name(name) for name in names]


@verb("clusters", "list")
def _(c, a):
    return c.call("GET", "/admin/v2/clusters")


@verb("clusters", "get", CLUSTER)
def _(c, a):
    return c.call("GET", f"/admin/v2/clusters/{a.cluster}")


def _write(method: str):
    return lambda c, a: c.call(method, f"/admin/v2/clusters/{a.cluster}", _cluster_body(a))


verb("clusters", "create", CLUSTER, *URLS)(_write("PUT"))  # 409 if it exists
verb("clusters", "update", CLUSTER, *URLS)(_write("POST"))  # 404 if it does not


@verb("clusters", "delete", CLUSTER)
def _(c, a):
    return c.call("DELETE", f"/admin/v2/clusters/{a.cluster}")


def _replication_verbs(group: str, target: tuple, path_of: Callable[[argparse.Namespace], str],
                       set_name: str, get_name: str, remove_name: str | None) -> None:
    """set (POST the list), get and, where pulsar-admin has it, remove (DELETE) of the
    replication clusters at `path_of(args)`."""
    clusters = arg("-c", "--clusters", type=_cluster_names, required=True, help="replication clusters, e.g. a,b")
    verb(group, set_name, target, clusters)(lambda c, a: c.call("POST", path_of(a), a.clusters))
    verb(group, get_name, target)(lambda c, a: c.call("GET", path_of(a)))
    if remove_name is not None:
        verb(group, remove_name, target)(lambda c, a: c.call("DELETE", path_of(a)))


_replication_verbs("namespaces", NAMESPACE, lambda a: f"/admin/v2/namespaces/{a.namespace}/replication",
                   "set-clusters", "get-clusters", None)
_replication_verbs("topics", TOPIC, lambda a: f"{_topic_path(a.topic)}/replication",
                   "set-replication-clusters", "get-replication-clusters", "remove-replication-clusters")

GROUP_HELP["clusters"] = "the clusters this one knows: register a remote cluster for geo-replication"
VERB_HELP["set-clusters"] = "replicate the namespace's topics among these clusters"
VERB_HELP["get-clusters"] = "show the namespace's replication clusters"
VERB_HELP["set-replication-clusters"] = "replicate this topic among these clusters (over its namespace's)"
VERB_HELP["get-replication-clusters"] = "show the topic's own replication clusters (null: its namespace's)"
VERB_HELP["remove-replication-clusters"] = "drop the topic's own replication clusters"
