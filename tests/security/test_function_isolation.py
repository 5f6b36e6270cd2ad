"""Functions under authentication: deploying needs the namespace's `functions` permission, and
each function's instances connect with a token the worker minted for the function's own role
(`function:tenant/namespace/name`), so they may use their own namespace and, elsewhere, only
what is granted to that role. Secrets come from files under each function's own directory,
and neither secrets nor tokens reach a log."""

from __future__ import annotations

import json
import time

import pulsar
import pytest

from tests.e2e.functions_helpers import EXAMPLES, wait_for
from tests.security.helpers import STATE_PROBE, acme_for_functions, cli, client, rest

NS = "acme/fn"
TOKEN_TTL_S = 4
SECRET = "s3cr3t-Value-42"
# Returns what get_secret gave it, so a refused secret shows as "None".
SECRET_ECHO = """
def process(input, context):
    return str(context.get_secret("username"))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    from tests.e2e.harness import Standalone

    root = tmp_path_factory.mktemp("fn")
    secrets = root / "secrets"
    (secrets / "acme" / "fn" / "sec").mkdir(parents=True)
    (secrets / "acme" / "fn" / "sec" / "user.txt").write_text(SECRET + "\n")
    (root / "echo.py").write_text(SECRET_ECHO)
    (root / "probe.py").write_text(STATE_PROBE)
    s = Standalone(root / "data", "--auth", "token", "--token-secret-key", str(keys.secret_file),
                   "--superuser-roles", "admin", "--secrets-provider", "file", "--secrets-dir", str(secrets),
                   # Minted tokens live 4 s: every test here runs across renewals.
                   "--function-token-ttl", str(TOKEN_TTL_S), state=True).start(timeout=60)
    s.code = root / "echo.py"
    s.probe = root / "probe.py"
    acme_for_functions(s, keys)
    yield s
    s.stop()


def _functions(server, keys, role: str, *args: str):
    return cli("functions", "--admin-url", server.admin_url, "--auth-plugin", "token",
               "--auth-params", f"token:{keys.token(role)}", *args)


def _create(server, keys, role: str, name: str, output: str, *code: str):
    code = code or ("--py", str(EXAMPLES / "exclamation.py"), "--classname", "exclamation.Exclamation")
    return _functions(server, keys, role, "create", "--tenant", "acme", "--namespace", "fn", "--name", name,
                      *code, "--inputs", f"persistent://{NS}/{name}-in", "--output", output)


def _round_trip(server, keys, name: str, output: str, timeout_ms: int = 20_000) -> bytes:
    c = client(server, pulsar.AuthenticationToken(keys.token("admin")), timeout=30)
    try:
        consumer = c.subscribe(output, "check", initial_position=pulsar.InitialPosition.Earliest)
        c.create_producer(f"persistent://{NS}/{name}-in").send(b"hello")
        return consumer.receive(timeout_ms).data()
    finally:
        c.close()


def _status(server, keys, name: str) -> dict:
    with rest(server, keys.token("admin")) as http:
        response = http.get(f"/admin/v3/functions/acme/fn/{name}/status")
        assert response.status_code == 200, response.text
        return response.json()


def test_deploying_needs_the_functions_permission(server, keys):
    refused = _create(server, keys, "app1", "nope", f"persistent://{NS}/nope-out")
    assert refused.returncode == 1
    assert "403" in refused.stderr and "role app1 may not use functions in namespace acme/fn" in refused.stderr


def test_an_instance_acts_as_its_function_within_its_namespace(server, keys):
    created = _create(server, keys, "dev", "excl", f"persistent://{NS}/excl-out")
    assert created.returncode == 0, created.stderr
    assert _round_trip(server, keys, "excl", f"persistent://{NS}/excl-out") == b"hello!"


def test_elsewhere_an_instance_has_only_what_its_role_is_granted(server, keys):
    output = "persistent://acme/other/leak-out"
    created = _create(server, keys, "dev", "leak", output)
    assert created.returncode == 0, created.stderr
    role = "function:acme/fn/leak"
    refusal = f"role {role} may not look up on {output}"  # the client's lookup, before its producer
    wait_for(lambda: any(refusal in line for line in server.output), timeout=30, what="the broker's refusal")
    assert _status(server, keys, "leak")["numRunning"] == 0
    with rest(server, keys.token("tadmin")) as http:
        granted = http.post(f"/admin/v2/persistent/acme/other/leak-out/permissions/{role.replace('/', '%2F')}",
                            json=["produce"])
        assert granted.status_code == 204, granted.text
    # The instance is restarted with backoff; once the grant holds it produces.
    assert _round_trip(server, keys, "leak", output, timeout_ms=60_000) == b"hello!"


def test_secrets_come_from_the_functions_own_directory_only(server, keys):
    echo = ("--py", str(server.code), "--classname", "echo")
    for name, path in [("sec", "user.txt"), ("snoop", "../sec/user.txt")]:
        created = _create(server, keys, "dev", name, f"persistent://{NS}/{name}-out", *echo,
                          "--secrets", json.dumps({"username": path}))
        assert created.returncode == 0, created.stderr
    assert _round_trip(server, keys, "sec", f"persistent://{NS}/sec-out") == SECRET.encode()
    assert _round_trip(server, keys, "snoop", f"persistent://{NS}/snoop-out") == b"None"


def test_no_secret_or_token_is_logged(server, keys):
    # After the tests above ran functions that connected with minted tokens and read a secret.
    logs = "".join(server.output)
    for path in (server.data_dir / "functions" / "logs").rglob("*"):
        if path.is_file():
            logs += path.read_text(errors="replace")
    assert "function:acme/fn" in logs  # the log does name roles (the broker's refusal above)
    assert SECRET not in logs
    assert "eyJ" not in logs  # the start of every JWT: no token, minted or presented


def test_an_instance_uses_state_as_its_function_within_its_namespace(server, keys):
    from taureau.state import StateClient

    created = _create(server, keys, "dev", "probe", f"persistent://{NS}/probe-out",
                      "--py", str(server.probe), "--classname", "probe")
    assert created.returncode == 0, created.stderr
    c = client(server, pulsar.AuthenticationToken(keys.token("admin")), timeout=30)
    try:
        consumer = c.subscribe(f"persistent://{NS}/probe-out", "check", initial_position=pulsar.InitialPosition.Earliest)
        producer = c.create_producer(f"persistent://{NS}/probe-in")
        replies = []
        for target in (b"", b"acme/fn/neighbour", b"acme/other/victim"):
            producer.send(target)
            replies.append(consumer.receive(30_000).data().decode())
    finally:
        c.close()
    assert replies[:2] == ["stored", "stored"]  # its own space, and its namespace's
    role = "function:acme/fn/probe"
    assert replies[2] == f"StateAuthorizationError: role {role} may not use state path /functions/acme/other/victim/t"
    with StateClient(f"127.0.0.1:{server.state_port}", token=keys.token("admin"), timeout=10) as root:
        assert root.open_hash_table("/functions/acme/fn/probe/t").get(b"k") == b"v"
        assert not root.exists("/functions/acme/other/victim/t")


def test_instances_keep_running_across_token_renewals(server, keys):
    created = _create(server, keys, "dev", "longlived", f"persistent://{NS}/longlived-out")
    assert created.returncode == 0, created.stderr
    assert _round_trip(server, keys, "longlived", f"persistent://{NS}/longlived-out") == b"hello!"
    time.sleep(2 * TOKEN_TTL_S + 1)  # the first tokens expired: the broker challenged, the worker renewed
    c = client(server, pulsar.AuthenticationToken(keys.token("admin")), timeout=30)
    try:
        consumer = c.subscribe(f"persistent://{NS}/longlived-out", "after")
        c.create_producer(f"persistent://{NS}/longlived-in").send(b"again")
        assert consumer.receive(20_000).data() == b"again!"
    finally:
        c.close()
    status = _status(server, keys, "longlived")
    assert status["numRunning"] == 1
    assert status["instances"][0]["status"]["numRestarts"] == 0  # the same instance throughout
    assert status["instances"][0]["status"]["limits"]["filesystem"].startswith("landlock")  # on with --auth
    role = "function:acme/fn/longlived"
    assert not any(role in line and "closing" in line for line in server.output)
