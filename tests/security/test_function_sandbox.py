"""OS-level isolation of process-runtime instances, tried from inside a function: it cannot
read the broker's data directory nor another function's secrets (Landlock), cannot allocate
past twice its `--ram` (RLIMIT_DATA: MemoryError, reported by the worker), starts from a scrubbed
environment, in a working directory of its own with umask 077, and (the tests running as
root) as the unprivileged user `--functions-run-as` names, unable to signal its worker."""

from __future__ import annotations

import json
import os
import pwd
import time

import httpx
import pulsar
import pytest

from tests.e2e.harness import Standalone
from tests.security.helpers import cli, client

NS = "public/default"
BROKER_SECRET = "broker-secret-do-not-leak"
# Each input is a command; the output says what happened (an exception's type, or the data).
PROBE = """
import json, os

def process(input, context):
    cmd, _, arg = input.partition(":")
    if cmd == "alloc":
        return str(len(bytearray(int(arg))))  # MemoryError past the RLIMIT: a user exception
    if cmd == "secret":
        return str(context.get_secret(arg))
    if cmd == "who":
        try:
            os.kill(os.getppid(), 0)  # may it signal its worker?
            signal = "allowed"
        except OSError as e:
            signal = type(e).__name__
        return json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(), "signal": signal})
    if cmd == "env":
        umask = os.umask(0o077)
        return json.dumps({"env": sorted(os.environ), "cwd": os.getcwd(), "umask": umask,
                           "mode": os.stat(".").st_mode & 0o777})
    try:
        with open(arg, "rb") as f:
            return "read " + str(len(f.read()))
    except OSError as e:
        return type(e).__name__
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sandbox")
    secrets = root / "secrets"
    for name, value in (("probe", "mine"), ("other", "theirs")):
        (secrets / "public" / "default" / name).mkdir(parents=True)
        (secrets / "public" / "default" / name / "s.txt").write_text(value)
    (root / "probe.py").write_text(PROBE)
    (root / "inputs").mkdir()
    (root / "inputs" / "data.txt").write_text("input data")
    run_as = ["--functions-run-as", "nobody"] if os.geteuid() == 0 else []
    # Without --auth the files sandbox is off unless asked for (the default with --auth).
    s = Standalone(root / "data", "--secrets-provider", "file", "--secrets-dir", str(secrets), *run_as,
                   "--functions-sandbox", "on", "--functions-readable-path", str(root / "inputs"),
                   env={"TAUREAU_AUTH_PARAMS": BROKER_SECRET}).start(timeout=60)
    s.secrets, s.inputs = secrets, root / "inputs"
    created = cli("functions", "--admin-url", s.admin_url, "create", "--tenant", "public", "--namespace", "default",
                  "--name", "probe", "--py", str(root / "probe.py"), "--classname", "probe",
                  "--inputs", f"persistent://{NS}/probe-in", "--output", f"persistent://{NS}/probe-out",
                  "--ram", str(256 * 1024 * 1024), "--secrets", json.dumps({"s": "s.txt"}))
    assert created.returncode == 0, created.stderr
    yield s
    assert s.stop() == 0


def _ask(server, *commands: str) -> list[str]:
    c = client(server, timeout=30)
    try:
        consumer = c.subscribe(f"persistent://{NS}/probe-out", f"ask-{len(commands)}-{hash(commands) & 0xffff}",
                               initial_position=pulsar.InitialPosition.Latest)
        producer = c.create_producer(f"persistent://{NS}/probe-in")
        replies = []
        for command in commands:
            producer.send(command.encode())
            replies.append(consumer.receive(30_000).data().decode())
        return replies
    finally:
        c.close()


def _status(server) -> dict:
    r = httpx.get(f"{server.admin_url}/admin/v3/functions/public/default/probe/status", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_function_reads_its_own_files_and_nothing_of_the_server(server):
    data = server.data_dir
    key = data / "state" / "internal.key" if (data / "state" / "internal.key").exists() else None
    ledger_files = [p for p in data.rglob("*") if p.is_file() and "work" not in p.parts]
    assert ledger_files  # the broker's metadata, journal, function packages, logs
    targets = [str(p) for p in ledger_files[:3]] + ([str(key)] if key else [])
    other_secret = str(server.secrets / "public" / "default" / "other" / "s.txt")
    own_secret = str(server.secrets / "public" / "default" / "probe" / "s.txt")
    replies = _ask(server, *(f"read:{t}" for t in targets), f"read:{other_secret}", f"read:{own_secret}",
                   "secret:s", "read:/etc/hostname", f"read:{server.inputs / 'data.txt'}")
    assert replies[: len(targets) + 1] == ["PermissionError"] * (len(targets) + 1), replies
    assert replies[len(targets) + 1 :] == ["read 4", "mine", "PermissionError", "read 10"]
    limits = _status(server)["instances"][0]["status"]["limits"]
    assert limits["filesystem"].startswith("landlock")


def test_its_environment_and_working_directory_are_its_own(server):
    seen = json.loads(_ask(server, "env")[0])
    assert "TAUREAU_AUTH_PARAMS" not in seen["env"] and set(seen["env"]) <= {
        "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "PYTHONPATH", "VIRTUAL_ENV",
        "HOME", "TMPDIR"}
    assert seen["cwd"] == str(server.data_dir / "functions" / "work" / "public.default.probe.0")
    assert seen["umask"] == 0o077 and seen["mode"] == 0o700
    logs = "".join(server.output) + "".join(
        p.read_text(errors="replace") for p in (server.data_dir / "functions" / "logs").rglob("*") if p.is_file())
    assert BROKER_SECRET not in logs


def test_allocating_past_its_ram_fails_and_the_worker_reports_it(server):
    assert _ask(server, f"alloc:{64 * 1024 * 1024}") == [str(64 * 1024 * 1024)]
    c = client(server, timeout=30)
    try:
        # Past 2 x --ram + 256 MiB (RLIMIT_DATA): refused at once, nothing is allocated.
        c.create_producer(f"persistent://{NS}/probe-in").send(f"alloc:{1024 * 1024 * 1024}".encode())
    finally:
        c.close()
    status: dict = {}
    for _ in range(60):
        status = _status(server)["instances"][0]["status"]
        if status["numUserExceptions"]:
            break
        time.sleep(0.5)
    assert status["numUserExceptions"] == 1
    assert "MemoryError" in json.dumps(status["latestUserExceptions"])
    assert status["numRestarts"] == 0 and status["running"]
    assert _ask(server, "secret:s") == ["mine"]  # and it goes on serving


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs the worker to run as root")
def test_it_runs_as_the_unprivileged_user_and_cannot_signal_its_worker(server):
    nobody = pwd.getpwnam("nobody")
    who = json.loads(_ask(server, "who")[0])
    assert who == {"uid": nobody.pw_uid, "euid": nobody.pw_uid, "groups": [], "signal": "PermissionError"}
    assert _status(server)["instances"][0]["status"]["limits"]["user"] == f"uid {nobody.pw_uid}"
    work = server.data_dir / "functions" / "work" / "public.default.probe.0"
    assert work.stat().st_uid == nobody.pw_uid


def test_run_as_is_checked_before_starting(tmp_path, capsys):
    from taureau.cli.app import run  # in this process: the refusal comes before anything starts

    assert run(["standalone", "--data-dir", str(tmp_path / "d"), "--functions-run-as", "no-such-user-x"]) == 2
    assert "no user 'no-such-user-x'" in capsys.readouterr().err
    assert run(["standalone", "--data-dir", str(tmp_path / "d"), "--functions-run-as", "root"]) == 2
    err = capsys.readouterr().err
    assert "unprivileged" in err or "needs the worker" in err
    assert run(["standalone", "--data-dir", str(tmp_path / "d"), "--functions-readable-path", "/srv"]) == 2
    assert "--functions-readable-path is for --functions-sandbox on" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
