"""taureau.testing.ports: test servers' ports stay out of the kernel's ephemeral range."""

from __future__ import annotations

import socket

from taureau.testing import ports


def test_a_free_port_is_below_the_ephemeral_range_and_bindable():
    low = ports._ephemeral_low()
    for _ in range(20):
        port = ports.free_port()
        assert ports.LOWEST <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_run_is_consecutive_free_ports_below_the_range():
    base = ports.free_port_run(4)
    assert base >= ports.LOWEST and base + 4 <= ports._ephemeral_low()
    held = []
    try:
        for port in range(base, base + 4):
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", port))
    finally:
        for s in held:
            s.close()


def test_a_port_in_use_is_never_chosen(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.free_port()))
        busy = taken.getsockname()[1]
        free = ports.free_port()
        # The random choice lands on the busy port first, then on a free one.
        choices = iter([busy, free])
        monkeypatch.setattr(ports.random, "randrange", lambda lo, hi: next(choices))
        assert ports.free_port() == free


def test_cluster_ups_zookeeper_never_takes_a_port_a_node_is_configured_for(monkeypatch):
    from taureau import devcluster

    config = devcluster.DevClusterConfig(brokers=2, bookies=2, broker_port=21000, web_port=21010,
                                         bookie_port=21020, function_workers=2, functions_port=21030)
    assert config.ports() == {21000, 21001, 21010, 21011, 21020, 21021, 21030, 21031}
    offered = iter([21001, 21031, 21020, 24999])  # free now, but the nodes will bind the first three
    monkeypatch.setattr(devcluster, "free_port", lambda: next(offered))
    assert devcluster.zookeeper_port(config) == 24999
