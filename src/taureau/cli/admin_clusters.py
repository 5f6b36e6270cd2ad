"""`taureau admin clusters ...` and `namespaces set-clusters|get-clusters`: geo-replication's
verbs, with pulsar-admin's names and flags (docs/geo-replication.md)."""

from __future__ import annotations

import argparse

from taureau.cli import args as checked
from taureau.cli.admin import GROUP_HELP, NAMESPACE, VERB_HELP, arg, verb
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


@verb("namespaces", "set-clusters", NAMESPACE,
      arg("-c", "--clusters", type=_cluster_names, required=True, help="replication clusters, e.g. a,b"))
def _(c, a):
    return c.call("POST", f"/admin/v2/namespaces/{a.namespace}/replication", a.clusters)


@verb("namespaces", "get-clusters", NAMESPACE)
def _(c, a):
    return c.call("GET", f"/admin/v2/namespaces/{a.namespace}/replication")


GROUP_HELP["clusters"] = "the clusters this one knows: register a remote cluster for geo-replication"
VERB_HELP["set-clusters"] = "replicate the namespace's topics among these clusters"
VERB_HELP["get-clusters"] = "show the namespace's replication clusters"
