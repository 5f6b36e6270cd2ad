"""The brokers every compat scenario runs against: Taureau always, Apache Pulsar when asked.

Set TAUREAU_COMPAT_PULSAR=1 to also run each scenario against a real Apache Pulsar standalone
(bench/peers/pulsar_server.py: jars from Maven Central, built once into ~/.cache/taureau). The
scenarios assert Pulsar's documented behaviour, so Pulsar must pass every one of them: one that
it fails is a wrong test, and one that only Taureau fails is a finding (marked xfail there).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import httpx
import pulsar
import pytest

from bench.peers import pulsar_server, pulsar_toolchain
from tests.e2e.harness import Standalone

PULSAR_ENV = "TAUREAU_COMPAT_PULSAR"


def pulsar_wanted() -> bool:
    return os.environ.get(PULSAR_ENV, "") not in ("", "0")


@dataclass(frozen=True)
class Broker:
    name: str  # "taureau" or "pulsar": test ids and xfail conditions use it
    service_url: str
    admin_url: str


# Without the opt-in, scenarios are not even parametrized with Pulsar (one skip in
# test_reference.py says so instead of one per scenario).
BROKERS = ["taureau", "pulsar"] if pulsar_wanted() else ["taureau"]


@pytest.fixture(scope="session", params=BROKERS)
def broker(request, tmp_path_factory):
    """One server per kind for the whole session (Pulsar's JVM takes ~20 s to start)."""
    if request.param == "taureau":
        # Transactions on, as the Pulsar reference runs (transactionCoordinatorEnabled=true).
        server = Standalone(tmp_path_factory.mktemp("taureau"), "--transaction-coordinator-enabled").start()
        yield Broker("taureau", server.service_url, server.admin_url)
        server.stop()
        return
    why = pulsar_server.missing()
    if why:
        pytest.skip(why)
    try:
        server = pulsar_server.start(tmp_path_factory.mktemp("pulsar"), transactions=True)
    except pulsar_toolchain.RegistryUnreachable as exc:
        pytest.skip(str(exc).splitlines()[0])
    yield Broker("pulsar", server.service_url, server.admin_url)
    server.stop()


@pytest.fixture
def client(broker):
    # The client's own console logger: a Python logger is called from the client's threads,
    # which can abort the interpreter at exit.
    c = pulsar.Client(
        broker.service_url,
        operation_timeout_seconds=15,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )
    yield c
    c.close()


@pytest.fixture
def admin(broker):
    with httpx.Client(base_url=broker.admin_url, timeout=15.0) as http:
        yield http


@pytest.fixture
def topic(request):
    """A topic name unique to the test and the run: each server lives for the whole session."""
    # Apache Pulsar refuses "-partition-" in a partitioned topic's own name.
    name = request.node.originalname.replace("_", "-").replace("partition", "part")
    return f"persistent://public/default/{name}-{uuid.uuid4().hex[:8]}"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "taureau_gap(reason, raises=AssertionError): Apache Pulsar passes this, Taureau does not yet"
        " (strict xfail on Taureau, failing with exactly that exception)",
    )


def pytest_collection_modifyitems(items):
    """A taureau_gap scenario is xfail(strict=True) against Taureau only: it must keep failing
    there until fixed (then the mark goes), and must pass against Apache Pulsar."""
    for item in items:
        gap = item.get_closest_marker("taureau_gap")
        params = getattr(item, "callspec", None)
        if gap and params and params.params.get("broker") == "taureau":
            raises = gap.kwargs.get("raises", AssertionError)
            item.add_marker(pytest.mark.xfail(strict=True, reason=gap.args[0], raises=raises))
