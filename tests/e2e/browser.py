"""Headless Chromium from Debian's package, driven by Playwright, kept off the network.

No Playwright browser download: the system's /usr/bin/chromium runs (installed by .ci/run
with apt-get). Every host name but the loopback address fails to resolve, and the
background services that call home are off."""

from __future__ import annotations

import os
import shutil

import pytest

VIEWPORT = {"width": 1280, "height": 900}  # the dashboard tests' pages and screenshots
CHROMIUM = os.environ.get("TAUREAU_CHROMIUM", "/usr/bin/chromium")

OFFLINE_FLAGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--no-pings",
    "--disable-dev-shm-usage",  # a small /dev/shm (containers) would crash the renderer
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
]


def require_browser() -> None:
    """Skip where there is no Chromium or Playwright, except in CI, which installs both."""
    missing = []
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        missing.append(CHROMIUM)
    if missing:
        reason = f"needs {' and '.join(missing)} (apt-get install chromium; pip install playwright)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=OFFLINE_FLAGS)
