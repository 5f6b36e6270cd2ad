"""Beyond Pulsar's Python runtime: windows, cron, HTTP invoke, trigger, shared state (durable
and ephemeral), scaling to zero and back, and per-function requirements."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import zipfile

import httpx
import pulsar

from tests.e2e.functions_helpers import (
    EXAMPLES,
    assert_nothing_more,
    create,
    receive_all,
    status,
    taureau,
    wait_for,
    wait_running,
)

STANDALONE = {"state": True}


def _earliest(client, topic: str):
    return client.subscribe(topic, "check", initial_position=pulsar.InitialPosition.Earliest)


SUM_WINDOW = "def process(records, context):\n    return str(sum(int(r.value) for r in records))\n"


def test_count_window(standalone, client, tmp_path):
    (tmp_path / "sum_window.py").write_text(SUM_WINDOW)
    create(standalone, "cwin", tmp_path / "sum_window.py", "sum_window", "--inputs", "cwin-in", "--output",
           "cwin-out", "--window-length-count", "3")
    wait_running(standalone, "cwin")
    out = _earliest(client, "cwin-out")
    producer = client.create_producer("cwin-in")
    for i in range(1, 8):
        producer.send(b"%d" % i)
    assert [m.data() for m in receive_all(out, 2)] == [b"6", b"15"]  # 1+2+3, 4+5+6; 7 waits
    assert_nothing_more(out)


def test_processing_time_window(standalone, client, tmp_path):
    (tmp_path / "sum_window2.py").write_text(SUM_WINDOW)
    create(standalone, "twin", tmp_path / "sum_window2.py", "sum_window2", "--inputs", "twin-in", "--output",
           "twin-out", "--window-length-duration-ms", "500")
    wait_running(standalone, "twin")
    out = _earliest(client, "twin-out")
    producer = client.create_producer("twin-in")
    for i in range(10):
        producer.send(b"%d" % i)
    total = 0
    deadline = time.monotonic() + 10
    while total < 45 and time.monotonic() < deadline:
        total += int(receive_all(out, 1)[0].data())
    assert total == 45  # every record lands in exactly one tumbling window


def test_event_time_window_sends_late_records_to_the_late_topic(standalone, client, tmp_path):
    (tmp_path / "evt.py").write_text(
        "class Extractor:\n    def extract_timestamp(self, value):\n        return int(value.split(':')[0])\n\n"
        "def process(records, context):\n    return ','.join(r.value.split(':')[1] for r in records)\n")
    late = _earliest(client, "evt-late")
    create(standalone, "evt", tmp_path / "evt.py", "evt", "--inputs", "evt-in", "--output", "evt-out",
           "--window-length-duration-ms", "1000", "--timestamp-extractor-classname", "evt.Extractor",
           "--max-lag-ms", "0", "--watermark-emit-interval-ms", "50", "--late-data-topic", "evt-late")
    wait_running(standalone, "evt")
    out = _earliest(client, "evt-out")
    producer = client.create_producer("evt-in")
    for value in (b"1100:a", b"1900:b", b"1500:c", b"2300:d"):  # d's time closes [1000, 2000)
        producer.send(value)
    assert receive_all(out, 1)[0].data() == b"a,c,b"  # in event-time order
    producer.send(b"1200:late")
    assert late.receive(10_000).data() == b"1200:late"
    producer.send(b"3100:e")  # closes [2000, 3000)
    assert receive_all(out, 1)[0].data() == b"d"


def test_cron_schedule_runs_the_function_periodically(standalone, client, tmp_path):
    (tmp_path / "tick.py").write_text("def process(when):\n    return 'tick ' + when\n")
    out = _earliest(client, "tick-out")
    create(standalone, "tick", tmp_path / "tick.py", "tick", "--output", "tick-out", "--schedule", "* * * * * *")
    first, second = (m.data().decode() for m in receive_all(out, 2, 10_000))
    assert first.startswith("tick 20") and first.endswith("Z") and first != second


def test_http_invoke_request_response(standalone, tmp_path):
    (tmp_path / "rev.py").write_text(
        "def process(x):\n    if x == 'fail':\n        raise ValueError('no')\n    return x[::-1]\n")
    create(standalone, "rev", tmp_path / "rev.py", "rev")
    wait_running(standalone, "rev")
    url = f"{standalone.admin_url}/functions/public/default/rev"
    response = httpx.post(url, content=b"stressed")
    assert response.status_code == 200 and response.content == b"desserts"
    failed = httpx.post(url, content=b"fail")
    assert failed.status_code == 500
    assert failed.json()["reason"] == "ValueError: no" and "raise ValueError('no')" in failed.json()["stackTrace"]
    code, out, _ = taureau(standalone, "invoke", "--name", "rev", "--data", "abc")
    assert code == 0 and out.strip() == "cba"
    assert httpx.post(url, content=b"x" * (6 * 1024 * 1024)).status_code == 413
    assert httpx.post(url, content=b"still-up").content == b"pu-llits"


def test_trigger_publishes_and_returns_the_output(standalone):
    create(standalone, "trig", EXAMPLES / "exclamation_function.py", "exclamation_function.ExclamationFunction",
           "--inputs", "trig-in", "--output", "trig-out")
    wait_running(standalone, "trig")
    code, out, err = taureau(standalone, "trigger", "--name", "trig", "--trigger-value", "pulled")
    assert code == 0, err
    assert out.strip() == "pulled!"
    code, _, err = taureau(standalone, "trigger", "--name", "trig", "--trigger-value", "x", "--topic", "nope")
    assert code == 1 and "is not an input topic" in err


def test_counters_are_shared_by_all_instances(standalone, client):
    create(standalone, "wc2", EXAMPLES / "wordcount_function.py", "wordcount_function.WordCountFunction",
           "--inputs", "wc2-in", "--output", "wc2-out", "--parallelism", "2")
    wait_running(standalone, "wc2", 2)
    out = _earliest(client, "wc2-out")
    producer = client.create_producer("wc2-in", batching_enabled=False)
    for _ in range(100):
        producer.send(b"same word")
    receive_all(out, 100)
    state = json.loads(taureau(standalone, "querystate", "--name", "wc2", "--key", "same")[1])
    assert state["numberValue"] == 100
    per_instance = wait_for(lambda: (n := [i["status"]["numReceived"] for i in status(standalone, "wc2")["instances"]])
                            and sum(n) == 100 and n, what="both instances to report their counts")
    assert all(n > 0 for n in per_instance)
    keys = httpx.get(f"{standalone.admin_url}/admin/v3/functions/public/default/wc2/state").json()
    assert keys == ["same", "word"]
    assert httpx.delete(f"{standalone.admin_url}/admin/v3/functions/public/default/wc2/state/word").status_code == 204
    code, _, err = taureau(standalone, "querystate", "--name", "wc2", "--key", "word")
    assert code == 1 and "404" in err
    code, _, err = taureau(standalone, "putstate", "--name", "wc2", "--state", '{"key": "same", "numberValue": 7}')
    assert code == 0, err
    assert json.loads(taureau(standalone, "querystate", "--name", "wc2", "--key", "same")[1])["numberValue"] == 7
    code, _, err = taureau(standalone, "putstate", "--name", "wc2", "--state", '{"key": "b", "byteValue": "**"}')
    assert code == 1 and "byteValue must be base64" in err
    encoded = base64.b64encode(b"\xff\x00").decode()
    assert taureau(standalone, "putstate", "--name", "wc2", "--state", json.dumps({"key": "b", "byteValue": encoded}))[0] == 0
    assert json.loads(taureau(standalone, "querystate", "--name", "wc2", "--key", "b")[1])["byteValue"] == encoded


def test_two_functions_share_ephemeral_state(standalone, client, tmp_path):
    (tmp_path / "writer.py").write_text(
        "def process(x, context):\n"
        "    key, value = x.split('=')\n"
        "    context.ephemeral_state().hash_table('latest').upsert(key.encode(), value.encode())\n")
    (tmp_path / "reader.py").write_text(
        "def process(key, context):\n"
        "    table = context.ephemeral_state(of='public/default/eph-writer').hash_table('latest')\n"
        "    return table.get(key.encode())\n")
    create(standalone, "eph-writer", tmp_path / "writer.py", "writer", "--inputs", "eph-in", "--parallelism", "2")
    create(standalone, "eph-reader", tmp_path / "reader.py", "reader")
    wait_running(standalone, "eph-writer", 2)
    wait_running(standalone, "eph-reader")
    producer = client.create_producer("eph-in", batching_enabled=False)
    for i in range(20):
        producer.send(b"k%d=v%d" % (i, i))
    url = f"{standalone.admin_url}/functions/public/default/eph-reader"
    wanted = [b"v%d" % i for i in range(20)]

    def read_all() -> list[bytes]:
        return [httpx.post(url, content=b"k%d" % i).content for i in range(20)]

    # Two writer instances share the input: the one with k19 can be done before the other
    # has stored k0, so wait for every key, not the last one sent.
    wait_for(lambda: read_all() == wanted, what="the writer's state")
    assert read_all() == wanted
    assert taureau(standalone, "delete", "--name", "eph-writer")[0] == 0
    assert httpx.post(url, content=b"k1").status_code == 500  # the writer's space went with it


def test_scale_from_zero_to_n_and_back(standalone, client, tmp_path):
    (tmp_path / "slow.py").write_text("import time\n\ndef process(x):\n    time.sleep(0.02)\n    return x\n")
    create(standalone, "elastic", tmp_path / "slow.py", "slow", "--inputs", "el-in", "--output", "el-out",
           "--min-instances", "0", "--max-instances", "3", "--idle-timeout-ms", "1500")
    assert status(standalone, "elastic")["numInstances"] == 0
    out = _earliest(client, "el-out")
    producer = client.create_producer("el-in", batching_enabled=False)
    started = time.monotonic()
    producer.send(b"wake")
    assert receive_all(out, 1)[0].data() == b"wake"
    wake_s = time.monotonic() - started
    assert wake_s < 5.0
    assert status(standalone, "elastic")["lastScalingDecision"]["reason"].startswith("woke up")
    for i in range(600):  # about 12 s of work for one instance: it must scale out
        producer.send_async(b"%d" % i, None)
    producer.flush()
    peak = wait_for(lambda: (t := status(standalone, "elastic")["targetInstances"]) > 1 and t, timeout=15,
                    what="a scale-out")
    assert 1 < peak <= 3
    receive_all(out, 600, 30_000)
    final = wait_for(lambda: (s := status(standalone, "elastic"))["numInstances"] == 0 and s, timeout=20,
                     what="a scale-in to zero")
    assert final["lastScalingDecision"]["reason"].startswith("idle for")
    assert final["lastScalingDecision"]["to"] == 0


def test_http_invoke_wakes_a_function_at_zero(standalone, tmp_path):
    (tmp_path / "hello.py").write_text("def process(name):\n    return 'hello ' + name\n")
    create(standalone, "sleepy", tmp_path / "hello.py", "hello", "--min-instances", "0", "--max-instances", "1")
    assert status(standalone, "sleepy")["numInstances"] == 0
    response = httpx.post(f"{standalone.admin_url}/functions/public/default/sleepy", content=b"you", timeout=30)
    assert response.status_code == 200 and response.content == b"hello you"
    assert status(standalone, "sleepy")["numRunning"] == 1


def _wheel(directory, name: str, module: str, source: str) -> str:
    """A minimal pure-Python wheel, written by hand (no build tools, no network)."""
    dist = f"{name.replace('-', '_')}-1.0"
    path = os.path.join(directory, f"{dist}-py3-none-any.whl")
    files = {
        f"{module}.py": source.encode(),
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for n, d in files.items()]
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + f"\n{dist}.dist-info/RECORD,,\n").encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    return path


def test_requirements_are_installed_per_function_and_shared(standalone, client, tmp_path):
    wheel = _wheel(tmp_path, "taureau-test-shout", "shout", "def shout(x):\n    return x.upper() + '!!'\n")
    package = tmp_path / "shouter.zip"
    with zipfile.ZipFile(package, "w") as z:
        z.writestr("shouter/src/shouter.py", "from shout import shout\n\ndef process(x):\n    return shout(x)\n")
        z.writestr("shouter/requirements.txt", "--no-index\ntaureau-test-shout==1.0\n")
        z.write(wheel, f"shouter/deps/{os.path.basename(wheel)}")
    create(standalone, "shouter", package, "shouter", "--inputs", "sh-in", "--output", "sh-out")
    create(standalone, "shouter2", package, "shouter", "--inputs", "sh2-in", "--output", "sh2-out")
    wait_running(standalone, "shouter")
    out = _earliest(client, "sh-out")
    client.create_producer("sh-in").send(b"quiet")
    assert receive_all(out, 1)[0].data() == b"QUIET!!"
    envs = [e for e in os.listdir(standalone.data_dir / "functions" / "envs") if not e.endswith(".tmp")]
    assert len(envs) == 1  # both functions use the one environment
    missing = tmp_path / "missing.zip"
    with zipfile.ZipFile(missing, "w") as z:
        z.writestr("m/src/m.py", "def process(x):\n    return x\n")
        z.writestr("m/requirements.txt", "--no-index\nno-such-package-anywhere==9.9\n")
    code, _, err = taureau(standalone, "create", "--name", "m", "--py", str(missing), "--classname", "m")
    assert code == 1 and "installing requirements failed" in err


def test_topics_pattern_takes_every_matching_topic(standalone, client, tmp_path):
    create(standalone, "pattern", EXAMPLES / "exclamation_function.py", "exclamation_function.ExclamationFunction",
           "--topics-pattern", "persistent://public/default/pat-.*", "--output", "pattern-out")
    for topic in ("pat-a", "pat-b"):  # created before the function subscribes
        client.create_producer(topic).close()
    wait_running(standalone, "pattern")
    out = _earliest(client, "pattern-out")
    time.sleep(0.5)
    client.create_producer("pat-a").send(b"a")
    client.create_producer("pat-b").send(b"b")
    client.create_producer("other-c").send(b"c")
    assert sorted(m.data() for m in receive_all(out, 2)) == [b"a!", b"b!"]
    assert_nothing_more(out)


def test_a_wheel_package(standalone, client, tmp_path):
    wheel = _wheel(tmp_path, "taureau-test-wheelfn", "wheelfn", "def process(x):\n    return 'wheel:' + x\n")
    create(standalone, "wheeled", wheel, "wheelfn", "--inputs", "wh-in", "--output", "wh-out")
    wait_running(standalone, "wheeled")
    out = _earliest(client, "wh-out")
    client.create_producer("wh-in").send(b"x")
    assert receive_all(out, 1)[0].data() == b"wheel:x"


def test_retain_key_ordering_keeps_each_key_in_order_across_instances(standalone, client, tmp_path):
    (tmp_path / "keyed.py").write_text(
        "import time\n\ndef process(x, context):\n    time.sleep(0.001)\n"
        "    return f'{context.get_message_key()}:{x}:{context.get_instance_id()}'\n")
    create(standalone, "keyed", tmp_path / "keyed.py", "keyed", "--inputs", "key-in", "--output", "key-out",
           "--retain-key-ordering", "--parallelism", "2")
    wait_running(standalone, "keyed", 2)
    out = _earliest(client, "key-out")
    producer = client.create_producer("key-in", batching_enabled=False)
    for i in range(200):
        producer.send(b"%d" % i, partition_key=f"k{i % 8}")
    seen: dict[str, list[int]] = {}
    instances: dict[str, set[str]] = {}
    for message in receive_all(out, 200):
        key, value, instance = message.data().decode().split(":")
        seen.setdefault(key, []).append(int(value))
        instances.setdefault(key, set()).add(instance)
    assert all(values == sorted(values) for values in seen.values())  # per-key order kept
    assert all(len(ids) == 1 for ids in instances.values())  # a key stays on one instance


def test_user_metrics_on_the_metrics_endpoint(standalone, client, tmp_path):
    (tmp_path / "metered.py").write_text(
        "def process(x, context):\n    context.record_metric('size', len(x))\n    return x\n")
    create(standalone, "metered", tmp_path / "metered.py", "metered", "--inputs", "met-in", "--output", "met-out")
    wait_running(standalone, "metered")
    out = _earliest(client, "met-out")
    producer = client.create_producer("met-in")
    for value in (b"ab", b"abcd"):
        producer.send(value)
    receive_all(out, 2)

    def series():
        text = httpx.get(f"{standalone.admin_url}/metrics").text
        return [line for line in text.splitlines() if 'fqfn="public/default/metered"' in line]

    lines = wait_for(lambda: (s := series()) and any(line.startswith("pulsar_function_user_metric_size_count") for line in s)
                     and s, what="the user metric")
    assert any(line.startswith("pulsar_function_user_metric_size_sum") and line.endswith(" 6.0") for line in lines)
    assert any(line.startswith("pulsar_function_received_total") and line.endswith(" 2") for line in lines)
    assert any(line.startswith('pulsar_function_process_latency_ms_bucket') and 'le="+Inf"' in line
               and line.endswith(" 2") for line in lines)
