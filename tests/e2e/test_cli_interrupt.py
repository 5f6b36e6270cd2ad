"""Ctrl-C in a CLI verb that does not handle it itself ends it with one line, not a traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading

from taureau.testing.ports import free_port


def test_ctrl_c_during_an_admin_call_that_never_answers_is_one_line_and_status_130():
    port = free_port()
    silent = socket.create_server(("127.0.0.1", port))
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:  # a server that takes the connection and never answers
        conn, _ = silent.accept()
        held.append(conn)
        accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    cli = subprocess.Popen(
        [sys.executable, "-m", "taureau.cli.main", "admin", "--admin-url", f"http://127.0.0.1:{port}",
         "tenants", "list"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert accepted.wait(30), "the CLI never connected"
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=20)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        silent.close()
        for conn in held:
            conn.close()
    assert cli.returncode == 130, err
    assert err.strip() == "interrupted" and out == ""
