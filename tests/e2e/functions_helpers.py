"""Helpers for end-to-end function tests: the CLI in-process, waiting on status, topics."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import httpx
import pulsar

from taureau.cli.app import run as cli

EXAMPLES = Path(__file__).parent / "function_examples"


def taureau(standalone, *argv: str) -> tuple[int, str, str]:
    """Run `taureau functions ...` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli(["functions", "--admin-url", standalone.admin_url, *argv])
        except SystemExit as exc:  # argparse refusing the flags
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def create(standalone, name: str, py: str | Path, classname: str, *flags: str) -> None:
    code, out, err = taureau(standalone, "create", "--name", name, "--py", str(py), "--classname", classname, *flags)
    assert code == 0, err
    assert out.strip() == "Created successfully"


def status(standalone, name: str, tenant: str = "public", namespace: str = "default") -> dict:
    response = httpx.get(f"{standalone.admin_url}/admin/v3/functions/{tenant}/{namespace}/{name}/status")
    response.raise_for_status()
    return response.json()


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def wait_running(standalone, name: str, instances: int = 1, timeout: float = 20.0) -> dict:
    try:
        return wait_for(lambda: (s := status(standalone, name))["numRunning"] >= instances and s,
                        timeout, what=f"{name} to run {instances} instance(s)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {status(standalone, name)}") from None


def receive_all(consumer, n: int, timeout_ms: int = 10_000) -> list:
    messages = []
    for _ in range(n):
        message = consumer.receive(timeout_ms)
        consumer.acknowledge(message)
        messages.append(message)
    return messages


def assert_nothing_more(consumer, wait_ms: int = 500) -> None:
    try:
        extra = consumer.receive(wait_ms)
    except pulsar.Timeout:
        return
    raise AssertionError(f"unexpected message {extra.data()!r}")
