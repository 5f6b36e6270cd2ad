"""Persistence policies on three real bookies (a standalone broker with --remote-bookies, its
default E/Qw/Qa 2/2/2): a namespace set to 3/3/2 gets ledgers of 3 bookies, another keeps the
default, a topic's own policy wins, a loaded topic takes a change at its next ledger, and an
ensemble larger than the bookies is refused."""

from __future__ import annotations

import httpx
import pulsar

from tests.e2e.bookies import broker_on_bookies

WIDE = {"bookkeeperEnsemble": 3, "bookkeeperWriteQuorum": 3, "bookkeeperAckQuorum": 2}


def _ledgers(server, topic: str) -> list[dict]:
    path = topic.replace("persistent://", "")
    answer = httpx.get(f"{server.admin_url}/admin/taureau/persistent/{path}/ledgers", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["ledgers"]


def _quorum(ledger: dict) -> tuple[int, int, int, int]:
    """E/Qw/Qa as the ledger metadata records them, and how many bookies its ensemble has."""
    return ledger["ensembleSize"], ledger["writeQuorum"], ledger["ackQuorum"], len(ledger["ensembles"][0]["bookies"])


def test_a_namespace_persistence_policy_shapes_its_ledgers_on_real_bookies(tmp_path, zk_url):
    server, procs = broker_on_bookies(tmp_path, zk_url, 3)
    try:
        server.start()
        base = f"{server.admin_url}/admin/v2/namespaces/public"
        for ns in ("wide", "plain", "later"):
            assert httpx.put(f"{base}/{ns}").status_code == 204
        assert httpx.post(f"{base}/wide/persistence", json=WIDE).status_code == 204
        too_wide = httpx.post(f"{base}/plain/persistence", json={**WIDE, "bookkeeperEnsemble": 4})
        assert too_wide.status_code == 412 and "3 bookie(s) available" in too_wide.json()["reason"]
        assert httpx.get(f"{base}/plain/persistence").json() is None
        own = "persistent://public/wide/own"
        own_url = f"{server.admin_url}/admin/v2/persistent/public/wide/own/persistence"
        assert httpx.post(own_url, json={**WIDE, "bookkeeperWriteQuorum": 2}).status_code == 204

        client = pulsar.Client(server.service_url, operation_timeout_seconds=30,
                               logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        try:
            client.subscribe("persistent://public/later/t", "hold")  # its backlog keeps the first ledger
            for topic in ("persistent://public/wide/t", "persistent://public/plain/t", own,
                          "persistent://public/later/t"):
                client.create_producer(topic).send(b"x")
            [wide] = _ledgers(server, "persistent://public/wide/t")
            assert _quorum(wide) == (3, 3, 2, 3)
            assert len(set(wide["ensembles"][0]["bookies"])) == 3  # three distinct bookies
            [plain] = _ledgers(server, "persistent://public/plain/t")
            assert _quorum(plain) == (2, 2, 2, 2)  # the broker's defaults
            [own_ledger] = _ledgers(server, own)
            assert _quorum(own_ledger) == (3, 2, 2, 3)  # the topic's own policy wins

            # A loaded topic keeps its current ledger; its next one (after an unload) is 3/3/2.
            assert httpx.post(f"{base}/later/persistence", json=WIDE).status_code == 204
            assert _quorum(_ledgers(server, "persistent://public/later/t")[-1]) == (2, 2, 2, 2)
            assert httpx.put(f"{base}/later/unload", timeout=30).status_code == 204
            client.create_producer("persistent://public/later/t").send(b"y")
            first, *_, newest = _ledgers(server, "persistent://public/later/t")
            assert first["ledgerId"] != newest["ledgerId"]
            assert _quorum(first) == (2, 2, 2, 2) and _quorum(newest) == (3, 3, 2, 3)
        finally:
            client.close()
    finally:
        server.stop()
        for bookie in procs:
            bookie.kill()
