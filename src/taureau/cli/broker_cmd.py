"""`taureau broker`: one broker of a cluster: topics on the registered bookies, metadata in
ZooKeeper, namespace bundles shared with the other brokers of that store (docs/cluster.md)."""

from __future__ import annotations

import argparse
import sys

from taureau.cli import args as checked
from taureau.cli import loadbalance_flags
from taureau.cli.cluster_cmd import cluster_name, zk_url


def register(sub) -> None:
    from taureau.broker.ownership.bundles import DEFAULT_BUNDLES, MAX_BUNDLES

    p = sub.add_parser("broker", help="run one broker of a cluster (several share a ZooKeeper and the bookies)")
    p.add_argument("--metadata-store", required=True, type=zk_url, help="zk://host:port[,host:port...][/chroot]")
    p.add_argument("--cluster", type=cluster_name, default=None,
                   help="the cluster's name, as given to initialize-cluster-metadata (default standalone)")
    p.add_argument("--broker-port", type=int, default=6650, help="Pulsar protocol port (default 6650, 0: any free)")
    p.add_argument("--web-port", type=int, default=8080, help="admin REST port (default 8080, 0: any free)")
    p.add_argument("--bind-address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--advertised-address", default="localhost",
                   help="host name clients and other brokers are told to connect to (default localhost)")
    p.add_argument("--data-dir", default=None,
                   help="lock and scratch directory of this broker (default ./broker-data-<broker port>)")
    p.add_argument("--metadata-session-timeout", type=float, default=10.0,
                   help="seconds ZooKeeper keeps a silent broker's bundles (default 10); on expiry it stops")
    p.add_argument("--bundles-per-namespace", type=int, default=DEFAULT_BUNDLES, choices=range(1, MAX_BUNDLES + 1),
                   metavar=f"1..{MAX_BUNDLES}",
                   help=f"bundles of a namespace this broker uses first (default {DEFAULT_BUNDLES})")
    checked.add_quorum_flags(p, 2, "2")
    checked.add_bookie_timeout_flags(p)
    loadbalance_flags.add_flags(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from taureau.broker.config import BrokerConfig
    from taureau.cli.app import serve
    from taureau.standalone import FunctionsOptions, StandaloneConfig, StateOptions, run

    try:
        e, w, a = checked.quorum(args, 2)
        add_timeout_s, read_timeout_s = checked.bookie_timeouts(args)
    except ValueError as exc:
        print(f"taureau broker: {exc}", file=sys.stderr)
        return 2
    broker = BrokerConfig(
        bind_address=args.bind_address,
        broker_port=args.broker_port,
        web_port=args.web_port,
        advertised_address=args.advertised_address,
        data_dir=args.data_dir or f"./broker-data-{args.broker_port}",
        load_balancer=loadbalance_flags.settings(args),
    )
    if args.cluster:
        broker.cluster_name = args.cluster
    ledgers = broker.managed_ledger
    ledgers.ensemble_size, ledgers.write_quorum, ledgers.ack_quorum = e, w, a
    ledgers.bookie_add_timeout_s, ledgers.bookie_read_timeout_s = add_timeout_s, read_timeout_s
    config = StandaloneConfig(
        broker=broker,
        metadata_url=args.metadata_store,
        metadata_session_timeout_s=args.metadata_session_timeout,
        remote_bookies=True,
        state=StateOptions(enabled=False),
        functions=FunctionsOptions(enabled=False),  # `taureau functions-worker` runs them
        dashboard=False,
        cluster_member=True,
        bundles_per_namespace=args.bundles_per_namespace,
        name="Taureau broker",
    )
    return serve("taureau broker", args.verbose, lambda: run(config))


def register_cluster_verb(sub) -> None:
    p = sub.add_parser("cluster", help="a local dev cluster: ZooKeeper, bookies and brokers on this machine")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", title="verbs")
    verbs.required = True
    up = verbs.add_parser("up", help="start ZooKeeper, --bookies bookies and --brokers brokers; Ctrl-C stops all")
    up.add_argument("--brokers", type=int, default=3, choices=range(1, 17), metavar="1..16",
                    help="brokers (default 3)")
    up.add_argument("--bookies", type=int, default=3, choices=range(1, 17), metavar="1..16",
                    help="bookies (default 3; ledgers use E/Qw/Qa 2/2/2, or 1/1/1 with one bookie)")
    up.add_argument("--data-dir", default="./cluster-data", help="where every node keeps its data (default ./cluster-data)")
    up.add_argument("--broker-port", type=int, default=6650, help="broker i listens on this + i (default 6650)")
    up.add_argument("--web-port", type=int, default=8080, help="broker i's admin API on this + i (default 8080)")
    up.add_argument("--bookie-port", type=int, default=3181, help="bookie i listens on this + i (default 3181)")
    up.add_argument("--function-workers", type=int, default=0, choices=range(0, 17), metavar="0..16",
                    help="function workers sharing the functions (default 0)")
    up.add_argument("--functions-port", type=int, default=6750,
                    help="function worker i's REST API on this + i (default 6750)")
    up.add_argument("--session-timeout", type=float, default=5.0,
                    help="seconds a killed node keeps its bundles and registration (default 5)")
    up.set_defaults(func=_cluster_up)


def _cluster_up(args: argparse.Namespace) -> int:
    from taureau.devcluster import DevClusterConfig, run

    return run(DevClusterConfig(
        data_dir=args.data_dir, brokers=args.brokers, bookies=args.bookies, broker_port=args.broker_port,
        web_port=args.web_port, bookie_port=args.bookie_port, session_timeout_s=args.session_timeout,
        function_workers=args.function_workers, functions_port=args.functions_port,
    ))
