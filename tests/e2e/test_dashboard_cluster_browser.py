"""The Cluster page in a real browser, against a broker on two real `taureau bookie`
processes registered in a real ZooKeeper (`standalone --remote-bookies`): the broker, both
bookies, and a topic's ledger written to both at E=2, Qw=2, Qa=2."""

from __future__ import annotations

import pulsar
import pytest

from tests.e2e.bookies import broker_on_bookies
from tests.e2e.browser import VIEWPORT

TOPIC = "persistent://public/default/on-two-bookies"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, zookeeper):
    root = tmp_path_factory.mktemp("cluster")
    zk_url = f"{zookeeper.url}/t/dashboard-cluster"
    server, bookies = broker_on_bookies(root, zk_url, 2)
    try:
        server.start()
        client = pulsar.Client(server.service_url, operation_timeout_seconds=30,
                               logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        client.create_producer(TOPIC).send(b"stored on both bookies")
        client.close()
        yield server, bookies
    finally:
        server.stop()
        for b in bookies:
            b.kill()


def test_cluster_page_shows_the_broker_the_bookies_and_a_ledgers_ensemble(browser, shots, cluster):
    server, bookies = cluster
    context = browser.new_context(viewport=VIEWPORT, base_url=server.admin_url)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("/#/cluster")
        page.locator(f'tr[data-broker="127.0.0.1:{server.web_port}"]').wait_for(timeout=10_000)
        for b in bookies:
            row = page.locator(f'tr[data-bookie="{b.bookie_id}"]')
            assert row.locator("td").nth(1).inner_text() == "remote"
            assert row.locator("td.bookie-state").inner_text() == "writable"
        assert page.locator("tr[data-bookie]").count() == 2
        assert page.get_by_test_id("ledger-topic").input_value() == TOPIC
        ledger = page.locator("tr[data-ledger]").last
        ledger.wait_for(timeout=10_000)
        assert ledger.locator("td.quorums").inner_text() == "2 / 2 / 2"
        ensemble = ledger.locator("td.ensemble").inner_text()
        assert ensemble.startswith("from entry 0: ")
        assert sorted(ensemble.removeprefix("from entry 0: ").split(", ")) == sorted(b.bookie_id for b in bookies)
        page.screenshot(path=str(shots / "dashboard-cluster.png"), full_page=True)
    finally:
        context.close()
    assert errors == [], f"the page raised: {errors}"
