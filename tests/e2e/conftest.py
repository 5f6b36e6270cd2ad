import os
from pathlib import Path

import pulsar
import pytest

from taureau.dashboard import assets
from tests.e2e.browser import launch, require_browser
from tests.e2e.harness import Standalone

# Where the dashboard tests' screenshots go with TAUREAU_DASHBOARD_SCREENSHOTS=1 (the README's).
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


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
def topic(request):
    """A topic name unique to the test."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    return f"persistent://public/default/{name}"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (tests/e2e/browser.py) for a module's dashboard tests."""
    require_browser()
    if assets.missing():
        pytest.fail(f"dashboard assets not built ({assets.missing()}): run {assets.BUILD_COMMAND}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: docs/img when asked, else a temporary folder."""
    if os.environ.get("TAUREAU_DASHBOARD_SCREENSHOTS") == "1":
        return DOCS_IMG
    return tmp_path_factory.mktemp("screenshots")
