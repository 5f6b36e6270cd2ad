"""Schemathesis against the admin REST API of a running standalone (its `/openapi.json`):
every operation with the boundary and malformed values of its schema (the coverage phase:
deterministic, about a thousand requests). Path parameters name a tenant, namespace, topic
and subscription that exist, so requests get past the 404s into the handlers. Pass = no 5xx
and no request hanging past its timeout; the server still serves afterwards and stops
cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.harness import Standalone

CONFIG = """
[parameters]
"path.tenant" = "public"
"path.namespace" = "default"
"path.topic" = "fuzzed"
"path.subscription" = "sub"
"""


def test_admin_rest_has_no_server_errors(tmp_path):
    # With the transaction coordinator on, its REST paths are fuzzed too (off, they answer 503 as Pulsar).
    server = Standalone(tmp_path / "data", "--transaction-coordinator-enabled").start(timeout=60)
    try:
        with httpx.Client(base_url=server.admin_url, timeout=10) as http:
            assert http.put("/admin/v2/persistent/public/default/fuzzed").status_code == 204
            assert http.put("/admin/v2/persistent/public/default/fuzzed/subscription/sub").status_code == 204
            config = tmp_path / "schemathesis.toml"
            config.write_text(CONFIG)
            cli = Path(sys.executable).with_name("schemathesis")
            run = subprocess.run(
                [str(cli), "--config-file", str(config), "run", f"{server.admin_url}/openapi.json",
                 "--checks", "not_a_server_error", "--phases", "coverage", "-n", "5", "--seed", "1",
                 "--request-timeout", "10", "-w", "1", "--generation-database", "none", "--no-color"],
                cwd=tmp_path, capture_output=True, text=True, timeout=240,
            )
            assert run.returncode == 0, run.stdout[-6000:]
            counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
            assert counts is not None, run.stdout[-2000:]
            assert int(counts[1]) == int(counts[2]) >= 800, counts[0]
            assert http.get("/admin/v2/tenants").status_code == 200  # still serving
    finally:
        assert server.stop() == 0
