"""`taureau zookeeper-check` and `taureau initialize-cluster-metadata` as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from taureau.testing.zookeeper import free_port


def taureau(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taureau.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_the_cluster_verbs():
    out = taureau("--help")
    assert out.returncode == 0
    assert "zookeeper-check" in out.stdout and "initialize-cluster-metadata" in out.stdout
    assert re.search(r"^\s+bookie\s+run a bookie", out.stdout, re.M)


def test_zookeeper_check_passes_on_a_live_server(zk_url):
    out = taureau("zookeeper-check", zk_url)
    assert out.returncode == 0, out.stderr
    assert "answers: session 0x" in out.stdout and "write/read/delete in" in out.stdout
    assert out.stderr == ""


def test_zookeeper_check_fails_in_one_line_when_nothing_listens():
    out = taureau("zookeeper-check", f"zk://127.0.0.1:{free_port()}", "--timeout", "1")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "did not answer within 1s" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("bad", ["127.0.0.1:2181", "zk://nohost", "zk://h:70000", "zk://h:1/a//b"])
def test_zookeeper_check_refuses_a_bad_url_before_connecting(bad):
    out = taureau("zookeeper-check", bad, timeout=20)
    assert out.returncode == 2
    assert "zookeeper-check: error:" in out.stderr and "Traceback" not in out.stderr


def test_initialize_cluster_metadata_writes_the_cluster_and_is_idempotent(zk_url):
    from taureau.metadata.zookeeper import ZooKeeperMetadataStore

    first = taureau(
        "initialize-cluster-metadata", "--cluster", "c1", "--metadata-store", zk_url,
        "--web-service-url", "http://b1:8080", "--broker-service-url", "pulsar://b1:6650",
    )
    assert first.returncode == 0, first.stderr
    assert "created cluster c1, tenant public, namespace public/default" in first.stdout
    again = taureau("initialize-cluster-metadata", "--cluster", "c1", "--metadata-store", zk_url)
    assert again.returncode == 0 and "nothing: it was initialized already" in again.stdout

    async def read() -> tuple[dict, dict, bool]:
        store = await ZooKeeperMetadataStore.open(zk_url)
        try:
            cluster = json.loads((await store.get("/admin/clusters/c1"))[0])
            tenant = json.loads((await store.get("/admin/tenants/public"))[0])
            return cluster, tenant, await store.exists("/admin/policies/public/default") is not None
        finally:
            await store.close()

    import asyncio

    cluster, tenant, namespace = asyncio.run(read())
    assert cluster == {"serviceUrl": "http://b1:8080", "brokerServiceUrl": "pulsar://b1:6650"}
    assert tenant["allowedClusters"] == ["c1"] and namespace


@pytest.mark.parametrize(
    "args",
    [
        ["--cluster", "bad/name", "--metadata-store", "zk://127.0.0.1:1"],
        ["--cluster", "c1", "--metadata-store", "etcd://x"],
        ["--cluster", "c1", "--metadata-store", "zk://127.0.0.1:1", "--broker-service-url", "http://x"],
        ["--metadata-store", "zk://127.0.0.1:1"],
    ],
)
def test_initialize_cluster_metadata_validates_before_connecting(args):
    out = taureau("initialize-cluster-metadata", *args, timeout=20)
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("url", ["embedded", "zk://h:0", "zk://nohost"])
def test_recover_bookies_validates_its_store_before_connecting(url):
    out = taureau("recover-bookies", "--metadata-store", url, timeout=20)
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr


def test_recover_bookies_with_nothing_lost_says_so(zk_url):
    out = taureau("recover-bookies", "--metadata-store", zk_url)
    assert out.returncode == 0, out.stderr
    assert "nothing to recover" in out.stdout
