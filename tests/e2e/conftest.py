import httpx
import pulsar
import pytest

from tests.e2e.harness import Standalone


@pytest.fixture(scope="module")
def standalone(request, tmp_path_factory):
    """One standalone per test module; a module's STANDALONE = {"state": True, "env": {...},
    "args": [...]} says how to start it."""
    options = getattr(request.module, "STANDALONE", {})
    server = Standalone(tmp_path_factory.mktemp("data"), *options.get("args", ()), state=options.get("state", False),
                        env=options.get("env")).start()
    yield server
    server.stop()


@pytest.fixture
def client(standalone):
    # The client's own console logger: a Python logger is called from the client's threads,
    # which can abort the interpreter at exit.
    logger = pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)
    c = pulsar.Client(standalone.service_url, operation_timeout_seconds=10, logger=logger)
    yield c
    c.close()


@pytest.fixture
def admin(standalone):
    """An HTTP client on the standalone's admin API (a module may define its own)."""
    with httpx.Client(base_url=standalone.admin_url, timeout=30) as http:
        yield http


@pytest.fixture
def topic(request):
    """A topic name unique to the test."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    return f"persistent://public/default/{name}"
