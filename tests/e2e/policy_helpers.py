"""What the policy tests share: a fresh namespace, topic URLs, waiting for the policy check,
and `taureau admin ...` run in the test process (the same argument parsing and REST calls as
the command, without a 3 s interpreter start per call on a busy machine)."""

from __future__ import annotations

import time
from typing import NamedTuple

import httpx

from taureau.cli.app import run


def make_namespace(standalone, name: str) -> str:
    """Create public/`name`; its admin URL."""
    url = f"{standalone.admin_url}/admin/v2/namespaces/public/{name}"
    assert httpx.put(url).status_code == 204
    return url


def topic_url(standalone, topic: str) -> str:
    return f"{standalone.admin_url}/admin/v2/{topic.replace('://', '/')}"


def eventually(check, timeout: float = 15.0) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "the policy was not applied in time"
        time.sleep(0.1)
    return time.monotonic() - started


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def admin(capsys, admin_url: str, *args: str) -> Ran:
    capsys.readouterr()  # drop what the test printed before
    try:
        code = run(["admin", "--admin-url", admin_url, *args])
    except SystemExit as exc:  # argparse refuses bad arguments by exiting (2)
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return Ran(code, out.out, out.err)
