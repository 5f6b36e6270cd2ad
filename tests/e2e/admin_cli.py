"""`taureau admin ...` run in the test process (the same argument parsing and REST calls as
the command, without a 3 s interpreter start per call on a busy machine)."""

from __future__ import annotations

from typing import NamedTuple

from taureau.cli.app import run


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
