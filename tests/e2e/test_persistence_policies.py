"""Persistence policies (E/Qw/Qa) on a standalone with its one embedded bookie: REST and CLI
set/get/remove at namespace and topic level, and bad input refused with nothing stored.
Which ensemble a ledger then gets is checked on real bookies (test_persistence_bookies.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.policy_helpers import admin, make_namespace, topic_url

POLICY = {"bookkeeperEnsemble": 1, "bookkeeperWriteQuorum": 1, "bookkeeperAckQuorum": 1,
          "managedLedgerMaxMarkDeleteRate": 2.5}


def test_namespace_persistence_is_set_shown_and_removed(standalone):
    ns = make_namespace(standalone, "persist-ns")
    assert httpx.get(f"{ns}/persistence").json() is None
    assert httpx.post(f"{ns}/persistence", json=POLICY).status_code == 204
    assert httpx.get(f"{ns}/persistence").json() == POLICY
    assert httpx.get(ns).json()["persistence"] == POLICY  # in the namespace's policies too
    # The rate may be left out (Pulsar's default 0).
    without_rate = {k: v for k, v in POLICY.items() if k != "managedLedgerMaxMarkDeleteRate"}
    assert httpx.post(f"{ns}/persistence", json=without_rate).status_code == 204
    assert httpx.get(f"{ns}/persistence").json()["managedLedgerMaxMarkDeleteRate"] == 0.0
    assert httpx.delete(f"{ns}/persistence").status_code == 204
    assert httpx.get(f"{ns}/persistence").json() is None


BAD = [
    ({**POLICY, "bookkeeperWriteQuorum": 2}, 400, "writequorum"),  # E < Qw
    ({**POLICY, "bookkeeperAckQuorum": 2}, 400, "ackquorum"),  # Qw < Qa
    ({**POLICY, "bookkeeperEnsemble": 0}, 400, "bookkeeperensemble"),
    ({**POLICY, "bookkeeperEnsemble": "1"}, 400, "bookkeeperensemble"),
    ({**POLICY, "bookkeeperEnsemble": True}, 400, "bookkeeperensemble"),
    ({**POLICY, "managedLedgerMaxMarkDeleteRate": -1}, 400, "markdeleterate"),
    ({**POLICY, "managedLedgerMaxMarkDeleteRate": "fast"}, 400, "markdeleterate"),
    ({**POLICY, "color": "red"}, 400, "unknown"),
    ({"bookkeeperEnsemble": 1}, 400, "need"),
    ([1, 1, 1], 400, "jsonobject"),
    # One bookie here: an ensemble of 2 could never be formed (412, nothing stored).
    ({**POLICY, "bookkeeperEnsemble": 2, "bookkeeperWriteQuorum": 2}, 412, "the1bookie(s)available"),
]


@pytest.mark.parametrize("body,status,reason", BAD, ids=[
    "e-below-qw", "qw-below-qa", "zero", "string", "bool", "negative-rate", "string-rate", "unknown-field",
    "missing-fields", "list", "more-than-the-bookies"])
def test_bad_persistence_is_refused_and_nothing_is_stored(standalone, body, status, reason):
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/default"
    topic = topic_url(standalone, "persistent://public/default/persist-bad")
    for url in (f"{ns}/persistence", f"{topic}/persistence"):
        response = httpx.post(url, json=body)
        assert response.status_code == status, response.text
        assert reason in response.json()["reason"].lower().replace("-", "").replace(" ", "")
        assert httpx.get(url).json() is None  # nothing stored
    assert httpx.get(ns).status_code == 200  # still serving


def test_topic_persistence_is_its_own_and_unknown_namespaces_are_404(standalone, client):
    make_namespace(standalone, "persist-topic")
    name = "persistent://public/persist-topic/t"
    client.create_producer(name).send(b"x")  # loaded: the change is pushed into it
    url = f"{topic_url(standalone, name)}/persistence"
    assert httpx.post(url, json=POLICY).status_code == 204
    assert httpx.get(url).json() == POLICY
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/persist-topic"
    assert httpx.get(f"{ns}/persistence").json() is None  # the namespace's is untouched
    assert httpx.delete(url).status_code == 204
    assert httpx.get(url).json() is None
    missing = httpx.post(f"{topic_url(standalone, 'persistent://public/nowhere/t')}/persistence", json=POLICY)
    assert missing.status_code == 404
    assert httpx.post(f"{standalone.admin_url}/admin/v2/namespaces/public/nowhere/persistence",
                      json=POLICY).status_code == 404
    bad_name = httpx.post(f"{standalone.admin_url}/admin/v2/persistent/bad%20tenant/default/t/persistence",
                          json=POLICY)
    assert bad_name.status_code == 400 and "invalid" in bad_name.json()["reason"].lower()


def test_cli_persistence_verbs(standalone, capsys):
    def run(*args: str):
        return admin(capsys, standalone.admin_url, *args)

    make_namespace(standalone, "persist-cli")
    set_ = run("namespaces", "set-persistence", "public/persist-cli", "-e", "1", "-w", "1", "-a", "1", "-r", "2.5")
    assert set_.returncode == 0, set_.stderr
    got = run("namespaces", "get-persistence", "public/persist-cli")
    assert got.returncode == 0 and '"bookkeeperEnsemble": 1' in got.stdout and "2.5" in got.stdout
    long = run("topics", "set-persistence", "persistent://public/persist-cli/t", "--bookkeeper-ensemble", "1",
               "--bookkeeper-write-quorum", "1", "--bookkeeper-ack-quorum", "1", "--ml-mark-delete-max-rate", "1")
    assert long.returncode == 0, long.stderr
    assert '"bookkeeperAckQuorum": 1' in run("topics", "get-persistence", "persistent://public/persist-cli/t").stdout
    assert run("topics", "remove-persistence", "persistent://public/persist-cli/t").returncode == 0
    assert run("namespaces", "remove-persistence", "public/persist-cli").returncode == 0
    removed = run("namespaces", "get-persistence", "public/persist-cli")
    assert removed.returncode == 0 and "bookkeeperEnsemble" not in removed.stdout  # none set: nothing shown
    refused = run("namespaces", "set-persistence", "public/persist-cli", "-e", "1", "-w", "2", "-a", "1")
    assert refused.returncode == 1 and refused.stderr.strip().count("\n") == 0 and "400" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = run("namespaces", "set-persistence", "public/persist-cli", "-w", "1", "-a", "1")
    assert missing.returncode == 2 and "--bookkeeper-ensemble" in missing.stderr
    not_a_number = run("namespaces", "set-persistence", "public/persist-cli", "-e", "x", "-w", "1", "-a", "1")
    assert not_a_number.returncode == 2 and "invalid int value" in not_a_number.stderr
