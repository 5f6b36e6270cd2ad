"""Function lifecycle against a real standalone: bad input at create, update, delete,
stop/start/restart, parallelism, the thread runtime, config files, localrun, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pulsar
import pytest

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

EXCLAMATION = EXAMPLES / "exclamation_function.py"
EXCLAMATION_CLASS = "exclamation_function.ExclamationFunction"


STANDALONE = {"state": True}


def _listed(standalone) -> list[str]:
    code, out, err = taureau(standalone, "list")
    assert code == 0, err
    return out.split()


@pytest.fixture
def bad_code(tmp_path):
    (tmp_path / "broken.py").write_text("def process(x)\n    return x\n")
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('no database')\n")
    return tmp_path


@pytest.mark.parametrize("flags,message", [
    (["--py", "/nonexistent/f.py", "--classname", "f.F"], "cannot read /nonexistent/f.py"),
    (["--py", "{tmp}/broken.py", "--classname", "broken"], "syntax error in broken.py, line 1"),
    (["--py", "{tmp}/raises_on_import.py", "--classname", "raises_on_import"],
     "importing 'raises_on_import' raised RuntimeError: no database"),
    (["--py", str(EXCLAMATION), "--classname", "exclamation_function.Nope"],
     "'exclamation_function' has no attribute 'Nope'"),
    (["--py", str(EXCLAMATION), "--classname", EXCLAMATION_CLASS, "--output-serde-classname", "nosuch.SerDe"],
     "no module named 'nosuch'"),
    (["--py", str(EXCLAMATION), "--classname", EXCLAMATION_CLASS, "--schedule", "every tuesday"],
     "is not a cron expression"),
    (["--py", str(EXCLAMATION), "--classname", EXCLAMATION_CLASS, "--topics-pattern", "persistent://public/default/x.*"],
     "inputs and topicsPattern are exclusive"),
    (["--py", str(EXCLAMATION), "--classname", EXCLAMATION_CLASS, "--retain-ordering", "--retain-key-ordering"],
     "retainOrdering and retainKeyOrdering are exclusive"),
    (["--py", str(EXCLAMATION), "--classname", EXCLAMATION_CLASS, "--dead-letter-topic", "dlq"],
     "deadLetterTopic needs maxMessageRetries"),
    (["--py", str(EXCLAMATION), "--classname", EXCLAMATION_CLASS, "--output", "bad-in"],
     "is also an input topic"),
    (["--py", str(EXCLAMATION), "--classname", EXCLAMATION_CLASS, "--parallelism", "0"],
     "parallelism must be between 1 and 64"),
    (["--py", str(EXCLAMATION), "--classname", EXCLAMATION_CLASS, "--window-length-count", "5",
      "--sliding-interval-duration-ms", "100"], "a count window slides by count"),
    (["--py", str(EXCLAMATION), "--classname", EXCLAMATION_CLASS, "--processing-guarantees", "EFFECTIVELY_ONCE",
      "--retain-key-ordering"], "EFFECTIVELY_ONCE needs a failover subscription"),
])
def test_create_refuses_bad_input_and_registers_nothing(standalone, bad_code, flags, message):
    flags = [f.replace("{tmp}", str(bad_code)) for f in flags]
    packages = standalone.data_dir / "functions" / "packages"
    stored = sorted(os.listdir(packages))
    code, out, err = taureau(standalone, "create", "--name", "bad", "--inputs", "bad-in", *flags)
    assert sorted(os.listdir(packages)) == stored  # no package left behind either
    assert code == 1
    assert message in err
    assert err.count("\n") == 1 and err.startswith("error: ")  # one line, never a traceback
    assert "bad" not in _listed(standalone)
    code, _, err = taureau(standalone, "get", "--name", "bad")
    assert code == 1 and "404" in err


def test_names_are_checked_before_connecting(standalone):
    code, _, err = cli_unreachable("create", "--name", "a/b", "--py", str(EXCLAMATION), "--classname", "x")
    assert code == 1 and "invalid function name" in err
    code, _, err = cli_unreachable("status", "--name", "bad name")
    assert code == 1 and err == "error: invalid function name: 'bad name'\n"


def cli_unreachable(*argv: str) -> tuple[int, str, str]:
    class Nowhere:
        admin_url = "http://127.0.0.1:1"  # nothing listens: any request would fail differently

    return taureau(Nowhere(), *argv)


def test_rest_refuses_bad_registrations(standalone):
    url = f"{standalone.admin_url}/admin/v3/functions/public/default/rest-bad"
    with open(EXCLAMATION, "rb") as f:
        code = f.read()
    cases = [
        ({"functionConfig": "{not json"}, {"data": ("f.py", code)}, 400, "neither JSON nor YAML"),
        ({"functionConfig": '{"className": "f.F", "inputz": ["x"]}'}, {"data": ("f.py", code)}, 400,
         "unknown function config field 'inputz'"),
        ({"functionConfig": '{"className": "f.F"}'}, None, 400, "no package"),
        ({"functionConfig": '{"className": "f.F"}'}, {"data": ("f.exe", code)}, 400, ".py, .zip or .whl"),
        ({"functionConfig": '{"className": "f.F"}'}, {"data": ("f.zip", b"not a zip")}, 400, "not a zip"),
        ({"functionConfig": '{"className": "f.F", "parallelism": "many"}'}, {"data": ("f.py", code)}, 400,
         "bad value for parallelism"),
    ]
    for form, files, status_code, reason in cases:
        response = httpx.post(url, data=form, files=files)
        assert response.status_code == status_code, response.text
        assert reason in response.json()["reason"]
    assert httpx.get(url).status_code == 404
    assert httpx.get(f"{standalone.admin_url}/admin/v3/functions/public/default/nope/status").status_code == 404
    assert httpx.post(f"{standalone.admin_url}/functions/public/default/nope", content=b"x").status_code == 404


def test_update_changes_code_and_config_and_bumps_the_version(standalone, client, tmp_path):
    create(standalone, "upd", EXCLAMATION, EXCLAMATION_CLASS, "--inputs", "upd-in", "--output", "upd-out")
    wait_running(standalone, "upd")
    out = client.subscribe("upd-out", "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer("upd-in")
    producer.send(b"a")
    assert receive_all(out, 1)[0].data() == b"a!"
    (tmp_path / "question.py").write_text("def process(x):\n    return x + '?'\n")
    code, text, err = taureau(standalone, "update", "--name", "upd", "--py", str(tmp_path / "question.py"),
                              "--classname", "question")
    assert code == 0, err
    assert text.strip() == "Updated successfully"
    wait_running(standalone, "upd")
    producer.send(b"b")
    assert receive_all(out, 1)[0].data() == b"b?"
    code, _, err = taureau(standalone, "update", "--name", "upd", "--subs-name", "other")
    assert code == 1 and "subName cannot be altered" in err
    code, text, _ = taureau(standalone, "get", "--name", "upd")
    assert '"className": "question"' in text


def test_delete_stops_the_function_and_drops_its_subscription(standalone, client, admin_get):
    create(standalone, "del", EXCLAMATION, EXCLAMATION_CLASS, "--inputs", "del-in", "--output", "del-out")
    wait_running(standalone, "del")
    subs = admin_get("/admin/v2/persistent/public/default/del-in/subscriptions")
    assert subs == ["public/default/del"]
    code, text, err = taureau(standalone, "delete", "--name", "del")
    assert code == 0 and text.strip() == "Deleted successfully", err
    assert "del" not in _listed(standalone)
    wait_for(lambda: admin_get("/admin/v2/persistent/public/default/del-in/subscriptions") == [],
             what="the subscription to go")
    code, _, err = taureau(standalone, "delete", "--name", "del")
    assert code == 1 and "404" in err


@pytest.fixture
def admin_get(standalone):
    def get(path: str):
        response = httpx.get(standalone.admin_url + path)
        response.raise_for_status()
        return response.json()

    return get


def test_stop_start_restart(standalone, client):
    create(standalone, "ssr", EXCLAMATION, EXCLAMATION_CLASS, "--inputs", "ssr-in", "--output", "ssr-out")
    wait_running(standalone, "ssr")
    out = client.subscribe("ssr-out", "check", initial_position=pulsar.InitialPosition.Earliest)
    assert taureau(standalone, "stop", "--name", "ssr")[0] == 0
    assert status(standalone, "ssr")["numRunning"] == 0
    producer = client.create_producer("ssr-in")
    producer.send(b"while-stopped")
    assert_nothing_more(out, 500)
    assert taureau(standalone, "start", "--name", "ssr")[0] == 0
    assert receive_all(out, 1)[0].data() == b"while-stopped!"
    pid = wait_running(standalone, "ssr")["instances"][0]["status"]["pid"]
    assert taureau(standalone, "restart", "--name", "ssr")[0] == 0
    again = wait_running(standalone, "ssr")["instances"][0]["status"]["pid"]
    assert again != pid
    producer.send(b"after-restart")
    assert receive_all(out, 1)[0].data() == b"after-restart!"


def test_parallelism_runs_instances_in_separate_processes(standalone, client):
    create(standalone, "par", EXCLAMATION, EXCLAMATION_CLASS, "--inputs", "par-in", "--output", "par-out",
           "--parallelism", "2")
    st = wait_running(standalone, "par", 2)
    pids = {i["status"]["pid"] for i in st["instances"]}
    assert len(pids) == 2 and os.getpid() not in pids
    out = client.subscribe("par-out", "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer("par-in", batching_enabled=False)
    for i in range(200):
        producer.send(b"m%d" % i)
    got = sorted(m.data() for m in receive_all(out, 200))
    assert got == sorted(b"m%d!" % i for i in range(200))
    counts = wait_for(lambda: [i["status"]["numReceived"] for i in status(standalone, "par")["instances"]]
                      if sum(i["status"]["numReceived"] for i in status(standalone, "par")["instances"]) == 200
                      else None, what="both instances to report")
    assert all(c > 0 for c in counts)  # a Shared subscription spreads the work


def test_thread_runtime(standalone, client):
    create(standalone, "thr", EXCLAMATION, EXCLAMATION_CLASS, "--inputs", "thr-in", "--output", "thr-out",
           "--custom-runtime-options", '{"runtime": "thread"}')
    st = wait_running(standalone, "thr")
    assert st["instances"][0]["status"]["pid"] is None
    out = client.subscribe("thr-out", "check", initial_position=pulsar.InitialPosition.Earliest)
    client.create_producer("thr-in").send(b"threaded")
    assert receive_all(out, 1)[0].data() == b"threaded!"


def test_function_config_file(standalone, client, tmp_path):
    config = tmp_path / "fn.yaml"
    config.write_text(
        "tenant: public\nnamespace: default\nname: from-yaml\n"
        "className: config_based_append_function.ConfigBasedAppendFunction\n"
        "inputs: [yaml-in]\noutput: yaml-out\nuserConfig:\n  config-key: ' (yaml)'\n"
        "resources:\n  cpu: 0.5\n  ram: 268435456\n"
    )
    code, _, err = taureau(standalone, "create", "--function-config-file", str(config),
                           "--py", str(EXAMPLES / "config_based_append_function.py"))
    assert code == 0, err
    wait_running(standalone, "from-yaml")
    out = client.subscribe("yaml-out", "check", initial_position=pulsar.InitialPosition.Earliest)
    client.create_producer("yaml-in").send(b"x")
    assert receive_all(out, 1)[0].data() == b"x (yaml)"
    code, text, _ = taureau(standalone, "get", "--name", "from-yaml")
    assert '"ram": 268435456' in text and '"cpu": 0.5' in text


def test_an_instance_killed_mid_stream_is_restarted_and_loses_nothing(standalone, client, tmp_path):
    (tmp_path / "slow.py").write_text("import time\n\ndef process(x):\n    time.sleep(0.005)\n    return x\n")
    create(standalone, "crashy", tmp_path / "slow.py", "slow", "--inputs", "crashy-in", "--output", "crashy-out")
    pid = wait_running(standalone, "crashy")["instances"][0]["status"]["pid"]
    out = client.subscribe("crashy-out", "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer("crashy-in", batching_enabled=False)
    for i in range(300):
        producer.send_async(b"%d" % i, None)
    producer.flush()
    time.sleep(0.4)  # part of the stream is processed
    os.kill(pid, signal.SIGKILL)
    seen = set()
    deadline = time.monotonic() + 30
    while len(seen) < 300 and time.monotonic() < deadline:
        try:
            message = out.receive(1000)
        except pulsar.Timeout:
            continue
        out.acknowledge(message)
        seen.add(int(message.data()))
    assert seen == set(range(300))  # at least once: every input has an output
    instance = status(standalone, "crashy")["instances"][0]["status"]
    assert instance["numRestarts"] == 1 and instance["pid"] != pid
    assert "code -9" in instance["error"] or instance["running"]


def test_localrun_runs_here_until_interrupted(standalone, client, tmp_path):
    tmp = tmp_path / "tmp"  # the run's own temp dir: what it leaves there is seen
    tmp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "taureau.cli.main", "functions", "localrun", "--py", str(EXCLAMATION),
         "--classname", EXCLAMATION_CLASS, "--inputs", "local-in", "--output", "local-out",
         "--broker-service-url", standalone.service_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp)},
    )
    try:
        out = client.subscribe("local-out", "check", initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer("local-in")
        wait_for(lambda: httpx.get(f"{standalone.admin_url}/admin/v2/persistent/public/default/local-in/subscriptions")
                 .json() == ["public/default/ExclamationFunction"], what="localrun to subscribe")
        producer.send(b"local")
        assert receive_all(out, 1)[0].data() == b"local!"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "running public/default/ExclamationFunction with 1 instance(s)" in err
    assert list(tmp.iterdir()) == []  # the unpacked package went with the run


def test_a_localrun_that_cannot_start_leaves_nothing_behind(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "taureau.cli.main", "functions", "localrun", "--py", str(EXCLAMATION),
         "--classname", "exclamation_function.NoSuchClass", "--inputs", "local-in",
         "--broker-service-url", "pulsar://127.0.0.1:1"],
        capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp)}, timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert list(tmp.iterdir()) == []


def test_help_lists_the_verbs():
    result = subprocess.run([sys.executable, "-m", "taureau.cli.main", "functions", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    for verb in ("create", "update", "delete", "list", "get", "status", "stats", "start", "stop", "restart",
                 "trigger", "querystate", "putstate", "localrun", "invoke"):
        assert verb in result.stdout
