"""Argument parsing for `taureau`: standalone, admin, client, state and memory-server."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from taureau.cli import args as checked
from taureau.cli import credentials, loadbalance_flags
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
    (
        "--policy-check-interval",
        "policy_check_interval_s",
        checked.seconds,
        "seconds between applying message TTLs, backlog quotas, subscription expiration and inactive-topic deletion, 0 never",
    ),
    (
        "--broker-delete-inactive-topics-enabled",
        "delete_inactive_topics_enabled",
        checked.true_or_false,
        "true: delete topics inactive for the duration below, where no namespace or topic policy says",
    ),
    (
        "--broker-delete-inactive-topics-max-inactive-duration-seconds",
        "delete_inactive_topics_max_inactive_duration_s",
        checked.positive_int,
        "seconds without producers, consumers or traffic after which an inactive topic is deleted",
    ),
    (
        "--broker-delete-inactive-topics-mode",
        "delete_inactive_topics_mode",
        checked.inactive_topic_mode,
        "delete_when_no_subscriptions or delete_when_subscriptions_caught_up",
    ),
    (
        "--idle-topic-unload",
        "idle_topic_unload_s",
        checked.seconds,
        "seconds a topic without producers or consumers stays loaded, 0 to keep every topic loaded",
    ),
    (
        "--cursor-save-interval",
        "cursor_save_interval_s",
        checked.seconds,
        "seconds between saves of a subscription's acknowledged position",
    ),
]


def _standalone_parser(sub) -> None:
    from taureau.broker.config import BrokerConfig
    from taureau.cli.cluster_cmd import cluster_name, metadata_url

    d = BrokerConfig()  # the defaults the flags below show and keep
    p = sub.add_parser("standalone", help="run broker, storage, admin API and state in one process")
    p.add_argument("--data-dir", default="./data", help="where topics and metadata live (default ./data)")
    p.add_argument(
        "--metadata-store",
        type=metadata_url,
        default=None,
        help="embedded (default: in --data-dir) or zk://host:port[,host:port...][/chroot]",
    )
    p.add_argument(
        "--metadata-session-timeout",
        type=float,
        default=10.0,
        help="seconds ZooKeeper keeps the session of a silent process (default 10); on expiry it stops",
    )
    p.add_argument(
        "--remote-bookies",
        action="store_true",
        help="store entries on the `taureau bookie` processes registered in --metadata-store (zk:// only)",
    )
    checked.add_quorum_flags(p, None, "2 with --remote-bookies, else 1")
    checked.add_bookie_timeout_flags(p)
    p.add_argument("--broker-port", type=int, default=6650, help="Pulsar protocol port (default 6650)")
    p.add_argument("--web-port", type=int, default=8080, help="admin REST port (default 8080)")
    p.add_argument("--bind-address", default=None,
                   help="address to listen on (default 127.0.0.1, or 0.0.0.0 with --auth)")
    p.add_argument(
        "--advertised-address", default="localhost", help="host name clients are told to connect to"
    )
    p.add_argument("--cluster-name", type=cluster_name, default="standalone",
                   help="this cluster's name, as other clusters know it for geo-replication (default standalone)")
    p.add_argument(
        "--advertised-listeners",
        type=checked.listeners,
        default={},
        help="name:pulsar://host:port,... : the URL a client naming that listener is sent to",
    )
    p.add_argument(
        "--transaction-coordinator-enabled",
        action="store_true",
        help="serve Pulsar transactions (off by default, as in Pulsar; clients then get NotAllowedError)",
    )
    p.add_argument(
        "--no-journal-fsync",
        action="store_true",
        help="acknowledge before fsync (faster; a machine crash may lose acknowledged messages)",
    )
    for flag, field, kind, text in _BOUND_FLAGS:
        default = getattr(d, field)
        p.add_argument(flag, dest=field, type=kind, default=default, help=f"{text} (default {default})")
    loadbalance_flags.add_flags(p)
    _security_flags(p)
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


def _security_flags(p: argparse.ArgumentParser) -> None:
    g = _auth_flags(p)
    g.add_argument("--tls-cert-file", metavar="FILE", help="server certificate (PEM): serve pulsar+ssl:// and https://")
    g.add_argument("--tls-key-file", metavar="FILE", help="the certificate's private key (PEM)")
    g.add_argument("--tls-trust-certs-file", metavar="FILE",
                   help="CA certificates that sign client certificates (mutual TLS, --auth tls)")
    g.add_argument("--tls-require-trusted-client-cert", action="store_true",
                   help="refuse TLS clients without a certificate the trust file signed")
    g.add_argument("--broker-port-tls", type=int, default=6651, help="pulsar+ssl:// port (default 6651)")
    g.add_argument("--web-port-tls", type=int, default=8443, help="https:// admin port (default 8443)")
    g.add_argument("--no-plain-ports", action="store_true", help="serve only the TLS ports")
    g.add_argument("--tls-cert-refresh-check", type=float, default=300.0, metavar="S",
                   help="seconds between checks for a renewed certificate (default 300)")


def _auth_flags(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Who may call in, and the key function roles are minted with (standalone and worker)."""
    g = p.add_argument_group("security")
    g.add_argument("--auth", action="append", default=[], metavar="METHODS",
                   help="authentication methods, comma-separated or repeated: token, basic, tls")
    g.add_argument("--token-secret-key", metavar="FILE", help="HS256 secret key file (taureau tokens create-secret-key)")
    g.add_argument("--token-public-key", metavar="FILE", help="RS256/ES256 public key file (PEM or DER)")
    g.add_argument("--basic-auth-file", metavar="FILE", help="htpasswd file (bcrypt or apr1) for --auth basic")
    g.add_argument("--superuser-roles", type=_roles, default=(), metavar="A,B",
                   help="roles allowed everything (Pulsar's superUserRoles)")
    g.add_argument("--auth-refresh-check", type=float, default=60.0, metavar="S",
                   help="seconds an expired connection has to answer AUTH_CHALLENGE (default 60)")
    g.add_argument("--function-token-ttl", type=_positive_int, default=3600, metavar="S",
                   help="seconds a function instance's minted token lives; renewed at half (default 3600)")
    g.add_argument("--internal-key-file", metavar="FILE",
                   help="keep the key internal and function-role tokens are signed with in FILE (created "
                        "owner-only): a separate functions worker given the same file mints function tokens")
    return g


def _tls_files(args: argparse.Namespace):
    import ssl

    from taureau.net.tls import ReloadingContext, TlsFiles

    if not args.tls_cert_file and not args.tls_key_file:
        if args.no_plain_ports:
            raise ValueError("--no-plain-ports needs --tls-cert-file and --tls-key-file")
        if args.tls_trust_certs_file:
            raise ValueError("--tls-trust-certs-file needs --tls-cert-file and --tls-key-file")
        return None
    if not (args.tls_cert_file and args.tls_key_file):
        raise ValueError("TLS needs both --tls-cert-file and --tls-key-file")
    if args.no_plain_ports and not args.no_functions:
        raise ValueError("--no-plain-ports needs --no-functions (function instances connect over the plain port)")
    files = TlsFiles(args.tls_cert_file, args.tls_key_file, args.tls_trust_certs_file,
                     args.tls_require_trusted_client_cert, args.tls_cert_refresh_check)
    try:
        ReloadingContext(files)  # files that do not load fail before anything starts
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS certificate: {exc}") from None
    return files


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 2:  # renewed at half: one second is the least that leaves room to renew
        raise argparse.ArgumentTypeError("must be at least 2")
    return value


def _roles(text: str) -> tuple[str, ...]:
    return tuple(r.strip() for r in text.split(",") if r.strip())


def _auth_config(args: argparse.Namespace):
    from taureau.auth.config import AuthConfig, load_or_create_internal_key

    methods = tuple(dict.fromkeys(m for item in args.auth for m in _roles(item)))
    config = AuthConfig(
        methods=methods,
        token_secret_key_file=args.token_secret_key,
        token_public_key_file=args.token_public_key,
        basic_auth_file=args.basic_auth_file,
        superuser_roles=args.superuser_roles,
        refresh_check_s=args.auth_refresh_check,
        function_token_ttl_s=args.function_token_ttl,
    )
    if args.internal_key_file:
        config.internal_key = load_or_create_internal_key(args.internal_key_file)
    if config.enabled:
        from taureau.auth.config import build_authentication, warn_if_readable

        build_authentication(config)  # unreadable or malformed key files fail before anything starts
        for path in (config.token_secret_key_file, config.basic_auth_file):
            warning = warn_if_readable(path) if path else None
            if warning:
                print(f"taureau standalone: warning: {warning}", file=sys.stderr)
    return config


def _secrets_dir(args: argparse.Namespace) -> str | None:
    """--secrets-dir, checked: the file provider needs an existing directory, others none."""
    if args.secrets_provider != "file":
        if args.secrets_dir:
            raise ValueError("--secrets-dir is for --secrets-provider file")
        return None
    if not args.secrets_dir:
        raise ValueError("--secrets-provider file needs --secrets-dir")
    if not os.path.isdir(args.secrets_dir):
        raise ValueError(f"--secrets-dir {args.secrets_dir} is not a directory")
    return os.path.abspath(args.secrets_dir)


def _run_as(args: argparse.Namespace) -> tuple[int, int] | None:
    """--functions-run-as USER: its (uid, gid); only a worker running as root can drop to it."""
    if not args.functions_run_as:
        return None
    import pwd

    try:
        user = pwd.getpwnam(args.functions_run_as)
    except KeyError:
        raise ValueError(f"--functions-run-as: no user {args.functions_run_as!r}") from None
    if os.geteuid() != 0:
        raise ValueError("--functions-run-as needs the worker to run as root (it drops each instance to that user)")
    if user.pw_uid == 0:
        raise ValueError("--functions-run-as names root: give an unprivileged user")
    return user.pw_uid, user.pw_gid


def _sandbox(args: argparse.Namespace, auth_enabled: bool) -> tuple[bool, tuple[str, ...]]:
    """--functions-sandbox (auto: on with --auth, where tenants share the worker) and the
    --functions-readable-path trees, made absolute."""
    on = args.functions_sandbox == "on" or (args.functions_sandbox == "auto" and auth_enabled)
    paths = tuple(os.path.abspath(p) for p in args.functions_readable_path)
    if paths and not on:
        raise ValueError("--functions-readable-path is for --functions-sandbox on")
    return on, paths


def _functions_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--functions-run-as", metavar="USER",
                   help="run as root, drop each process instance to USER (e.g. nobody)")
    p.add_argument("--functions-sandbox", choices=["auto", "on", "off"], default="auto",
                   help="confine each process instance's files with Landlock (auto: on with --auth)")
    p.add_argument("--functions-readable-path", action="append", default=[], metavar="DIR",
                   help="a tree sandboxed instances may also read (input data); repeatable")
    p.add_argument("--functions-runtime", choices=["process", "thread"], default="process",
                   help="where function instances run by default (default: a process each)")
    p.add_argument("--functions-warm-pool", type=int, default=1,
                   help="instance processes kept started ahead of need (default 1)")
    p.add_argument("--secrets-provider", choices=["env", "cleartext", "file"], default="env",
                   help="how context.get_secret resolves (default: the environment variable)")
    p.add_argument("--secrets-dir", default=None, metavar="DIR",
                   help="--secrets-provider file: each function reads DIR/tenant/namespace/name/FILE")


def _functions_worker_parser(sub) -> None:
    from taureau.cli.cluster_cmd import zk_url

    p = sub.add_parser("functions-worker", help="run the functions worker on its own, beside a broker")
    p.add_argument("--broker-service-url", default="pulsar://localhost:6650", help="where instances connect")
    p.add_argument("--broker-admin-url", default="http://localhost:8080", help="the broker's admin REST API")
    p.add_argument("--data-dir", default="./functions-data", help="function records, packages, state")
    p.add_argument("--web-port", type=int, default=6750, help="functions REST port (default 6750)")
    p.add_argument("--bind-address", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--state-address", default=None, help="ephemeral state controller host:port, if any")
    p.add_argument("--no-journal-fsync", action="store_true", help="acknowledge state before fsync")
    # One worker of several: function records, assignments and packages in ZooKeeper, state on
    # the registered bookies (docs/cluster.md#functions-across-workers).
    p.add_argument("--metadata-store", type=zk_url, default=None,
                   help="zk://host:port[/chroot]: join the function workers of this store (default: alone)")
    p.add_argument("--metadata-session-timeout", type=float, default=10.0,
                   help="seconds before a silent worker's instances move to the others (default 10)")
    p.add_argument("--advertised-address", default="localhost",
                   help="host name the other workers reach this one's REST port at (default localhost)")
    checked.add_quorum_flags(p, 2, "2, with --metadata-store")
    _functions_flags(p)
    # Against a broker with authentication on: the broker's --auth, keys and --superuser-roles
    # check the worker's callers, --internal-key-file mints function tokens, and the worker's
    # own (superuser) token goes in --auth-plugin token --auth-params.
    _auth_flags(p)
    credentials.add_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    p.set_defaults(func=_run_functions_worker)


def _run_functions_worker(args: argparse.Namespace) -> int:
    from taureau.functions_worker import FunctionsWorkerConfig, run

    try:
        secrets_dir = _secrets_dir(args)
        run_as = _run_as(args)
        auth = _auth_config(args)
        own = credentials.from_args(args)
        if own.method not in (None, "token"):
            raise ValueError("the worker calls the broker with a token (--auth-plugin token)")
        if auth.enabled != (own.token is not None):
            raise ValueError("--auth (who may call the worker) and --auth-plugin token (the worker's own role "
                             "at the broker) go together")
        if auth.enabled and not args.internal_key_file:
            raise ValueError("--auth needs --internal-key-file: the broker's, to mint tokens for function roles")
        sandbox_files, readable_paths = _sandbox(args, auth.enabled)
        quorum = checked.quorum(args, 2)
        if args.metadata_session_timeout <= 0:
            raise ValueError("--metadata-session-timeout must be positive")
    except (ValueError, credentials.CredentialsError) as exc:
        print(f"taureau functions-worker: {exc}", file=sys.stderr)
        return 2
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
        secrets_dir=secrets_dir,
        journal_fsync=not args.no_journal_fsync,
        run_as=run_as,
        sandbox_files=sandbox_files,
        readable_paths=readable_paths,
        auth=auth,
        token=own.token,
        metadata_url=args.metadata_store,
        metadata_session_timeout_s=args.metadata_session_timeout,
        advertised_address=args.advertised_address,
        quorum=quorum,
    )
    return serve("taureau functions-worker", args.verbose, lambda: run(config))


def serve(name: str, verbose: bool, run) -> int:
    """Run a server command: one line on stderr for an error it can name, exit code 1."""
    import signal

    from taureau.common.errors import TaureauError

    # main() restores SIGPIPE's default for `taureau ... | head`; a server must not die of it
    # when it writes to a peer that reset its connection (it gets EPIPE and drops that peer).
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

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
    from taureau.broker.transactions.settings import TransactionConfig
    from taureau.standalone import FunctionsOptions, StandaloneConfig, StateOptions, run

    if args.remote_bookies and not (args.metadata_store or "").startswith("zk://"):
        print("taureau standalone: --remote-bookies needs --metadata-store zk://...", file=sys.stderr)
        return 2
    try:
        e, w, a = checked.quorum(args, 2 if args.remote_bookies else 1)
        add_timeout_s, read_timeout_s = checked.bookie_timeouts(args)
    except ValueError as exc:
        print(f"taureau standalone: {exc}", file=sys.stderr)
        return 2

    try:
        auth = _auth_config(args)
        tls = _tls_files(args)
        if "tls" in auth.methods and (tls is None or not tls.trust_file):
            raise ValueError("--auth tls needs --tls-cert-file, --tls-key-file and --tls-trust-certs-file")
        secrets_dir = _secrets_dir(args)
        run_as = _run_as(args)
        sandbox_files, readable_paths = _sandbox(args, auth.enabled)
    except ValueError as exc:
        print(f"taureau standalone: {exc}", file=sys.stderr)
        return 2
    bind = args.bind_address or ("0.0.0.0" if auth.enabled else "127.0.0.1")
    config = StandaloneConfig(
        broker=BrokerConfig(
            bind_address=bind,
            auth=auth,
            tls=tls,
            broker_port_tls=args.broker_port_tls,
            web_port_tls=args.web_port_tls,
            plain_ports=not args.no_plain_ports,
            broker_port=args.broker_port,
            web_port=args.web_port,
            advertised_address=args.advertised_address,
            cluster_name=args.cluster_name,
            advertised_listeners=args.advertised_listeners,
            data_dir=args.data_dir,
            journal_fsync=not args.no_journal_fsync,
            transactions=TransactionConfig(enabled=args.transaction_coordinator_enabled),
            load_balancer=loadbalance_flags.settings(args),
            **{field: getattr(args, field) for _, field, _, _ in _BOUND_FLAGS},
        ),
        metadata_url=args.metadata_store,
        metadata_session_timeout_s=args.metadata_session_timeout,
        remote_bookies=args.remote_bookies,
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
            secrets_dir=secrets_dir,
            run_as=run_as,
            sandbox_files=sandbox_files,
            readable_paths=readable_paths,
        ),
        dashboard=not args.no_dashboard,
    )
    ledgers = config.broker.managed_ledger
    ledgers.ensemble_size, ledgers.write_quorum, ledgers.ack_quorum = e, w, a
    ledgers.bookie_add_timeout_s, ledgers.bookie_read_timeout_s = add_timeout_s, read_timeout_s
    return serve("taureau standalone", args.verbose, lambda: run(config))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("taureau")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from taureau.cli import admin, broker_cmd, client, cluster_cmd, demo, functions, sketches, tokens

    parser = argparse.ArgumentParser(
        prog="taureau", description="Taureau: a serverless platform for real-time data"
    )
    parser.add_argument("--version", action="version", version=f"taureau {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _standalone_parser(sub)
    _functions_worker_parser(sub)
    cluster_cmd.register(sub)
    cluster_cmd.register_bookie_verb(sub)
    broker_cmd.register(sub)
    broker_cmd.register_cluster_verb(sub)
    cluster_cmd.register_recover_verb(sub)
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
