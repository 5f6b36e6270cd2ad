"""Functions across several real `taureau functions-worker` processes on one real ZooKeeper,
beside a `taureau broker` on two bookies: a function's instances spread over the workers,
status from any worker, instance calls redirected to the worker running the instance; kill -9
of a worker moves its instances to the others and the function goes on (at-least-once); kill
-9 of the leader: another takes over."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid

import httpx
import pulsar
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from tests.e2e.bookies import BookieProcess
from tests.e2e.brokers import BrokerProcess
from tests.e2e.function_workers import FunctionsWorkerProcess
from tests.e2e.functions_helpers import EXAMPLES, status, taureau, wait_for
from tests.e2e.harness import Standalone

FQFN_PATH = "/admin/v3/functions/public/default"


@pytest.fixture
def cluster(zookeeper, tmp_path):
    url = f"{zookeeper.url}/t/fnworkers-{uuid.uuid4().hex[:8]}"
    started: list = []
    bookies = [BookieProcess(tmp_path / f"bookie{i}", url).start() for i in range(2)]
    started += bookies
    broker = BrokerProcess(tmp_path / "broker", url).start()
    started.append(broker)

    def worker(name: str) -> FunctionsWorkerProcess:
        w = FunctionsWorkerProcess(tmp_path / name, url, broker.service_url, broker.web_url).start()
        started.append(w)
        return w

    yield url, broker, worker
    for process in reversed(started):
        if process.proc is not None:
            process.stop()


@contextlib.contextmanager
def _zk(url: str):
    """A kazoo client rooted at the cluster's chroot (the test reads and writes nodes itself)."""
    hosts, _, chroot = url.removeprefix("zk://").partition("/")
    root = KazooClient(hosts=hosts)
    root.start(10)
    root.ensure_path(f"/{chroot}")
    root.stop()
    root.close()
    zk = KazooClient(hosts=f"{hosts}/{chroot}")
    zk.start(10)
    try:
        yield zk
    finally:
        zk.stop()
        zk.close()


def _leader(url: str) -> str:
    with _zk(url) as zk:
        return zk.get("/functions/leader")[0].decode()


def _placement(worker, name: str) -> dict[int, str]:
    """instance id -> worker id of the running instances, as `status` at `worker` answers."""
    got = status(worker, name)
    return {e["instanceId"]: e["status"]["workerId"] for e in got["instances"] if e["status"]["running"]}


def _outputs(consumer, expected: set[bytes], timeout_s: float = 60.0) -> set[bytes]:
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout_s
    while not expected <= seen and time.monotonic() < deadline:
        try:
            message = consumer.receive(1000)
        except pulsar.Timeout:
            continue
        consumer.acknowledge(message)
        seen.add(message.data())
    return seen


def _produce(producer, tag: str, n: int) -> set[bytes]:
    for i in range(n):
        producer.send(f"{tag}-{i}".encode())
    return {f"{tag}-{i}!".encode() for i in range(n)}


def test_instances_spread_over_workers_move_when_one_dies_and_a_new_leader_takes_over(cluster):
    url, broker, start_worker = cluster
    w1, w2 = start_worker("w1"), start_worker("w2")
    name = f"spread-{uuid.uuid4().hex[:6]}"
    source, sink = f"{name}-in", f"{name}-out"
    code, _, err = taureau(w1, "create", "--name", name, "--py", str(EXAMPLES / "exclamation.py"),
                           "--classname", "exclamation.Exclamation", "--inputs", source, "--output", sink,
                           "--parallelism", "4")
    assert code == 0, err
    # Spread: two instances on each worker, as the status at either worker says.
    placement = wait_for(lambda: len(p := _placement(w2, name)) == 4 and p, timeout=60, what="4 instances")
    assert sorted(placement.values()).count(w1.worker_id) == 2
    assert sorted(placement.values()).count(w2.worker_id) == 2
    assert _placement(w1, name) == placement
    code, listed, err = taureau(w2, "list")
    assert code == 0 and name in listed, err

    # One instance's status at the worker not running it: a 307 to the one that is.
    elsewhere = next(i for i, w in placement.items() if w == w2.worker_id)
    answer = httpx.get(f"{w1.admin_url}{FQFN_PATH}/{name}/{elsewhere}/status")
    assert answer.status_code == 307
    assert answer.headers["location"] == f"{w2.admin_url}{FQFN_PATH}/{name}/{elsewhere}/status"
    code, out, err = taureau(w1, "status", "--name", name, "--instance-id", str(elsewhere))
    assert code == 0 and w2.worker_id in out, err  # the CLI follows it
    code, _, err = taureau(w2, "status", "--name", "no-such-function")
    assert code == 1 and "does not exist" in err

    # Bad assignment nodes, written behind the leader's back: logged and ignored, the worker
    # keeps its instances and keeps serving (the leader rewrites the nodes at its next pass).
    with _zk(url) as zk:
        zk.set(f"/functions/assignments/{w2.worker_id}", b"\x00 not json")
        wait_for(lambda: any("are corrupt" in line for line in w2.output), what="the corrupt node logged")
        unknown = {"functions": {"public/default/nobody": {"version": 0, "instances": [0]}}}
        zk.set(f"/functions/assignments/{w2.worker_id}", json.dumps(unknown).encode())
        zk.create("/functions/assignments/10.9.9.9:1", json.dumps(unknown).encode())  # no such worker
        wait_for(lambda: any("public/default/nobody, which does not exist" in line for line in w2.output),
                 what="the unknown function logged")
        wait_for(lambda: not zk.exists("/functions/assignments/10.9.9.9:1"), what="the stray node dropped")
    wait_for(lambda: _placement(w1, name) == placement, timeout=30, what="the instances as they were")

    client = pulsar.Client(broker.service_url, operation_timeout_seconds=30,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        consumer = client.subscribe(sink, "check", initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(source)
        expected = _produce(producer, "before", 40)
        assert _outputs(consumer, expected) >= expected

        # kill -9 of the worker that is not the leader: its instances start on the other.
        leader = _leader(url)
        victim, survivor = (w2, w1) if leader == w1.worker_id else (w1, w2)
        victim.kill()
        killed = time.monotonic()
        expected = _produce(producer, "after-worker", 40)
        wait_for(lambda: set(_placement(survivor, name).values()) == {survivor.worker_id}
                 and len(_placement(survivor, name)) == 4, timeout=60, what="all instances on the survivor")
        moved_s = time.monotonic() - killed
        assert moved_s < 30, moved_s  # 2 s session timeout, then a leader pass and the starts
        assert _outputs(consumer, expected) >= expected  # sent after the kill: all processed

        # A third worker joins (nothing moves to it) and a rebalance, asked at it, spreads the
        # instances anew; then kill -9 of the leader: w3 takes over and runs every instance.
        w3 = start_worker("w3")
        assert _leader(url) == survivor.worker_id
        rebalanced = subprocess.run([sys.executable, "-m", "taureau.cli.main", "admin", "--admin-url", w3.admin_url,
                                     "functions-worker", "rebalance"], capture_output=True, text=True, timeout=60)
        assert rebalanced.returncode == 0, rebalanced.stderr
        wait_for(lambda: sorted(_placement(w3, name).values()) == sorted([survivor.worker_id, w3.worker_id] * 2),
                 timeout=60, what="two instances on each after the rebalance")
        survivor.kill()
        wait_for(lambda: _leader_or_none(url) == w3.worker_id, timeout=60, what="w3 leading")
        expected = _produce(producer, "after-leader", 40)
        wait_for(lambda: len(_placement(w3, name)) == 4, timeout=60, what="all instances on w3")
        assert _outputs(consumer, expected) >= expected
    finally:
        client.close()


def _leader_or_none(url: str) -> str | None:
    try:
        return _leader(url)
    except NoNodeError:  # between two holders
        return None


def test_every_verb_works_from_any_worker_and_state_is_one_table(cluster):
    """Instances of a stateful function on two workers: counters are one table (held by the
    worker of instance 0; the other worker's instance reaches it through that worker), stop,
    querystate, invoke and delete work at either worker."""
    url, broker, start_worker = cluster
    w1, w2 = start_worker("w1"), start_worker("w2")
    name = f"wc-{uuid.uuid4().hex[:6]}"
    source, sink = f"{name}-in", f"{name}-out"
    code, _, err = taureau(w2, "create", "--name", name, "--py", str(EXAMPLES / "wordcount_function.py"),
                           "--classname", "wordcount_function.WordCountFunction", "--inputs", source,
                           "--output", sink, "--parallelism", "2")
    assert code == 0, err
    placement = wait_for(lambda: len(p := _placement(w1, name)) == 2 and p, timeout=60, what="2 instances")
    assert set(placement.values()) == {w1.worker_id, w2.worker_id}
    holder = w1 if placement[0] == w1.worker_id else w2
    other = w2 if holder is w1 else w1

    # Instance 0 stopped (at the worker not running it): only instance 1 consumes, on the
    # worker without the table, so every counter op goes to the holder's table.
    code, _, err = taureau(other, "stop", "--name", name, "--instance-id", "0")
    assert code == 0, err
    wait_for(lambda: _placement(holder, name) == {1: other.worker_id}, timeout=30, what="instance 0 stopped")
    client = pulsar.Client(broker.service_url, operation_timeout_seconds=30,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        consumer = client.subscribe(sink, "check", initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(source)
        for i in range(10):
            producer.send(f"apple pie {i}".encode())
        expected = {f"apple pie {i}!".encode() for i in range(10)}
        assert _outputs(consumer, expected) >= expected
    finally:
        client.close()
    for worker in (w1, w2):  # the holder answers; the other redirects and the CLI follows
        code, text, err = taureau(worker, "querystate", "--name", name, "--key", "apple")
        assert code == 0, err
        assert json.loads(text)["numberValue"] >= 10  # at-least-once: a redelivery may count twice
    answer = httpx.get(f"{other.admin_url}{FQFN_PATH}/{name}/state/apple")
    assert answer.status_code == 307 and answer.headers["location"].startswith(holder.admin_url)

    # Invoke at the worker whose only instance is stopped: sent to the one running.
    code, text, err = taureau(holder, "invoke", "--name", name, "--data", "one")
    assert code == 0 and text.strip() == "one!", err
    stats = httpx.get(f"{holder.admin_url}{FQFN_PATH}/{name}/stats").json()
    assert [e["instanceId"] for e in stats["instances"]] == [1] and stats["receivedTotal"] >= 10

    # Bad state ops at the holder: refused with a reason, nothing stored, the worker goes on.
    bad = httpx.post(f"{holder.admin_url}{FQFN_PATH}/{name}/state-op", params={"op": "incr", "key": "k",
                                                                                "amount": "x"})
    assert bad.status_code == 422
    bad = httpx.post(f"{holder.admin_url}{FQFN_PATH}/{name}/state-op", params={"op": "nope", "key": "k"})
    assert bad.status_code == 200 and bad.json()["header"] == {"ok": False, "error": "unknown state op 'nope'",
                                                               "kind": "FunctionError"}
    big = httpx.post(f"{holder.admin_url}{FQFN_PATH}/{name}/state-op", params={"op": "put", "key": "k"},
                     content=b"x" * (3 * 1024 * 1024))
    assert big.status_code == 413
    code, _, err = taureau(other, "querystate", "--name", name, "--key", "k")
    assert code == 1 and "no state for key 'k'" in err  # neither bad op stored anything
    code, text, _ = taureau(other, "querystate", "--name", name, "--key", "apple")
    assert code == 0 and json.loads(text)["numberValue"] >= 10

    code, _, err = taureau(other, "delete", "--name", name)
    assert code == 0, err
    for worker in (w1, w2):
        assert httpx.get(f"{worker.admin_url}{FQFN_PATH}/{name}/status").status_code == 404
        assert name not in taureau(worker, "list")[1]
        # Its deployment is closed on both (the holder's when the leader drops its assignment).
        wait_for(lambda w=worker: f'fqfn="public/default/{name}"' not in httpx.get(f"{w.admin_url}/metrics").text,
                 timeout=30, what="the deployment closed")


def _count(worker, name: str, key: str) -> int | None:
    code, text, _ = taureau(worker, "querystate", "--name", name, "--key", key)
    return json.loads(text)["numberValue"] if code == 0 else None


def test_the_state_table_moves_with_instance_0_and_keeps_every_count(cluster):
    """kill -9 of the worker holding a function's table (it runs instance 0): the other worker
    takes instance 0, opens the table from the bookies (fencing the dead holder's ledger), and
    every count answered before the kill is still there."""
    url, broker, start_worker = cluster
    w1, w2 = start_worker("w1"), start_worker("w2")
    name = f"wcmove-{uuid.uuid4().hex[:6]}"
    code, _, err = taureau(w1, "create", "--name", name, "--py", str(EXAMPLES / "wordcount_function.py"),
                           "--classname", "wordcount_function.WordCountFunction", "--inputs", f"{name}-in",
                           "--output", f"{name}-out", "--parallelism", "2")
    assert code == 0, err
    placement = wait_for(lambda: len(p := _placement(w1, name)) == 2 and p, timeout=60, what="2 instances")
    holder, other = (w1, w2) if placement[0] == w1.worker_id else (w2, w1)
    client = pulsar.Client(broker.service_url, operation_timeout_seconds=30,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        consumer = client.subscribe(f"{name}-out", "check", initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(f"{name}-in")
        expected = _produce(producer, "pear", 10)
        assert _outputs(consumer, expected) >= expected
        before = _count(other, name, "pear-1")  # each message counts its own word once
        assert before is not None and before >= 1

        holder.kill()
        wait_for(lambda: _placement(other, name) == {0: other.worker_id, 1: other.worker_id}, timeout=60,
                 what="both instances on the other worker")
        expected = _produce(producer, "pear", 10)  # the same words again: each count grows
        assert _outputs(consumer, expected) >= expected
    finally:
        client.close()
    for i in range(10):
        after = wait_for(lambda i=i: (c := _count(other, name, f"pear-{i}")) is not None and c >= 2 and c,
                         timeout=30, what=f"pear-{i} counted twice")
        assert after >= 2  # what was counted before the kill is kept, and counting goes on
    assert _count(other, name, "pear-1") >= before + 1


def test_a_standalone_with_functions_refuses_a_store_with_cluster_workers(tmp_path, zk_url):
    """Its worker alone would deploy every function a second time beside the cluster's."""
    with _zk(zk_url) as zk:
        zk.create("/functions/workers/127.0.0.1:1", b'{"url": "http://127.0.0.1:1"}', ephemeral=True,
                  makepath=True)
        refused = subprocess.run(
            [sys.executable, "-m", "taureau.cli.main", "standalone", "--data-dir", str(tmp_path / "s"),
             "--metadata-store", zk_url, "--no-state", "--broker-port", "0", "--web-port", "0"],
            capture_output=True, text=True, timeout=120,
        )
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if line.startswith("taureau standalone:")]
    assert len(lines) == 1 and "function workers of a cluster are registered" in lines[0], refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr


def test_a_cluster_worker_refuses_a_store_where_a_standalone_runs_functions(tmp_path, zk_url):
    standalone = Standalone(tmp_path / "s", "--metadata-store", zk_url, "--no-state").start()
    try:
        refused = subprocess.run(
            [sys.executable, "-m", "taureau.cli.main", "functions-worker", "--metadata-store", zk_url,
             "--data-dir", str(tmp_path / "w"), "--web-port", "0", "--bind-address", "127.0.0.1",
             "--broker-service-url", standalone.service_url, "--broker-admin-url", standalone.admin_url],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        assert standalone.stop() == 0
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if line.startswith("taureau functions-worker:")]
    assert len(lines) == 1 and "start it with --no-functions" in lines[0], refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr
    with _zk(zk_url) as zk:  # the standalone's mark went with its session; nothing of the worker stayed
        assert not zk.exists("/functions/alone")
        assert not zk.exists("/functions/workers") or not zk.get_children("/functions/workers")
