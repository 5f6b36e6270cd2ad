"""`taureau state ls|stat|get|put|rm` (inspect ephemeral state) and `taureau memory-server`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys

from taureau.cli import credentials
from taureau.common import errors
from taureau.common.sizes import parse_size

DEFAULT_CONTROLLER = "localhost:9090"


def register(subparsers) -> None:
    """Add the `state` and `memory-server` commands to the top-level CLI."""
    st = subparsers.add_parser("state", help="inspect ephemeral state (Jiffy-style far memory)")
    st.add_argument(
        "--controller",
        default=os.environ.get("TAUREAU_STATE_URL", DEFAULT_CONTROLLER),
        help="state controller HOST:PORT (default: $TAUREAU_STATE_URL or localhost:9090)",
    )
    credentials.add_options(st)  # as the other commands: token or basic, with authentication on
    sub = st.add_subparsers(dest="state_cmd", required=True)
    p = sub.add_parser("ls", help="list a directory")
    p.add_argument("path", nargs="?", default="/")
    p = sub.add_parser("stat", help="status of a path, or the pool's stats with no path")
    p.add_argument("path", nargs="?")
    p = sub.add_parser("get", help="a hash table value, a file's bytes, or a queue's length")
    p.add_argument("path")
    p.add_argument("key", nargs="?")
    p = sub.add_parser("put", help="upsert into a hash table, or enqueue onto a queue")
    p.add_argument("path")
    p.add_argument("key")
    p.add_argument("value", nargs="?")
    p = sub.add_parser("rm", help="remove a path (recursively) and free its blocks")
    p.add_argument("path")
    st.set_defaults(func=state_handler)

    ms = subparsers.add_parser("memory-server", help="run a memory server that joins a state controller")
    link = ms.add_mutually_exclusive_group(required=True)
    link.add_argument("--controller", help="state controller HOST:PORT")
    link.add_argument(
        "--controller-fd",
        type=int,
        help="a connected socket to the controller (set by the process that starts it)",
    )
    ms.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ms.add_argument("--advertised-address", default=None, help="address clients dial (default: --host)")
    ms.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    ms.add_argument("--block-size", default="32MiB", help="bytes per block (e.g. 32MiB)")
    ms.add_argument("--blocks", type=int, default=64, help="number of blocks in this server's pool")
    ms.add_argument(
        "--memory-budget",
        default=None,
        help="memory the blocks' data may take, measured (default: every block full, blocks x size)",
    )
    ms.add_argument(
        "--internal-secret-file",
        default=None,
        help="the controller's internal secret (its DATA_DIR/internal.key): needed to join over TCP",
    )
    ms.add_argument(
        "--rejoin-s",
        type=float,
        default=60.0,
        help="how long to keep serving and rejoining when the controller goes away (default 60)",
    )
    ms.set_defaults(func=memory_server_handler)

    sc = subparsers.add_parser(
        "state-controller", help="run a state controller alone (memory servers join it with memory-server)"
    )
    sc.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sc.add_argument("--port", type=int, default=9090, help="port to listen on (default 9090)")
    sc.add_argument("--data-dir", default="./state-data", help="namespace (metadata) and dumps live here")
    sc.add_argument("--lease-ms", type=int, default=10_000, help="lease period and grace (default 10000)")
    sc.add_argument(
        "--rejoin-ms",
        type=int,
        default=30_000,
        help="after a restart, how long known memory servers have to come back (default 30000)",
    )
    sc.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sc.set_defaults(func=controller_handler)


def _structure(client, path: str):
    from taureau.state import kinds
    from taureau.state.codec import Op

    m = client.control(Op.BLOCK_MAP, {"path": path})  # no open: inspecting must not renew leases
    return kinds.get(m["kind"]).handle(client, path, m)


def state_handler(args: argparse.Namespace) -> int:
    from taureau.state.client import StateClient

    try:
        options = credentials.from_args(args).state_options()
    except credentials.CredentialsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        with StateClient(args.controller, timeout=10, **options) as c:
            return _run_state(c, args)
    except errors.StateError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


def _run_state(c, args: argparse.Namespace) -> int:
    cmd = args.state_cmd
    if cmd == "ls":
        for child in c.ls(args.path):
            print(f"{child['kind']:<10} {child['name']}")
    elif cmd == "stat":
        print(json.dumps(c.status(args.path) if args.path else c.stats(), indent=2))
    elif cmd == "rm":
        c.remove(args.path)
    elif cmd == "get":
        sys.stdout.buffer.write(_structure(c, args.path).cli_get(args.key))
    else:  # put
        _structure(c, args.path).cli_put(args.key, args.value)
    return 0


def memory_server_handler(args: argparse.Namespace) -> int:
    from taureau.state.internal_auth import read_secret
    from taureau.state.memory_server import run_memory_server

    try:
        block_size = parse_size(args.block_size)
        budget = parse_size(args.memory_budget) if args.memory_budget is not None else None
    except ValueError as e:
        print(f"error: --block-size/--memory-budget: {e}", file=sys.stderr)
        return 2
    try:
        secret = read_secret(args.internal_secret_file) if args.internal_secret_file else None
    except ValueError as e:
        print(f"error: --internal-secret-file: {e}", file=sys.stderr)
        return 2
    kwargs = dict(
        controller=args.controller, host=args.host, port=args.port, block_size=block_size,
        advertised_host=args.advertised_address, internal_secret=secret,
        num_blocks=args.blocks, rejoin_s=args.rejoin_s, memory_budget=budget,
    )  # fmt: skip
    try:
        if args.controller_fd is not None:
            kwargs["controller_sock"] = socket.socket(fileno=args.controller_fd)
        _run(run_memory_server(**kwargs))
    except (errors.StateError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def controller_handler(args: argparse.Namespace) -> int:
    from taureau.state.service import serve_controller

    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _run(
            serve_controller(
                host=args.host,
                port=args.port,
                data_dir=args.data_dir,
                lease_ms=args.lease_ms,
                rejoin_ms=args.rejoin_ms,
            )  # fmt: skip
        )
    except (errors.TaureauError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _run(coro) -> None:
    try:
        if os.environ.get("TAUREAU_NO_UVLOOP"):
            raise ImportError("uvloop disabled by TAUREAU_NO_UVLOOP")
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (`python -m taureau.cli.state_cmd ...`), used to spawn memory servers."""
    parser = argparse.ArgumentParser(prog="taureau")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
