"""The cluster endpoints against a real standalone (one broker, its embedded bookie): Pulsar's
`brokers list` and `bookies list-bookies` paths, Taureau's cluster summary and a topic's
ledger ensembles, and their answers to bad input."""

from __future__ import annotations

import httpx
import pytest

TOPIC = "persistent://public/default/cluster-ledgers"


def _get(standalone, path: str) -> httpx.Response:
    return httpx.get(f"{standalone.admin_url}{path}", timeout=10)


def test_brokers_list_names_this_broker(standalone):
    assert _get(standalone, "/admin/v2/brokers/standalone").json() == [f"127.0.0.1:{standalone.web_port}"]


def test_bookies_all_and_the_cluster_summary_show_the_embedded_bookie(standalone, client):
    client.create_producer(TOPIC).send(b"x" * 1000)
    assert _get(standalone, "/admin/v2/bookies/all").json() == {"bookies": [{"bookieId": "bookie-0"}]}
    summary = _get(standalone, "/admin/taureau/cluster").json()
    assert summary["cluster"] == "standalone"
    [broker] = summary["brokers"]
    assert broker["webServiceUrl"] == f"http://127.0.0.1:{standalone.web_port}"
    assert broker["brokerServiceUrl"] == f"pulsar://127.0.0.1:{standalone.broker_port}"
    assert TOPIC in broker["topics"] and broker["topicCount"] == len(broker["topics"])
    assert broker["bundles"] is None
    [bookie] = summary["bookies"]
    assert bookie["id"] == "bookie-0" and bookie["kind"] == "embedded" and bookie["writable"]
    assert bookie["diskUsageBytes"] > 1000  # the journal holds the entry at least


def test_a_topics_ledgers_with_their_ensembles(standalone, client):
    client.create_producer(TOPIC).send(b"y")
    answer = _get(standalone, "/admin/taureau/persistent/public/default/cluster-ledgers/ledgers").json()
    assert answer["topic"] == TOPIC and answer["ledgerCount"] >= 1
    ledger = answer["ledgers"][-1]
    internal = _get(standalone, "/admin/v2/persistent/public/default/cluster-ledgers/internalStats").json()
    assert ledger["ledgerId"] == internal["ledgers"][-1]["ledgerId"]
    assert ledger["ensembles"] == [{"firstEntry": 0, "bookies": ["bookie-0"]}]
    assert (ledger["ensembleSize"], ledger["writeQuorum"], ledger["ackQuorum"]) == (1, 1, 1)
    assert ledger["state"] == "OPEN"


@pytest.mark.parametrize("path,status,reason", [
    ("/admin/v2/brokers/elsewhere", 404, "cluster elsewhere does not exist"),
    ("/admin/taureau/persistent/public/default/no-such-topic/ledgers", 404, "does not exist"),
    ("/admin/taureau/persistent/public/no-such-ns/t/ledgers", 404, "does not exist"),
    ("/admin/taureau/persistent/bad%20tenant/default/t/ledgers", 400, "invalid"),
])
def test_bad_input_is_refused_and_the_server_keeps_serving(standalone, path, status, reason):
    response = _get(standalone, path)
    assert response.status_code == status
    assert reason in response.json()["reason"].lower()
    assert _get(standalone, "/admin/v2/brokers/standalone").status_code == 200
