"""Geo-replication between two real `taureau standalone` processes, each its own cluster
(docs/geo-replication.md): both ways without loops, a remote outage, a restart of the source,
removing a cluster, and the admin API's bad input."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pulsar
import pytest

from taureau.broker.replication.remote import OutgoingEntry, RemoteError, RemoteProducer
from taureau.protocol import encode_entry, pb
from tests.e2e.harness import Standalone, free_port

EAST, WEST = "east", "west"
FLAGS = ("--no-functions", "--no-dashboard")


def _admin(server: Standalone) -> httpx.Client:
    return httpx.Client(base_url=server.admin_url, timeout=30)


def _ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code < 300, (response.status_code, response.text)
    return response


@pytest.fixture(scope="module")
def clusters(tmp_path_factory) -> Iterator[dict[str, Standalone]]:
    east = Standalone(tmp_path_factory.mktemp("east"), "--cluster-name", EAST, *FLAGS).start()
    west = Standalone(tmp_path_factory.mktemp("west"), "--cluster-name", WEST, *FLAGS).start()
    servers = {EAST: east, WEST: west}
    try:
        for name, server in servers.items():
            other_name, other = (WEST, west) if name == EAST else (EAST, east)
            with _admin(server) as admin:
                _ok(admin.put(f"/admin/v2/clusters/{other_name}",
                              json={"serviceUrl": other.admin_url, "brokerServiceUrl": other.service_url}))
                _ok(admin.post("/admin/v2/tenants/public", json={"allowedClusters": [EAST, WEST]}))
        yield servers
    finally:
        for server in servers.values():
            if server.proc is not None:
                server.stop()


def _replicated_namespace(servers: dict[str, Standalone], members: list[str] | None = None) -> str:
    """A new namespace on both clusters, replicated among `members` (both by default), with
    de-duplication on so that a replicator's resends are dropped."""
    ns = f"public/geo-{uuid.uuid4().hex[:8]}"
    for server in servers.values():
        with _admin(server) as admin:
            _ok(admin.put(f"/admin/v2/namespaces/{ns}"))
            _ok(admin.post(f"/admin/v2/namespaces/{ns}/deduplication", json=True))
            _ok(admin.post(f"/admin/v2/namespaces/{ns}/replication", json=members or [EAST, WEST]))
    return ns


def _client(server: Standalone) -> pulsar.Client:
    return pulsar.Client(server.service_url, operation_timeout_seconds=30,
                         logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


@contextlib.contextmanager
def _clients(servers: dict[str, Standalone]) -> Iterator[tuple[pulsar.Client, pulsar.Client]]:
    east, west = _client(servers[EAST]), _client(servers[WEST])
    try:
        yield east, west
    finally:
        east.close()
        west.close()


def _receive_all(consumer: pulsar.Consumer, expected: int, timeout: float = 60.0) -> list[pulsar.Message]:
    """Receive until `expected` messages came, then 2 s more to catch any extra (a loop or a
    duplicate would show there)."""
    got: list[pulsar.Message] = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    while True:
        now = time.monotonic()
        if quiet_until is None and (len(got) >= expected or now > deadline):
            quiet_until = now + 2.0
        if quiet_until is not None and now > quiet_until:
            return got
        try:
            msg = consumer.receive(timeout_millis=200)
        except pulsar.Timeout:
            continue
        got.append(msg)
        consumer.acknowledge(msg)


def _stats(server: Standalone, topic: str) -> dict:
    with _admin(server) as admin:
        return _ok(admin.get(f"/admin/v2/{topic.replace('://', '/')}/stats")).json()


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_messages_go_both_ways_once_with_their_metadata(clusters):
    ns = _replicated_namespace(clusters)
    topic = f"persistent://{ns}/both-ways"
    with _clients(clusters) as (east, west):
        on_east = east.subscribe(topic, "reader", initial_position=pulsar.InitialPosition.Earliest)
        on_west = west.subscribe(topic, "reader", initial_position=pulsar.InitialPosition.Earliest)
        from_east = east.create_producer(topic, batching_enabled=False)
        from_west = west.create_producer(topic, batching_enabled=True, batching_max_messages=10)
        for i in range(50):
            from_east.send(f"east-{i}".encode(), properties={"i": str(i)}, partition_key=f"k{i % 3}")
        for i in range(50):
            from_west.send_async(f"west-{i}".encode(), None)
        from_west.flush()
        # a message its producer keeps local (replicate_to = ["__local__"]) stays on east
        from_east.send(b"east-only", disable_replication=True)
        expected = {f"east-{i}" for i in range(50)} | {f"west-{i}" for i in range(50)}
        for consumer, own in ((on_east, {"east-only"}), (on_west, set())):
            got = _receive_all(consumer, 100 + len(own))
            values = [m.data().decode() for m in got]
            assert len(values) == 100 + len(own) and set(values) == expected | own  # each once: no loop, no loss
        # metadata travels: the east side's properties and keys arrived on west (checked on
        # the messages west's consumer took above would need them kept; read them again).
        check = west.subscribe(topic, "metadata", initial_position=pulsar.InitialPosition.Earliest)
        seen = {m.data().decode(): m for m in _receive_all(check, 100)}
        assert seen["east-7"].properties() == {"i": "7"}
        assert seen["east-7"].partition_key() == "k1"
        path = f"/admin/v2/{topic.replace('://', '/')}/examinemessage"
        first = {"initialPosition": "earliest", "messagePosition": 1}
        with _admin(clusters[WEST]) as on_west, _admin(clusters[EAST]) as on_east:
            first_from_east, original = _ok(on_west.get(path, params=first)), _ok(on_east.get(path, params=first))
        headers = first_from_east.headers
        assert first_from_east.content == original.content == b"east-0"
        assert headers["X-Pulsar-replicated-from"] == EAST
        assert "X-Pulsar-replicated-from" not in original.headers
        for kept in ("X-Pulsar-producer-name", "X-Pulsar-sequence-id", "X-Pulsar-publish-time"):
            assert headers[kept] == original.headers[kept]
        # the replication section, and the replication cursor hidden from subscriptions
        stats = _stats(clusters[EAST], topic)
        replication = stats["replication"][WEST]
        assert replication["connected"] is True
        assert replication["replicationBacklog"] == 0
        assert replication["msgOutCounter"] == 50  # east's own messages only, not west's
        assert set(stats["subscriptions"]) == {"reader"}
        assert _stats(clusters[WEST], topic)["replication"][EAST]["msgOutCounter"] == 50
        with _admin(clusters[EAST]) as admin:
            metrics = _ok(admin.get("/metrics")).text
        labels = f'topic="{topic}",remote_cluster="{WEST}"'
        assert f"pulsar_replication_backlog{{cluster=\"{EAST}\",namespace=\"{ns}\",{labels}}} 0.0" in metrics
        assert f"pulsar_replication_connected_count{{cluster=\"{EAST}\",namespace=\"{ns}\",{labels}}} 1.0" in metrics
        with _admin(clusters[EAST]) as admin:
            assert _ok(admin.get(f"/admin/v2/{topic.replace('://', '/')}/subscriptions")).json() == ["reader"]
            # the reserved prefix cannot be taken by a subscription
            refused = admin.put(f"/admin/v2/{topic.replace('://', '/')}/subscription/pulsar.repl.x")
            assert refused.status_code == 405, refused.text


def test_a_partitioned_topic_replicates_partition_by_partition(clusters):
    ns = _replicated_namespace(clusters)
    topic = f"persistent://{ns}/parts"
    for server in clusters.values():  # each cluster has its own metadata: created on both
        with _admin(server) as admin:
            _ok(admin.put(f"/admin/v2/{topic.replace('://', '/')}/partitions", json=2))
    with _clients(clusters) as (east, west):
        on_west = west.subscribe(topic, "reader", initial_position=pulsar.InitialPosition.Earliest)
        producer = east.create_producer(topic, batching_enabled=False)
        for i in range(40):
            producer.send(f"m-{i}".encode(), partition_key=f"key-{i}")
        got = _receive_all(on_west, 40)
        assert sorted(m.data().decode() for m in got) == sorted(f"m-{i}" for i in range(40))
        assert {m.topic_name().rsplit("-", 1)[-1] for m in got} == {"0", "1"}  # both partitions


def test_a_remote_outage_loses_nothing(clusters):
    ns = _replicated_namespace(clusters)
    topic = f"persistent://{ns}/outage"
    west_server = clusters[WEST]
    west = _client(west_server)
    west.subscribe(topic, "reader", initial_position=pulsar.InitialPosition.Earliest).close()
    west.close()
    east = _client(clusters[EAST])
    try:
        producer = east.create_producer(topic, batching_enabled=False)
        for i in range(100):
            producer.send(f"m-{i}".encode())
        west_server.kill()  # kill -9 mid-stream
        for i in range(100, 300):
            producer.send(f"m-{i}".encode())  # east takes them while west is down
        _wait_for(lambda: _stats(clusters[EAST], topic)["replication"][WEST]["connected"] is False, 30,
                  "the replicator to notice west is gone")
        assert _stats(clusters[EAST], topic)["replication"][WEST]["replicationBacklog"] > 0
        west_server.restart()
        _wait_for(lambda: _stats(clusters[EAST], topic)["replication"][WEST]["replicationBacklog"] == 0, 60,
                  "the backlog to drain into west")
        west = _client(west_server)
        got = _receive_all(west.subscribe(topic, "reader"), 300)
        assert sorted(m.data().decode() for m in got) == sorted(f"m-{i}" for i in range(300))
        west.close()
    finally:
        east.close()


def test_a_restart_of_the_source_loses_nothing(clusters):
    ns = _replicated_namespace(clusters)
    topic = f"persistent://{ns}/source-restart"
    east_server = clusters[EAST]
    acked: list[str] = []
    with _clients(clusters) as (east, west):
        on_west = west.subscribe(topic, "reader", initial_position=pulsar.InitialPosition.Earliest)
        producer = east.create_producer(topic, batching_enabled=False, send_timeout_millis=60_000)
        # The first message waits for its receipt: the C++ client (3.13) takes the broker's last
        # sequence id at a reconnect as long as no receipt ever came (Java's was fixed in Pulsar
        # #2047), so a reconnect before any receipt restarts its ids below those of the
        # messages it still resends, and east's de-duplication drops the later messages and
        # acknowledges them unstored: a loss on east, before any replication.
        producer.send(b"m-0")
        acked.append("m-0")
        for i in range(1, 400):
            value = f"m-{i}"
            producer.send_async(value.encode(), lambda res, _id, v=value: acked.append(v) if res == pulsar.Result.Ok else None)
            if i == 200:
                east_server.kill()  # kill -9 while entries are on their way to west
                east_server.restart()
        producer.flush()
        assert len(acked) == 400
        got = [m.data().decode() for m in _receive_all(on_west, 400, timeout=90)]
        assert sorted(got) == sorted(acked)  # all of them, each once


def test_a_restarted_source_resumes_without_any_client(clusters):
    """Entries east could not send before it stopped go out after its restart, though no
    client loads the topic there: the broker loads the topics of replicated namespaces."""
    ns = _replicated_namespace(clusters)
    with _admin(clusters[WEST]) as admin:  # one way: west's replicator would load east's topic
        _ok(admin.post(f"/admin/v2/namespaces/{ns}/replication", json=[WEST]))
    topic = f"persistent://{ns}/no-clients"
    east_server, west_server = clusters[EAST], clusters[WEST]
    with _clients(clusters) as (east, west):
        west.subscribe(topic, "reader", initial_position=pulsar.InitialPosition.Earliest).close()
        west_server.kill()
        producer = east.create_producer(topic, batching_enabled=False)
        for i in range(50):
            producer.send(f"m-{i}".encode())
    east_server.kill()
    west_server.restart()
    east_server.restart()
    west = _client(west_server)
    try:
        got = _receive_all(west.subscribe(topic, "reader"), 50)
        assert sorted(m.data().decode() for m in got) == sorted(f"m-{i}" for i in range(50))
    finally:
        west.close()


def test_removing_a_cluster_stops_replication(clusters):
    ns = _replicated_namespace(clusters)
    topic = f"persistent://{ns}/removed"
    with _clients(clusters) as (east, west):
        on_west = west.subscribe(topic, "reader", initial_position=pulsar.InitialPosition.Earliest)
        producer = east.create_producer(topic, batching_enabled=False)
        producer.send(b"before")
        assert [m.data() for m in _receive_all(on_west, 1)] == [b"before"]
        with _admin(clusters[EAST]) as admin:
            _ok(admin.post(f"/admin/v2/namespaces/{ns}/replication", json=[EAST]))
            assert _ok(admin.get(f"/admin/v2/namespaces/{ns}/replication")).json() == [EAST]
            internal = _ok(admin.get(f"/admin/v2/{topic.replace('://', '/')}/internalStats")).json()
        assert not any(name.startswith("pulsar.repl.") for name in internal["cursors"])  # cursor dropped
        assert _stats(clusters[EAST], topic)["replication"] == {}
        for i in range(20):
            producer.send(f"after-{i}".encode())
        assert _receive_all(on_west, 0) == []


def test_a_topics_own_clusters_win_over_its_namespaces(clusters):
    ns = _replicated_namespace(clusters)
    kept, replicated = f"persistent://{ns}/kept-local", f"persistent://{ns}/replicated"
    path = f"/admin/v2/{kept.replace('://', '/')}/replication"
    with _admin(clusters[EAST]) as admin:
        assert admin.post(path, json=[EAST, "nowhere"]).status_code == 403
        assert admin.post(path, json={"clusters": [EAST]}).status_code == 400
        assert _ok(admin.get(path)).json() is None  # nothing stored: the namespace's apply
        _ok(admin.post(path, json=[EAST]))
        assert _ok(admin.get(path)).json() == [EAST]
    with _clients(clusters) as (east, west):
        on_west = {t: west.subscribe(t, "reader", initial_position=pulsar.InitialPosition.Earliest)
                   for t in (kept, replicated)}
        for t in (kept, replicated):
            producer = east.create_producer(t, batching_enabled=False)
            for i in range(10):
                producer.send(f"m-{i}".encode())
        assert len(_receive_all(on_west[replicated], 10)) == 10
        assert _receive_all(on_west[kept], 0) == []
        assert _stats(clusters[EAST], kept)["replication"] == {}
        with _admin(clusters[EAST]) as admin:
            _ok(admin.delete(path))  # back to the namespace's clusters: replicated from now on
        producer = east.create_producer(kept, batching_enabled=False)
        producer.send(b"after")
        assert [m.data() for m in _receive_all(on_west[kept], 1)] == [b"after"]


def test_bad_cluster_input_is_refused_and_nothing_is_stored(clusters):
    ns = _replicated_namespace(clusters)
    with _admin(clusters[EAST]) as admin:
        before = admin.get("/admin/v2/clusters").json()
        assert before == [EAST, WEST]
        unknown = admin.post(f"/admin/v2/namespaces/{ns}/replication", json=[EAST, "nowhere"])
        assert unknown.status_code == 403 and "Invalid cluster id: nowhere" in unknown.json()["reason"]
        assert admin.post(f"/admin/v2/namespaces/{ns}/replication", json=[]).status_code == 412
        assert admin.post(f"/admin/v2/namespaces/{ns}/replication", json="east").status_code == 400
        assert admin.get(f"/admin/v2/namespaces/{ns}/replication").json() == [EAST, WEST]  # unchanged
        created = admin.put(f"/admin/v2/namespaces/{ns}-2", json={"replication_clusters": ["nowhere"]})
        assert created.status_code == 403
        assert admin.get(f"/admin/v2/namespaces/{ns}-2").status_code == 404  # not created
        missing = admin.post("/admin/v2/namespaces/public/no-such-ns/replication", json=[EAST])
        assert missing.status_code == 404
        for body in ({"serviceUrl": "not a url"}, {"serviceUrl": "ftp://h:1"},
                     {"serviceUrl": "http://h:1", "brokerServiceUrl": "http://h:2"},
                     {"serviceUrl": "http://h:99999"}, {"brokerServiceUrl": "pulsar://h:1"}, ["x"],
                     {"serviceUrl": "http://h:1", "proxyServiceUrl": "pulsar://p:1"}):
            refused = admin.put("/admin/v2/clusters/bad", json=body)
            assert refused.status_code == 400, (body, refused.text)
        assert admin.get("/admin/v2/clusters/bad").status_code == 404
        assert admin.put("/admin/v2/clusters/Bad Name!", json={"serviceUrl": "http://h:1"}).status_code == 400
        assert admin.get("/admin/v2/clusters").json() == before  # nothing stored
        assert admin.put(f"/admin/v2/clusters/{WEST}", json={"serviceUrl": "http://h:1"}).status_code == 409
        assert admin.delete(f"/admin/v2/clusters/{WEST}").status_code == 412  # replicated to
        assert admin.delete(f"/admin/v2/clusters/{EAST}").status_code == 412  # the local one
        assert admin.delete("/admin/v2/clusters/nowhere").status_code == 404
        assert admin.post("/admin/v2/clusters/nowhere", json={"serviceUrl": "http://h:1"}).status_code == 404
        # a cluster that nothing uses is created, updated, read and deleted
        _ok(admin.put("/admin/v2/clusters/spare", json={"serviceUrl": "http://h:1", "brokerServiceUrl": "pulsar://h:2"}))
        _ok(admin.post("/admin/v2/clusters/spare", json={"serviceUrl": "http://h:3", "brokerServiceUrl": "pulsar://h:4"}))
        assert admin.get("/admin/v2/clusters/spare").json()["brokerServiceUrl"] == "pulsar://h:4"
        _ok(admin.delete("/admin/v2/clusters/spare"))
        assert admin.get("/admin/v2/clusters").json() == before


def _cli(server: Standalone, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taureau.cli.main", "admin", "--admin-url", server.admin_url, *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_verbs(clusters):
    east = clusters[EAST]
    listed = _cli(east, "clusters", "list")
    assert listed.returncode == 0 and EAST in listed.stdout and WEST in listed.stdout
    got = _cli(east, "clusters", "get", WEST)
    assert got.returncode == 0 and clusters[WEST].service_url in got.stdout
    created = _cli(east, "clusters", "create", "cli-made", "--url", "http://h:1", "--broker-url", "pulsar://h:2")
    assert created.returncode == 0, created.stderr
    assert _cli(east, "clusters", "update", "cli-made", "--url", "http://h:5").returncode == 0
    assert _cli(east, "clusters", "delete", "cli-made").returncode == 0
    topic = f"persistent://public/default/cli-{uuid.uuid4().hex[:8]}"
    assert _cli(east, "topics", "create", topic).returncode == 0
    assert _cli(east, "topics", "set-replication-clusters", topic, "--clusters", EAST).returncode == 0
    assert EAST in _cli(east, "topics", "get-replication-clusters", topic).stdout
    assert _cli(east, "topics", "remove-replication-clusters", topic).returncode == 0
    bad_url = _cli(east, "clusters", "create", "x", "--url", "not-a-url")
    assert bad_url.returncode == 2 and "Traceback" not in bad_url.stderr
    ns = f"public/cli-{uuid.uuid4().hex[:8]}"
    assert _cli(east, "namespaces", "create", ns).returncode == 0
    assert _cli(east, "namespaces", "set-clusters", ns, "--clusters", f"{EAST},{WEST}").returncode == 0
    shown = _cli(east, "namespaces", "get-clusters", ns)
    assert shown.returncode == 0 and WEST in shown.stdout
    refused = _cli(east, "namespaces", "set-clusters", ns, "--clusters", "nowhere")
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0 and "Invalid cluster id" in refused.stderr
    help_text = _cli(east, "clusters", "--help")
    assert help_text.returncode == 0 and all(v in help_text.stdout for v in ("create", "update", "delete", "list"))


def test_a_replicators_resends_are_dropped_by_the_remotes_deduplication(clusters):
    """Another cluster's replicator (Taureau's own binary-protocol producer) resends entries
    after a reconnect: the remote keys them on their original producer and sequence ids."""
    ns = _replicated_namespace(clusters, [WEST])  # west alone: nothing replicated onwards
    topic = f"persistent://{ns}/resent"

    def entry(origin: str, seq: int) -> OutgoingEntry:
        meta = pb.MessageMetadata(producer_name=origin, sequence_id=seq, publish_time=1, replicated_from="elsewhere")
        return OutgoingEntry(encode_entry(meta, f"{origin}-{seq}".encode()), seq, seq, 1)

    # Two original producers whose sequence ids overlap, interleaved as a topic stores them.
    stream = [entry(origin, seq) for seq in range(10) for origin in ("p1", "p2")]

    async def replicate() -> None:
        url = clusters[WEST].service_url
        first = await RemoteProducer.open(url, topic, "pulsar.repl.elsewhere")
        await first.send(stream[:14], 10)
        await first.close()
        again = await RemoteProducer.open(url, topic, "pulsar.repl.elsewhere")
        await again.send(stream[8:], 10)  # 8..13 are resends
        await again.close()

    asyncio.run(replicate())
    stats = _stats(clusters[WEST], topic)
    assert stats["msgInCounter"] == 20 and stats["entriesCount"] == 20


def test_the_replicators_producer_reports_an_unreachable_or_refusing_remote():
    async def attempts() -> list[str]:
        errors = []
        for url in (f"pulsar://127.0.0.1:{free_port()}", "http://127.0.0.1:1"):
            try:
                await RemoteProducer.open(url, "persistent://public/default/x", "pulsar.repl.a", timeout=5)
            except RemoteError as exc:
                errors.append(str(exc))
        return errors

    errors = asyncio.run(attempts())
    assert len(errors) == 2
    assert "cannot connect" in errors[0] and "pulsar://host:port" in errors[1]
