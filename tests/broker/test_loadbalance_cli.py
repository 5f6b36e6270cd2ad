"""The load manager's flags on `taureau broker` and `taureau standalone`, and the
`namespaces split-bundle` verb, as a user runs them."""

from __future__ import annotations

import argparse

import pytest

from taureau.broker.ownership.settings import LoadBalancerSettings
from taureau.cli import loadbalance_flags
from tests.metadata.test_cluster_cli import taureau


def test_help_lists_the_split_verb_and_the_load_balancer_flags():
    verbs = taureau("admin", "namespaces", "--help")
    assert verbs.returncode == 0 and "split-bundle" in verbs.stdout
    for command in ("broker", "standalone"):
        out = taureau(command, "--help")
        assert out.returncode == 0
        for flag in ("--load-balancer-enabled", "--load-balancer-shedding-interval-minutes",
                     "--load-balancer-broker-threshold-shedder-percentage",
                     "--load-balancer-auto-bundle-split-enabled", "--load-balancer-namespace-maximum-bundles"):
            assert flag in out.stdout, (command, flag)


def test_flags_become_settings_in_their_units_and_defaults_stay():
    parser = argparse.ArgumentParser()
    loadbalance_flags.add_flags(parser)
    assert loadbalance_flags.settings(parser.parse_args([])) == LoadBalancerSettings()
    given = loadbalance_flags.settings(parser.parse_args([
        "--load-balancer-shedding-interval-minutes", "0.5", "--load-balancer-shedding-grace-period-minutes", "2",
        "--load-balancer-enabled", "false", "--load-balancer-namespace-bundle-max-topics", "7",
        "--load-balancer-namespace-maximum-bundles", "16"]))
    assert (given.interval_s, given.grace_s, given.enabled, given.split_max_topics, given.max_bundles) == (
        30.0, 120.0, False, 7, 16)


@pytest.mark.parametrize("flag,value", [
    ("--load-balancer-shedding-interval-minutes", "0"),
    ("--load-balancer-namespace-maximum-bundles", "5000"),
    ("--load-balancer-enabled", "maybe"),
    ("--load-balancer-broker-threshold-shedder-percentage", "-1"),
])
def test_bad_values_exit_2_in_one_line_before_anything_starts(flag, value):
    out = taureau("broker", "--metadata-store", "zk://127.0.0.1:1", flag, value)
    assert out.returncode == 2 and flag in out.stderr and "Traceback" not in out.stderr


def test_split_bundle_without_a_bundle_is_refused_by_the_cli():
    out = taureau("admin", "namespaces", "split-bundle", "public/default")
    assert out.returncode == 2 and "--bundle" in out.stderr
