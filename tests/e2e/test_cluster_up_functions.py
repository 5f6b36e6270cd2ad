"""`taureau cluster up --function-workers 2`: the workers it starts share the functions (one
created at the first runs on both) over both brokers, and Ctrl-C stops them with the rest."""

from __future__ import annotations

import signal
import sys

import httpx
import pulsar

from tests.e2e.functions_helpers import EXAMPLES, taureau, wait_for
from tests.e2e.harness import spawn_until_ready
from tests.e2e.test_cluster_up import _free_run, _listening


class _Worker:
    def __init__(self, port: int) -> None:
        self.admin_url = f"http://127.0.0.1:{port}"


def test_cluster_up_runs_function_workers_that_share_the_functions(tmp_path):
    broker, web, bookie, functions = _free_run(2), _free_run(2), _free_run(2), _free_run(2)
    output: list[str] = []
    args = [sys.executable, "-m", "taureau.cli.main", "cluster", "up", "--brokers", "2", "--bookies", "2",
            "--function-workers", "2", "--data-dir", str(tmp_path), "--broker-port", str(broker),
            "--web-port", str(web), "--bookie-port", str(bookie), "--functions-port", str(functions)]
    proc = spawn_until_ready(args, "metadata store zk://", output, 180, "cluster up")
    try:
        printed = [line.split()[-1] for line in output if line.startswith("  functions ")]
        assert printed == [f"http://127.0.0.1:{functions}", f"http://127.0.0.1:{functions + 1}"]
        first, second = _Worker(functions), _Worker(functions + 1)
        code, _, err = taureau(first, "create", "--name", "up-fn", "--py", str(EXAMPLES / "exclamation.py"),
                               "--classname", "exclamation.Exclamation", "--inputs", "up-fn-in",
                               "--output", "up-fn-out", "--parallelism", "2")
        assert code == 0, err

        def spread() -> bool:
            got = httpx.get(f"{second.admin_url}/admin/v3/functions/public/default/up-fn/status").json()
            workers = {e["status"]["workerId"] for e in got["instances"] if e["status"]["running"]}
            return workers == {f"127.0.0.1:{functions}", f"127.0.0.1:{functions + 1}"}

        wait_for(spread, timeout=90, what="one instance on each worker")
        service_url = next(line.split()[-1] for line in output if "service URL" in line)
        client = pulsar.Client(service_url, operation_timeout_seconds=30,
                               logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        try:
            consumer = client.subscribe("up-fn-out", "s", initial_position=pulsar.InitialPosition.Earliest)
            client.create_producer("up-fn-in").send(b"hi")
            assert consumer.receive(30_000).data() == b"hi!"
        finally:
            client.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0, "".join(output[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for port in (functions, functions + 1, broker, broker + 1):
        assert not _listening(port), f"port {port} still served after the cluster stopped"
