"""The dashboard's endpoints over plain HTTP against a real standalone: the page at `/`,
`examinemessage` (the last messages of a topic, whatever was acknowledged), the live stream of
rates, and `--no-dashboard`."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import httpx
import pytest
from pulsar.schema import Long, Record, String

from taureau.dashboard import assets
from tests.e2e.harness import Standalone

BASE = "/admin/v2/persistent/public/default"


def _examine(standalone, topic: str, **params) -> httpx.Response:
    return httpx.get(f"{standalone.admin_url}{BASE}/{topic}/examinemessage", params=params)


def test_the_page_is_served_at_the_root(standalone):
    page = httpx.get(f"{standalone.admin_url}/")
    if assets.missing():  # never built here: the page says how, rather than half-working
        assert page.status_code == 503
        assert assets.BUILD_COMMAND in page.text
        return
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/dashboard/app.js"' in page.text
    script = httpx.get(f"{standalone.admin_url}/dashboard/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(f"{standalone.admin_url}/dashboard/nothing.js").status_code == 404


def test_examinemessage_reads_from_either_end_whatever_was_acknowledged(standalone, client):
    topic = "dash-examine"
    consumer = client.subscribe(f"persistent://public/default/{topic}", "reader")
    producer = client.create_producer(f"persistent://public/default/{topic}", batching_enabled=False)
    for i in range(3):
        producer.send(f"single-{i}".encode(), partition_key=f"k{i}", properties={"n": str(i)})
    for _ in range(3):
        consumer.acknowledge(consumer.receive(5000))  # acknowledged: examine still reads them
    batched = client.create_producer(f"persistent://public/default/{topic}", batching_enabled=True,
                                     batching_max_messages=5, batching_max_publish_delay_ms=1000)
    for i in range(5):
        batched.send_async(f"batched-{i}".encode(), None)
    batched.flush()

    last = _examine(standalone, topic)  # defaults: initialPosition=latest, messagePosition=1
    assert last.status_code == 200
    assert last.content == b"batched-0"  # the first message of the last entry, a batch of 5
    assert last.headers["X-Pulsar-num-batch-message"] == "5"
    assert last.headers["X-Pulsar-batch-index"] == "0"
    second_last = _examine(standalone, topic, initialPosition="latest", messagePosition=2)
    assert second_last.content == b"single-2"
    assert second_last.headers["X-Pulsar-partition-key"] == "k2"
    assert json.loads(second_last.headers["X-Pulsar-PROPERTY"]) == {"n": "2"}
    assert "X-Pulsar-num-batch-message" not in second_last.headers
    first = _examine(standalone, topic, initialPosition="earliest", messagePosition=1)
    assert first.content == b"single-0"
    ledger, entry = first.headers["X-Pulsar-Message-ID"].split(":")
    assert int(entry) == 0 and int(ledger) >= 0
    assert _examine(standalone, topic, initialPosition="earliest", messagePosition=4).content == b"batched-0"


@pytest.mark.parametrize("params,status,reason", [
    ({"initialPosition": "middle"}, 400, "initialPosition must be latest or earliest"),
    ({"messagePosition": 0}, 400, "messagePosition must be >= 1"),
    ({"messagePosition": -3}, 400, "messagePosition must be >= 1"),
    ({"messagePosition": 5}, 404, "fewer than 5"),
])
def test_examinemessage_refuses_bad_positions(standalone, client, params, status, reason):
    producer = client.create_producer("persistent://public/default/dash-bad-examine")
    producer.send(b"only")
    response = _examine(standalone, "dash-bad-examine", **params)
    assert response.status_code == status
    assert reason in response.json()["reason"]
    assert _examine(standalone, "dash-bad-examine").content == b"only"  # still serving


def test_examinemessage_of_a_missing_topic_or_a_non_number(standalone):
    missing = _examine(standalone, "dash-never-created")
    assert missing.status_code == 404
    assert "does not exist" in missing.json()["reason"]
    assert _examine(standalone, "dash-never-created", messagePosition="two").status_code == 422


def _live_samples(standalone, count: int, timeout: float = 15.0) -> list[dict]:
    samples: list[dict] = []
    kind = ""
    with httpx.stream("GET", f"{standalone.admin_url}/admin/taureau/live", timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "sample":
                samples.append(json.loads(line[6:]))
                if len(samples) == count:
                    break
    return samples


def _live_history(standalone) -> list[dict]:
    """The first event of a new stream: the totals of the samples taken before it."""
    with httpx.stream("GET", f"{standalone.admin_url}/admin/taureau/live", timeout=10) as response:
        assert response.status_code == 200
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                assert kind == "history"
                return json.loads(line[6:])
    raise AssertionError("the stream ended before its history")


def test_the_live_stream_carries_each_topics_rate_backlog_and_storage(standalone, client):
    name = "persistent://public/default/dash-live"
    client.subscribe(name, "behind")  # never reads: a backlog
    producer = client.create_producer(name, batching_enabled=False)
    deadline = time.monotonic() + 15
    row = None
    while row is None or row["rateIn"] == 0:
        assert time.monotonic() < deadline, f"no rate for {name} in the live stream: {row}"
        for _ in range(50):
            producer.send_async(b"x" * 100, None)
        producer.flush()
        sample = _live_samples(standalone, 1)[0]
        row = next((r for r in sample["topics"] if r["name"] == name), None)
    assert row["rateIn"] > 0 and row["throughputIn"] >= row["rateIn"] * 100
    assert row["backlog"] >= 50 and row["storage"] > 5000
    assert row["producers"] == 1 and row["subscriptions"] == 1
    assert sample["totals"]["rateIn"] >= row["rateIn"]
    assert sample["topicCount"] >= 1
    assert sample["functions"] == []  # the worker runs, no function is deployed in this module
    # With no stream open the hub samples totals only (no rows): the same sums reach the history.
    time.sleep(2.5)
    last = _live_history(standalone)[-1]
    assert last["backlog"] >= row["backlog"] and last["storage"] >= row["storage"]


def test_no_dashboard_serves_neither_the_page_nor_the_stream(tmp_path):
    server = Standalone(tmp_path, "--no-dashboard", "--no-functions").start()
    try:
        assert httpx.get(f"{server.admin_url}/").status_code == 404
        assert httpx.get(f"{server.admin_url}/admin/taureau/live").status_code == 404
        assert httpx.get(f"{server.admin_url}/admin/v2/tenants").json() == ["public"]
    finally:
        assert server.stop() == 0


def test_an_open_live_stream_does_not_hold_up_a_stop(tmp_path):
    server = Standalone(tmp_path, "--no-functions").start()
    with httpx.stream("GET", f"{server.admin_url}/admin/taureau/live", timeout=30) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("retry:")
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 5  # the stream ends first; no graceful-shutdown wait
        rest = list(lines)  # the server ended the response: iteration stops, no hang
    assert any(line.startswith("event: ") for line in rest)


def test_standalone_help_lists_no_dashboard():
    done = subprocess.run([sys.executable, "-m", "taureau.cli.main", "standalone", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--no-dashboard" in done.stdout


def _events(stream):
    """(event name, decoded data) of a live stream, as they come."""
    kind = ""
    for line in stream.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])


def _first_sample(stream) -> tuple[list, dict]:
    """The history and the first sample of a live stream."""
    events = _events(stream)
    (_, history), (_, sample) = next(events), next(events)
    return history, sample


def test_with_auth_on_each_role_sees_only_its_own(tmp_path):
    from tests.security.helpers import Keys, client, rest, start

    (tmp_path / "keys").mkdir()
    keys = Keys(tmp_path / "keys")
    server = start(tmp_path, keys)
    try:
        with rest(server, keys.token("admin")) as admin:
            assert admin.put("/admin/v2/tenants/acme", json={"adminRoles": ["acme-admin"],
                                                               "allowedClusters": ["standalone"]}).status_code == 204
            assert admin.put("/admin/v2/namespaces/acme/orders").status_code == 204
            assert admin.put("/admin/v2/namespaces/acme/audit").status_code == 204
            assert admin.post("/admin/v2/namespaces/acme/orders/permissions/app1",
                              json=["produce"]).status_code == 204
        c = client(server, auth=__import__("pulsar").AuthenticationToken(keys.token("admin")))
        try:
            for topic in ("persistent://acme/orders/in", "persistent://acme/audit/log",
                          "persistent://public/default/other"):
                c.create_producer(topic).send(b"x")
        finally:
            c.close()

        with rest(server) as anonymous:  # the page loads (it asks for the token); no data does
            page = anonymous.get("/")
            assert page.status_code == (503 if assets.missing() else 200)
            for path in ("/admin/taureau/live", "/admin/taureau/whoami", "/admin/v2/tenants"):
                refused = anonymous.get(path)
                assert refused.status_code == 401 and "authentication required" in refused.json()["reason"]
        with rest(server, "not-a-token") as wrong:
            assert wrong.get("/admin/taureau/whoami").status_code == 401
        with rest(server, keys.token("admin")) as admin:
            me = admin.get("/admin/taureau/whoami").json()
            assert me["role"] == "admin" and me["superuser"] and me["authentication"]
            assert {"acme", "public"} <= set(me["tenants"])
            with admin.stream("GET", "/admin/taureau/live") as stream:
                history, sample = _first_sample(stream)
            names = {row["name"] for row in sample["topics"]}
            assert {"persistent://acme/orders/in", "persistent://public/default/other"} <= names
        with rest(server, keys.token("acme-admin")) as tenant_admin:
            me = tenant_admin.get("/admin/taureau/whoami").json()
            assert me == {"role": "acme-admin", "authentication": True, "superuser": False,
                          "tenants": ["acme"], "namespaces": []}
            with tenant_admin.stream("GET", "/admin/taureau/live") as stream:
                history, sample = _first_sample(stream)
            assert history == []  # the whole server's totals: superusers only
            names = {row["name"] for row in sample["topics"]}
            assert names == {"persistent://acme/orders/in", "persistent://acme/audit/log"}
            assert sample["topicCount"] == 2 and "state" not in sample
            assert sample["totals"]["storage"] == sum(row["storage"] for row in sample["topics"]) > 0
            assert tenant_admin.get("/admin/v2/tenants").status_code == 403
        with rest(server, keys.token("app1")) as app1:  # a grant on one namespace, nothing else
            me = app1.get("/admin/taureau/whoami").json()
            assert me["tenants"] == [] and me["namespaces"] == ["acme/orders"]
            assert app1.get(f"{BASE}/other/examinemessage").status_code == 403
            with app1.stream("GET", "/admin/taureau/live") as stream:
                events = _events(stream)
                next(events)  # the history
                _, sample = next(events)
                assert [row["name"] for row in sample["topics"]] == ["persistent://acme/orders/in"]
                # A revoke holds on the open stream within the view's 5 s.
                with rest(server, keys.token("admin")) as admin:
                    assert admin.delete("/admin/v2/namespaces/acme/orders/permissions/app1").status_code == 204
                revoked = time.monotonic()
                for _, sample in events:
                    if not sample["topics"]:
                        break
                    assert time.monotonic() - revoked < 8, "the revoked role still sees the topic"
            assert time.monotonic() - revoked < 8
        with rest(server, keys.token("bob")) as bob:  # authenticated, no grant at all
            assert bob.get("/admin/taureau/whoami").json()["namespaces"] == []
            with bob.stream("GET", "/admin/taureau/live") as stream:
                _, sample = _first_sample(stream)
            assert sample["topics"] == [] and sample["totals"]["rateIn"] == 0
        cluster_paths = ("/admin/v2/brokers/standalone", "/admin/v2/bookies/all", "/admin/taureau/cluster",
                         "/admin/taureau/persistent/acme/orders/in/ledgers")
        with rest(server, keys.token("acme-admin")) as tenant_admin:  # the cluster is the superusers'
            for path in cluster_paths:
                refused = tenant_admin.get(path)
                assert refused.status_code == 403 and "not a superuser" in refused.json()["reason"]
        with rest(server, keys.token("admin")) as admin:
            assert all(admin.get(path).status_code == 200 for path in cluster_paths)
    finally:
        assert server.stop() == 0


class Order(Record):
    id = Long()
    item = String()


def _decoded(standalone, topic: str, **params) -> httpx.Response:
    return httpx.get(f"{standalone.admin_url}{BASE}/{topic}/examinemessage/decoded", params=params)


@pytest.mark.parametrize("schema,kind", [("json", "JSON"), ("avro", "AVRO")])
def test_examinemessage_decoded_reads_payloads_by_their_schema_version(standalone, client, schema, kind):
    from pulsar.schema import AvroSchema, JsonSchema

    topic = f"dash-decoded-{schema}"
    codec = JsonSchema(Order) if schema == "json" else AvroSchema(Order)
    producer = client.create_producer(f"persistent://public/default/{topic}", schema=codec,
                                      batching_enabled=False)
    producer.send(Order(id=1, item="widget"), partition_key="k", properties={"p": "v"})
    producer.send(Order(id=2, item="gadget"))
    last = _decoded(standalone, topic)
    assert last.status_code == 200
    body = last.json()
    assert body["schema"] == {"version": 0, "type": kind}
    assert body["value"] == {"id": 2, "item": "gadget"} and "decodeError" not in body
    first = _decoded(standalone, topic, initialPosition="earliest", messagePosition=1).json()
    assert first["value"] == {"id": 1, "item": "widget"}
    assert first["key"] == "k" and first["properties"] == {"p": "v"} and first["batchSize"] == 1
    raw = _examine(standalone, topic, initialPosition="earliest", messagePosition=1)
    assert base64.b64decode(first["payload"]) == raw.content  # the same bytes examinemessage gives
    assert first["messageId"] == raw.headers["X-Pulsar-Message-ID"]


def test_examinemessage_decoded_without_a_schema_gives_the_raw_payload(standalone, client):
    client.create_producer("persistent://public/default/dash-decoded-raw").send(b"\x00\xffraw")
    body = _decoded(standalone, "dash-decoded-raw").json()
    assert body["schema"] is None and "value" not in body
    assert base64.b64decode(body["payload"]) == b"\x00\xffraw"


def test_examinemessage_decoded_string_schema(standalone, client):
    from pulsar.schema import StringSchema

    client.create_producer("persistent://public/default/dash-decoded-str", schema=StringSchema()).send("héllo")
    body = _decoded(standalone, "dash-decoded-str").json()
    assert body["schema"]["type"] == "STRING" and body["value"] == "héllo"


@pytest.mark.parametrize("topic,params,status,reason", [
    ("dash-decoded-raw", {"initialPosition": "middle"}, 400, "initialPosition must be latest or earliest"),
    ("dash-decoded-raw", {"messagePosition": 0}, 400, "messagePosition must be >= 1"),
    ("dash-decoded-raw", {"messagePosition": "x"}, 422, None),
    ("dash-decoded-raw", {"messagePosition": 99}, 404, "fewer than 99"),
    ("no-such-topic", {}, 404, "does not exist"),
])
def test_examinemessage_decoded_refuses_bad_input(standalone, client, topic, params, status, reason):
    client.create_producer("persistent://public/default/dash-decoded-raw").send(b"x")
    response = _decoded(standalone, topic, **params)
    assert response.status_code == status
    if reason:
        assert reason in response.json()["reason"]
    assert _decoded(standalone, "dash-decoded-raw").status_code == 200  # still serving
