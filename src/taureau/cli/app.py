"""Argument parsing for `taureau`: standalone, admin, client, state and memory-server."""

from __future__ import annotations

import argparse
import logging
import sys

from taureau.cli import args as checked
from taureau.common.sizes import parse_size

# Standalone flags that set a BrokerConfig bound of the same name: (flag, field, type, help).
_BOUND_FLAGS = [
    (
        "--max-partitions-per-topic",
        "max_num_partitions_per_partitioned_topic",
        int,
        "most partitions a partitioned topic may have, 0 for no limit",
    ),
    (
        "--cache-size",
        "managed_ledger_cache_size_bytes",
        parse_size,
        "entry cache shared by all topics, bytes or e.g. 1GiB",
    ),
    ("--max-connections", "max_connections", int, "client connections held at most, 0 for no limit"),
    (
        "--max-connections-per-ip",
        "max_connections_per_ip",
        int,
        "client connections from one IP address at most, 0 for no limit",
    ),
    (
        "--keepalive-interval",
        "keep_alive_interval_s",
        float,
        "seconds between keep-alive pings; a peer silent for one more is closed",
    ),
    ("--connect-timeout", "connect_timeout_s", float, "seconds a new connection has to send CONNECT"),
]


def _standalone_parser(sub) -> None:
    from taureau.broker.config import BrokerConfig

    d = BrokerConfig()  # the defaults the flags below show and keep
    p = sub.add_parser("standalone", help="run broker, storage, admin API and state in one process")
    p.add_argument("--data-dir", default="./data", help="where topics and metadata live (default ./data)")
    p.add_argument("--broker-port", type=int, default=6650, help="Pulsar protocol port (default 6650)")
    p.add_argument("--web-port", type=int, default=8080, help="admin REST port (default 8080)")
    p.add_argument("--bind-address", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument(
        "--advertised-address", default="localhost", help="host name clients are told to connect to"
    )
    p.add_argument(
        "--advertised-listeners",
        type=checked.listeners,
        default={},
        help="name:pulsar://host:port,... : the URL a client naming that listener is sent to",
    )
    p.add_argument(
        "--no-journal-fsync",
        action="store_true",
        help="acknowledge before fsync (faster; a machine crash may lose acknowledged messages)",
    )
    for flag, field, kind, text in _BOUND_FLAGS:
        default = getattr(d, field)
        p.add_argument(flag, dest=field, type=kind, default=default, help=f"{text} (default {default})")
    p.add_argument("--state-port", type=int, default=9090, help="state controller port (default 9090)")
    p.add_argument("--state-block-size", type=parse_size, default="32MiB", help="memory block size")
    p.add_argument("--state-blocks", type=int, default=64, help="memory blocks in the pool (default 64)")
    p.add_argument("--state-lease-ms", type=int, default=10_000, help="state lease period and grace")
    p.add_argument("--no-state", action="store_true", help="do not run the state controller")
    p.add_argument("--no-functions", action="store_true", help="do not run the functions worker")
    p.add_argument("--no-dashboard", action="store_true",
                   help="do not serve the web dashboard at / of the web port (nor its live stream)")
    _functions_flags(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    p.set_defaults(func=_run_standalone)


def _functions_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--functions-runtime", choices=["process", "thread"], default="process",
                   help="where function instances run by default (default: a process each)")
    p.add_argument("--functions-warm-pool", type=int, default=1,
                   help="instance processes kept started ahead of need (default 1)")
    p.add_argument("--secrets-provider", choices=["env", "cleartext"], default="env",
                   help="how context.get_secret resolves (default: the environment variable)")


def _functions_worker_parser(sub) -> None:
    p = sub.add_parser("functions-worker", help="run the functions worker on its own, beside a broker")
    p.add_argument("--broker-service-url", default="pulsar://localhost:6650", help="where instances connect")
    p.add_argument("--broker-admin-url", default="http://localhost:8080", help="the broker's admin REST API")
    p.add_argument("--data-dir", default="./functions-data", help="function records, packages, state")
    p.add_argument("--web-port", type=int, default=6750, help="functions REST port (default 6750)")
    p.add_argument("--bind-address", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--state-address", default=None, help="ephemeral state controller host:port, if any")
    p.add_argument("--no-journal-fsync", action="store_true", help="acknowledge state before fsync")
    _functions_flags(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    p.set_defaults(func=_run_functions_worker)


def _run_functions_worker(args: argparse.Namespace) -> int:
    from taureau.functions_worker import FunctionsWorkerConfig, run

    config = FunctionsWorkerConfig(
        broker_service_url=args.broker_service_url,
        broker_admin_url=args.broker_admin_url,
        data_dir=args.data_dir,
        bind_address=args.bind_address,
        web_port=args.web_port,
        state_address=args.state_address,
        runtime=args.functions_runtime,
        warm_pool_size=max(args.functions_warm_pool, 0),
        secrets_provider=args.secrets_provider,
        journal_fsync=not args.no_journal_fsync,
    )
    return _serve("taureau functions-worker", args.verbose, lambda: run(config))


def _serve(name: str, verbose: bool, run) -> int:
    """Run a server command: one line on stderr for an error it can name, exit code 1."""
    from taureau.common.errors import TaureauError

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        run()
    except (TaureauError, OSError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _run_standalone(args: argparse.Namespace) -> int:
    from taureau.broker.config import BrokerConfig
    from taureau.standalone import FunctionsOptions, StandaloneConfig, StateOptions, run

    config = StandaloneConfig(
        broker=BrokerConfig(
            bind_address=args.bind_address,
            broker_port=args.broker_port,
            web_port=args.web_port,
            advertised_address=args.advertised_address,
            advertised_listeners=args.advertised_listeners,
            data_dir=args.data_dir,
            journal_fsync=not args.no_journal_fsync,
            **{field: getattr(args, field) for _, field, _, _ in _BOUND_FLAGS},
        ),
        state=StateOptions(
            enabled=not args.no_state,
            port=args.state_port,
            block_size=args.state_block_size,
            blocks=args.state_blocks,
            lease_ms=args.state_lease_ms,
        ),
        functions=FunctionsOptions(
            enabled=not args.no_functions,
            runtime=args.functions_runtime,
            warm_pool_size=max(args.functions_warm_pool, 0),
            secrets_provider=args.secrets_provider,
        ),
        dashboard=not args.no_dashboard,
    )
    return _serve("taureau standalone", args.verbose, lambda: run(config))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("taureau")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from taureau.cli import admin, client, demo, functions, sketches, tokens

    parser = argparse.ArgumentParser(
        prog="taureau", description="Taureau: a serverless platform for real-time data"
    )
    parser.add_argument("--version", action="version", version=f"taureau {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _standalone_parser(sub)
    _functions_worker_parser(sub)
    admin.register(sub)
    client.register(sub)
    functions.register(sub)
    tokens.register(sub)
    sketches.register(sub)
    demo.register(sub)
    try:
        from taureau.cli import state_cmd
    except ImportError:
        pass
    else:
        state_cmd.register(sub)
    return parser


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
