"""Sketch functions end to end on a real standalone: CLI, REST and Python client, parallel
instances merging per window through the state store, an instance killed mid-window."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
from collections import Counter

import httpx
import pulsar
import pytest

from taureau.cli.app import run as cli
from taureau.sketches import CountMin
from taureau.sketches.client import SketchesClient, SketchesClientError
from tests.e2e.functions_helpers import status, wait_for, wait_running

STANDALONE = {"state": True}


def sketches(standalone, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli(["sketches", "--admin-url", standalone.admin_url, *argv])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def merged_n(client: SketchesClient, name: str, query: dict) -> float:
    try:
        return client.query(name, windows=30, **query)["n"]
    except SketchesClientError:
        return 0


def test_count_min_with_two_instances_and_one_killed_mid_window(standalone, client, topic):
    code, out, err = sketches(standalone, "create", "--name", "clicks", "--kind", "count-min", "--inputs", topic,
                              "--key-field", "user", "--relative-error", "0.01", "--confidence", "0.99",
                              "--window-duration-ms", "1000", "--parallelism", "2")
    assert code == 0, err
    assert "Created sketch public/default/clicks" in out
    wait_running(standalone, "clicks", 2)
    users = [f"user-{i % 7 if i % 3 else i % 50}" for i in range(3000)]
    truth = Counter(users)
    producer = client.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=5)

    def produce() -> None:
        for i, user in enumerate(users):
            producer.send_async(json.dumps({"user": user, "i": i}).encode(), None)
            if i % 100 == 99:
                producer.flush()
                time.sleep(0.1)  # ~3 s of traffic: several windows, and a kill inside one
        producer.flush()

    thread = threading.Thread(target=produce)
    thread.start()
    time.sleep(1.3)
    victim = status(standalone, "clicks")["instances"][0]["status"]["pid"]
    os.kill(victim, signal.SIGKILL)  # its buffered window is redelivered, not lost or doubled
    thread.join()
    wait_for(lambda: status(standalone, "clicks")["instances"][0]["status"].get("pid") not in (None, victim),
             timeout=30, what="the killed instance to come back")

    c = SketchesClient(standalone.admin_url)
    wait_for(lambda: merged_n(c, "clicks", {"key": "user-1"}) >= len(users), timeout=60,
             what="every event in a merged window")
    time.sleep(3)  # anything counted twice would show up by now
    answer = c.query("clicks", windows=30, key="user-1")
    assert answer["n"] == len(users)  # each event in exactly one window, once
    assert truth["user-1"] <= answer["estimate"] <= truth["user-1"] + 0.01 * len(users)
    assert answer["lower"] <= truth["user-1"] <= answer["upper"]

    # The CLI answers the same; the sketch itself is DataSketches' bytes.
    code, out, err = sketches(standalone, "query", "clicks", "--key", "user-1", "--windows", "30")
    assert code == 0, err
    assert json.loads(out)["estimate"] == answer["estimate"]
    sketch = c.sketch("clicks", windows=30)
    assert isinstance(sketch, CountMin) and sketch.n == len(users)

    # One output message per window, never two, and together they hold every event.
    windows = c.get("clicks")["windows"]
    reader = client.create_reader("persistent://public/default/clicks-sketches", pulsar.MessageId.earliest)
    published = []
    while True:
        try:
            message = reader.read_next(2000)
        except pulsar.Timeout:
            break
        published.append(message)
    ends = [int(m.properties()["windowEndMs"]) for m in published]
    assert len(ends) == len(set(ends)) == len(windows)
    assert sorted(ends) == windows
    assert sum(CountMin.from_bytes(m.data()).n for m in published) == len(users)
    reader.close()


def test_records_redelivered_after_their_window_was_counted_count_once(standalone, client, topic):
    # What a kill -9 between a window's commit and its acknowledgements does, made certain:
    # the subscription is rewound after every record was counted and acknowledged, so the
    # broker delivers them all again. The claims recognise each one.
    c = SketchesClient(standalone.admin_url)
    c.create("recount", "count-min", [topic], key_field="user", window_ms=500)
    wait_running(standalone, "recount", 1)
    producer = client.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=5)
    for i in range(600):
        producer.send_async(json.dumps({"user": f"u{i % 10}"}).encode(), None)
    producer.flush()
    wait_for(lambda: merged_n(c, "recount", {"key": "u1"}) >= 600, timeout=30, what="every event merged")

    path = topic.removeprefix("persistent://")
    sub = "public%2Fdefault%2Frecount"
    base = f"{standalone.admin_url}/admin/v2/persistent/{path}"
    assert httpx.post(f"{base}/subscription/{sub}/resetcursor/0").status_code == 204

    def backlog() -> int:
        return httpx.get(f"{base}/stats").json()["subscriptions"]["public/default/recount"]["msgBacklog"]

    wait_for(lambda: backlog() == 0, timeout=30, what="the redelivered records acknowledged")
    time.sleep(3.5)  # a window, its grace and a finalize: a second count would be merged by now
    answer = c.query("recount", windows=30, key="u1")
    assert answer["n"] == 600

    def recognised() -> float:  # instances report their metrics every few seconds
        stats = httpx.get(f"{standalone.admin_url}/admin/v3/functions/public/default/recount/stats").json()
        return stats["instances"][0]["metrics"]["userMetrics"].get("redelivered_counted_before", 0)

    assert wait_for(recognised, timeout=15, what="the redelivered records reported as counted before") > 0
    assert answer["estimate"] >= 60 and answer["lower"] <= 60 <= answer["upper"]


def test_kll_from_python_and_the_cli_verbs(standalone, client, topic):
    c = SketchesClient(standalone.admin_url)
    c.create("latency", "kll", [topic], value_field="ms", window_ms=500, params={"k": 200})
    wait_running(standalone, "latency", 1)
    producer = client.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=5)
    for i in range(1000):
        producer.send_async(json.dumps({"ms": float(i)}).encode(), None)
    producer.flush()
    producer.send(b"not json")  # skipped, and the window still closes
    wait_for(lambda: merged_n(c, "latency", {"quantiles": [0.5]}) >= 1000, timeout=30, what="the values merged")
    answer = c.query("latency", windows=30, quantiles=[0.5, 0.99])
    assert answer["n"] == 1000
    median = answer["quantiles"][0]["value"]
    assert abs(median - 500) <= answer["rankError"] * 1000 + 1

    code, out, _ = sketches(standalone, "list")
    assert code == 0 and "latency\tkll" in out
    code, _, err = sketches(standalone, "query", "latency", "--key", "x")
    assert code == 1 and err.count("\n") == 1 and "answers quantiles, ranks, not key" in err
    code, _, err = sketches(standalone, "query", "nothing-here", "--distinct")
    assert code == 1 and "404" in err and err.count("\n") == 1
    code, _, err = sketches(standalone, "create", "--name", "latency", "--kind", "kll", "--inputs", topic,
                            "--value-field", "ms")
    assert code == 1 and "exists already" in err
    code, out, err = sketches(standalone, "delete", "latency")
    assert code == 0, err
    with pytest.raises(SketchesClientError, match="404"):
        c.query("latency", quantiles=[0.5])


def test_bad_requests_change_nothing(standalone):
    import httpx

    url = f"{standalone.admin_url}/admin/v3/sketches/public/default"
    for body in ({"kind": "hll"}, {"kind": "nope", "inputs": ["t"]}, {"kind": "hll", "inputs": ["t"], "window_ms": 1},
                 {"kind": "hll", "inputs": ["t"], "params": {"lg_k": 40}}, ["x"]):
        response = httpx.post(f"{url}/bad", json=body)
        assert response.status_code == 400, body
        assert response.json()["reason"]
    assert httpx.post(f"{url}/bad", content=b"{").status_code == 400
    assert httpx.get(f"{url}").json() == [] or all(s["name"] != "bad" for s in httpx.get(url).json())
    assert httpx.get(f"{url}/bad/query", params={"distinct": "true"}).status_code == 404
    assert httpx.get(f"{url}/bad/query", params={"top": "x"}).status_code == 400


def test_demo_iot_prints_live_answers(standalone):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(["demo", "iot", "--admin-url", standalone.admin_url, "--service-url", standalone.service_url,
                    "--duration-s", "4", "--rate", "1000", "--window-ms", "1000"])
    text = out.getvalue()
    assert code == 0, err.getvalue() + text
    for name in ("iot-device-counts", "iot-top-devices", "iot-distinct-devices", "iot-latency"):
        assert f"deployed {name}" in text
    answers = [line for line in text.splitlines() if line.startswith("window ending")]
    assert answers, text
    for line in answers:
        assert "distinct devices ~" in line and "p99" in line and "top dev-" in line and "count-min dev-" in line
    # Zipf ids: the heaviest device is dev-1 in every window of a 1000-event second.
    assert all("top dev-1=" in line for line in answers)
    assert not [s for s in SketchesClient(standalone.admin_url).list() if s["name"].startswith("iot-")]  # cleaned up
