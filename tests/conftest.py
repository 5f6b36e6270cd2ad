import pytest


@pytest.fixture
def anyio_backend():
    """Async tests (marked `anyio`) run on asyncio, the loop Taureau's servers use."""
    return "asyncio"


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory):
    """A private ZooKeeper server (Debian's `zookeeper` package) for the whole test session,
    on its own port and data directory; skipped, with the reason, where none is installed."""
    from taureau.testing.zookeeper import ZooKeeperServer, missing_reason

    reason = missing_reason()
    if reason is not None:
        print(f"\nZooKeeper tests skipped: {reason}")
        pytest.skip(reason)
    server = ZooKeeperServer(str(tmp_path_factory.mktemp("zookeeper")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def zk_url(zookeeper, request):
    """A zk:// URL with a chroot of the test's own, so tests never see each other's nodes."""
    import re
    import uuid

    name = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:60]
    return f"{zookeeper.url}/t/{name}-{uuid.uuid4().hex[:8]}"
