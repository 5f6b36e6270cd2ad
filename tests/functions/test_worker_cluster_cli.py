"""`taureau functions-worker` refuses bad cluster flags before it starts anything."""

from __future__ import annotations

import os

import pytest

from taureau.cli.app import run


@pytest.mark.parametrize(("extra", "reason"), [
    (["--metadata-store", "http://127.0.0.1:2181"], "is not a zk://"),
    (["--metadata-store", "zk://127.0.0.1:2181", "--ack-quorum", "3"], "ack quorum (3) <= write quorum"),
    (["--metadata-store", "zk://127.0.0.1:2181", "--metadata-session-timeout", "0"], "must be positive"),
])
def test_bad_cluster_flags_are_one_line_and_exit_2(tmp_path, capsys, extra, reason):
    code = None
    try:
        code = run(["functions-worker", "--data-dir", str(tmp_path / "w"), "--web-port", "0", *extra])
    except SystemExit as exc:  # argparse's own refusal of a bad value
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert reason in err[-1] and "Traceback" not in "\n".join(err)
    assert not os.path.exists(tmp_path / "w")


def test_help_lists_the_cluster_flags(capsys):
    with pytest.raises(SystemExit) as exited:
        run(["functions-worker", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--metadata-store", "--metadata-session-timeout", "--advertised-address", "--ensemble-size"):
        assert flag in out


def test_admin_lists_the_rebalance_verb(capsys):
    with pytest.raises(SystemExit) as exited:
        run(["admin", "functions-worker", "--help"])
    assert exited.value.code == 0
    assert "    rebalance" in capsys.readouterr().out
