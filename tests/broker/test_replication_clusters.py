"""Cluster records as the REST API takes them (broker/replication/clusters.py)."""

from __future__ import annotations

import pytest

from taureau.broker.replication.clusters import ClusterData, parse_cluster_data


def test_pulsar_cluster_data_is_kept_with_its_urls():
    data = parse_cluster_data({"serviceUrl": "http://[::1]:8080", "brokerServiceUrl": "pulsar://10.0.0.1:6650",
                               "serviceUrlTls": "https://h.example:8443", "brokerServiceUrlTls": None,
                               "proxyServiceUrl": None, "brokerClientTlsEnabled": False})
    assert data == ClusterData(serviceUrl="http://[::1]:8080", serviceUrlTls="https://h.example:8443",
                               brokerServiceUrl="pulsar://10.0.0.1:6650")


@pytest.mark.parametrize("body", [
    None, [], "http://h:1", {},  # not an object, or no admin URL
    {"serviceUrl": "h:8080"}, {"serviceUrl": "http://"}, {"serviceUrl": "http://h:99999"},
    {"serviceUrl": "http://user@h:1"}, {"serviceUrl": "http://h h:1"}, {"serviceUrl": 8080},
    {"serviceUrl": "http://h:1", "brokerServiceUrl": "pulsar://h:1/path"},
    {"serviceUrl": "http://h:1", "brokerServiceUrl": "pulsar+ssl://h:1"},
    {"serviceUrl": "http://h:1", "serviceUrlTls": "http://h:2"},
    {"serviceUrl": "http://h:1", "peerClusterNames": ["b"]},  # a field Taureau does not use, given
])
def test_bad_cluster_data_is_a_value_error(body):
    with pytest.raises(ValueError):
        parse_cluster_data(body)
