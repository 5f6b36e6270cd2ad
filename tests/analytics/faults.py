"""Fault injection shared by the backend tests."""

from __future__ import annotations

import os
import signal
import time

from tests.analytics import helpers


def kill_first_attempt(ex, tmp_path, timeout: float = 30.0):
    """Start a call whose first attempt records its pid and sleeps, SIGKILL that process;
    returns (future, killed pid)."""
    marker = tmp_path / "pid"
    f = ex.call_async(helpers.pid_then_sleep, (str(marker), 30))
    deadline = time.monotonic() + timeout
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the call never started"
        time.sleep(0.02)
    victim = int(marker.read_text())
    os.kill(victim, signal.SIGKILL)
    return f, victim
