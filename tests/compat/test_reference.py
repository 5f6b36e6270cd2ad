"""The reference run is what it claims: a real Apache Pulsar, of the version the pom names."""

import pytest

from bench.peers import pulsar_server
from tests.compat.conftest import PULSAR_ENV, pulsar_wanted


@pytest.mark.skipif(not pulsar_wanted(), reason=f"Apache Pulsar reference run is opt-in: set {PULSAR_ENV}=1")
@pytest.mark.parametrize("broker", ["pulsar"], indirect=True)
def test_reference_broker_is_apache_pulsar(broker, admin):
    reply = admin.get("/admin/v2/brokers/version")
    assert reply.status_code == 200
    assert reply.text.strip('"') == pulsar_server.VERSION
