"""`kill -USR1` / `kill -USR2` of a running standalone print where it waits (common/stack_dump.py),
and the standalone goes on serving."""

from __future__ import annotations

import re
import threading

import httpx
import pulsar
import pytest

from tests.e2e.harness import Standalone


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Standalone(tmp_path_factory.mktemp("stacks")).start()
    yield server
    assert server.stop() == 0


def test_signals_print_every_thread_and_task_and_the_server_keeps_serving(server, topic):
    dump = server.dump_stacks()
    # The task dump comes first (SIGUSR2): a count per coroutine, then stacks; the main task
    # is parked on its stop event.
    assert dump.startswith("--- ") and " asyncio tasks ---" in dump
    tasks, threads = dump.split("Current thread 0x", 1)
    assert "BrokerService._rate_loop" in tasks
    # Each task's await chain, down to the innermost coroutine: the main one waits for a signal.
    assert tasks.index("in serve") < tasks.index("in run_until_signalled") < tasks.index("in wait")
    # Then faulthandler's (SIGUSR1): the main thread, down to the command line's entry point.
    assert "(most recent call first)" in threads and "cli/main.py" in threads
    # py-spy (a test dependency) goes below Python: the loop's thread waits in the kernel.
    native = server.native_stacks()
    assert '"MainThread"' in native and "uv_run" in native, native
    assert server.proc is not None and server.proc.poll() is None
    assert httpx.get(f"{server.admin_url}/admin/v2/clusters").status_code == 200
    client = pulsar.Client(server.service_url)
    try:
        producer = client.create_producer(topic)
        producer.send(b"after the dump")
    finally:
        client.close()


def _batches_after_timeout(server: Standalone, while_timing_out=lambda: None) -> int:
    """The journal batches `stacks_on_timeout` reports for a timeout raised in its block."""
    with pytest.raises(TimeoutError) as caught, server.stacks_on_timeout():
        while_timing_out()
        raise TimeoutError("a client gave up")
    notes = "\n".join(caught.value.__notes__)
    assert "last output of the standalone:" in notes and " asyncio tasks ---" in notes
    found = re.search(r"journal batches delivered in the 3 s after the timeout: (\d+)", notes)
    assert found is not None, notes
    return int(found[1])


def test_a_client_timeout_says_whether_the_server_still_moves(server, topic):
    client = pulsar.Client(server.service_url)
    try:
        producer = client.create_producer(topic, batching_enabled=False)
        producer.send(b"before")
        assert _batches_after_timeout(server) == 0  # idle: nothing moved

        stop = threading.Event()

        def keep_sending() -> None:
            while not stop.is_set():
                producer.send(b"still going")

        sender = threading.Thread(target=keep_sending)
        try:
            assert _batches_after_timeout(server, sender.start) > 10  # busy: it went on
        finally:
            stop.set()
            sender.join(10)
    finally:
        client.close()
