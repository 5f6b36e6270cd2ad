"""`taureau zookeeper-check` and `taureau initialize-cluster-metadata`: cluster-mode set-up verbs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from taureau.cli import args as checked
from taureau.common.errors import NodeExistsError, TaureauError
from taureau.common.names import check_name_part
from taureau.metadata.factory import check_metadata_url, open_metadata_store
from taureau.metadata.zk_url import InvalidMetadataStoreUrlError

CLUSTERS = "/admin/clusters"


def metadata_url(text: str) -> str:
    """argparse type: a metadata-store URL, checked before anything connects."""
    try:
        check_metadata_url(text)
    except InvalidMetadataStoreUrlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def zk_url(text: str) -> str:
    if not text.lower().startswith("zk://"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a zk://host:port[/chroot] URL")
    return metadata_url(text)


def cluster_name(text: str) -> str:
    try:
        check_name_part("cluster", text)
    except TaureauError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register(sub) -> None:
    p = sub.add_parser("zookeeper-check", help="check that a ZooKeeper ensemble answers, reads and writes")
    p.add_argument("url", type=zk_url, help="zk://host:port[,host:port...][/chroot]")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a server (default 10)")
    p.set_defaults(func=lambda a: _run("zookeeper-check", _check(a)))

    p = sub.add_parser(
        "initialize-cluster-metadata",
        help="write a cluster's record, the public tenant and public/default into a metadata store",
    )
    p.add_argument("--cluster", required=True, type=cluster_name, help="the cluster's name, e.g. c1")
    p.add_argument("--metadata-store", required=True, type=metadata_url, help="zk://host:port[/chroot]")
    p.add_argument("--web-service-url", type=checked.http_url, default=None,
                   help="the cluster's admin URL, e.g. http://host:8080")
    p.add_argument("--broker-service-url", type=checked.service_url, default=None,
                   help="the cluster's service URL, e.g. pulsar://host:6650")
    p.set_defaults(func=lambda a: _run("initialize-cluster-metadata", _initialize(a)))


def _interval(text: str) -> float:
    value = checked.seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the interval must be more than 0 seconds")
    return value


def register_bookie_verb(sub) -> None:
    p = sub.add_parser("bookie", help="run a bookie: entries over TCP, registered in a ZooKeeper metadata store")
    p.add_argument("--metadata-store", required=True, type=zk_url, help="zk://host:port[/chroot]")
    p.add_argument("--data-dir", default="./bookie-data", help="journal, entry logs, index (default ./bookie-data)")
    p.add_argument("--port", type=int, default=3181, help="bookie protocol port (default 3181, 0: any free)")
    p.add_argument("--bind-address", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--advertised-address", default="127.0.0.1",
                   help="host others reach this bookie at; with the port it is the bookie's id")
    p.add_argument("--no-journal-fsync", action="store_true", help="acknowledge before fsync (faster, unsafe)")
    p.add_argument("--metadata-session-timeout", type=float, default=10.0,
                   help="seconds ZooKeeper keeps a silent bookie registered (default 10)")
    p.add_argument("--no-autorecovery", action="store_true",
                   help="run no replication worker and never act as auditor (recover-bookies by hand)")
    p.add_argument("--lost-bookie-recovery-delay", type=checked.seconds, default=0.0,
                   help="seconds a bookie may be gone before its ledgers are re-replicated (default 0)")
    p.add_argument("--audit-interval", type=_interval, default=60.0,
                   help="seconds between the auditor's full checks of every ledger (default 60)")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    p.set_defaults(func=_run_bookie)


def register_recover_verb(sub) -> None:
    p = sub.add_parser(
        "recover-bookies",
        help="copy what lost bookies held onto the registered ones (closed ledgers, earlier segments of open ones), once",
    )
    p.add_argument("--metadata-store", required=True, type=zk_url, help="zk://host:port[/chroot]")
    p.set_defaults(func=_run_recover)


def _run_recover(a: argparse.Namespace) -> int:
    try:
        from taureau.bookie_server import recover_bookies

        copied, problems = asyncio.run(recover_bookies(a.metadata_store))
    except (TaureauError, OSError) as exc:
        print(f"taureau recover-bookies: {exc}", file=sys.stderr)
        return 1
    for c in copied:
        print(f"ledger {c.ledger_id}: {c.entries} entries of lost bookie {c.lost} copied to {c.replacement}")
    for problem in problems:
        print(f"taureau recover-bookies: {problem}", file=sys.stderr)
    if not copied and not problems:
        print("nothing to recover: every bookie a ledger needs is registered")
    return 1 if problems else 0


def _run_bookie(a: argparse.Namespace) -> int:
    from taureau.bookie_server import BookieConfig, run
    from taureau.cli.app import serve

    config = BookieConfig(
        metadata_url=a.metadata_store, data_dir=a.data_dir, port=a.port, bind_address=a.bind_address,
        advertised_address=a.advertised_address, journal_fsync=not a.no_journal_fsync,
        metadata_session_timeout_s=a.metadata_session_timeout, autorecovery=not a.no_autorecovery,
        lost_bookie_recovery_delay_s=a.lost_bookie_recovery_delay, audit_interval_s=a.audit_interval,
    )
    return serve("taureau bookie", a.verbose, lambda: run(config))


def _run(verb: str, work) -> int:
    try:
        print(asyncio.run(work))
    except (TaureauError, OSError) as exc:
        print(f"taureau {verb}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _check(a: argparse.Namespace) -> str:
    from taureau.metadata.zookeeper import ZooKeeperMetadataStore

    started = time.monotonic()
    store = await ZooKeeperMetadataStore.open(a.url, connect_timeout_s=a.timeout, op_timeout_s=a.timeout)
    try:
        connected = time.monotonic()
        probe = f"/taureau-check-{os.getpid()}-{int(time.time() * 1000)}"
        await store.put(probe, b"probe", -1, ephemeral=True)
        found = await store.get(probe)
        await store.delete(probe)
        if found is None or found[0] != b"probe":
            raise TaureauError(f"{a.url}: a node written could not be read back")
        done = time.monotonic()
        return (
            f"ZooKeeper at {store.url} answers: session 0x{store.session_id:x}, connected in "
            f"{(connected - started) * 1000:.0f} ms, write/read/delete in {(done - connected) * 1000:.1f} ms"
        )
    finally:
        await store.close()


async def _initialize(a: argparse.Namespace) -> str:
    from taureau.broker.resources import Resources, TenantInfo

    store = await open_metadata_store(a.metadata_store, None)
    try:
        record = {"serviceUrl": a.web_service_url or "", "brokerServiceUrl": a.broker_service_url or ""}
        try:
            await store.put(f"{CLUSTERS}/{a.cluster}", json.dumps(record).encode(), -1)
            done = [f"cluster {a.cluster}"]
        except NodeExistsError:
            done = []
        resources = Resources(store)
        if not await store.exists("/admin/tenants/public"):
            await resources.create_tenant("public", TenantInfo(allowedClusters=[a.cluster]))
            done.append("tenant public")
        if not await store.exists("/admin/policies/public/default"):
            await resources.bootstrap()
            done.append("namespace public/default")
        what = ", ".join(done) if done else "nothing: it was initialized already"
        return f"initialized cluster {a.cluster} in {a.metadata_store}: created {what}"
    finally:
        await store.close()
