"""`taureau state ...` and `taureau memory-server` commands, and the standalone hook."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

from taureau.cli import state_cmd
from taureau.state import StateClient
from taureau.state.service import start_state_services


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    state_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_state_commands(cluster, capsys):
    c = cluster.client()
    c.open_or_create_hash_table("/jobs/cli/ht").put(b"k", b"v")
    c.open_or_create_queue("/jobs/cli/q")
    a = ("state", "--controller", cluster.address)
    assert run_cli(capsys, *a, "ls", "/jobs/cli")[1].split() == ["hash_table", "ht", "queue", "q"]
    assert run_cli(capsys, *a, "get", "/jobs/cli/ht", "k")[1] == "v\n"
    assert run_cli(capsys, *a, "put", "/jobs/cli/ht", "k2", "v2")[0] == 0
    assert run_cli(capsys, *a, "put", "/jobs/cli/q", "item")[0] == 0
    assert run_cli(capsys, *a, "get", "/jobs/cli/q")[1] == "1\n"
    assert json.loads(run_cli(capsys, *a, "stat", "/jobs/cli/ht")[1])["kind"] == "hash_table"
    assert json.loads(run_cli(capsys, *a, "stat")[1])["servers"] == 1
    code, _, err = run_cli(capsys, *a, "get", "/jobs/cli/ht", "nokey")
    assert code == 1 and "KeyNotFoundError" in err
    code, _, err = run_cli(capsys, *a, "ls", "/nope")
    assert code == 1 and "PathNotFoundError" in err
    assert run_cli(capsys, *a, "rm", "/jobs/cli")[0] == 0
    assert not c.exists("/jobs/cli")


def test_cli_unreachable_controller_is_an_error_not_a_traceback(capsys):
    code, _, err = run_cli(capsys, "state", "--controller", "127.0.0.1:1", "ls")
    assert code == 1 and "StateUnavailableError" in err


def test_memory_server_command_joins_and_bad_size_is_refused(cluster, capsys, tmp_path):
    code, _, err = run_cli(capsys, "memory-server", "--controller", cluster.address, "--block-size", "lots")
    assert code == 2 and "block-size" in err
    proc = subprocess.Popen(
        [sys.executable, "-m", "taureau.cli.state_cmd", "memory-server", "--controller", cluster.address,
         "--block-size", "128KiB", "--blocks", "4", "--internal-secret-file", str(tmp_path / "state" / "internal.key")]
    )  # fmt: skip
    try:
        c = cluster.client()
        deadline = time.monotonic() + 20
        while c.stats()["servers"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert c.stats()["blocks_total"] == 16 + 4
    finally:
        proc.terminate()
        proc.wait(10)


def test_start_state_services_with_memory_server_process(tmp_path):
    async def main() -> None:
        svc = await start_state_services(
            controller_port=0, block_size=1 << 20, num_blocks=4, lease_ms=5000, data_dir=str(tmp_path)
        )
        try:

            def use() -> bytes:
                with StateClient(svc.controller_address) as c:
                    ht = c.open_or_create_hash_table("/a/b")
                    ht.put(b"k", b"v")
                    assert c.stats()["blocks_total"] == 4
                    return ht.get(b"k")

            assert await asyncio.to_thread(use) == b"v"
        finally:
            await svc.close()
        assert svc.proc.returncode is not None

    asyncio.run(main())
