"""`taureau functions-worker` beside a broker with authentication on: it calls the broker as
its own (superuser) role, checks its own callers with the broker's keys and grants, and runs
each function as the function's role, minted with the broker's internal key (shared through
--internal-key-file), for the broker and the state store alike."""

from __future__ import annotations

import os
import signal
import sys

import httpx
import pulsar
import pytest

from tests.e2e.functions_helpers import EXAMPLES
from tests.e2e.harness import free_port, spawn_until_ready
from tests.security.helpers import STATE_PROBE, Keys, acme_for_functions, cli, client, start

NS = "acme/fn"


@pytest.fixture(scope="module")
def servers(tmp_path_factory, keys):
    root = tmp_path_factory.mktemp("worker-auth")
    internal = root / "internal.key"
    broker = start(root, keys, "--internal-key-file", str(internal), state=True)
    assert internal.stat().st_mode & 0o777 == 0o600
    acme_for_functions(broker, keys)
    web_port = free_port()
    output: list[str] = []
    worker = spawn_until_ready(
        [sys.executable, "-m", "taureau.cli.main", "functions-worker", "--broker-service-url", broker.service_url,
         "--broker-admin-url", broker.admin_url, "--data-dir", str(root / "worker"), "--web-port", str(web_port),
         "--bind-address", "127.0.0.1", "--state-address", f"127.0.0.1:{broker.state_port}",
         "--auth", "token", "--token-secret-key", str(keys.secret_file), "--superuser-roles", "admin",
         "--internal-key-file", str(internal), "--function-token-ttl", "4",
         "--auth-plugin", "token", "--auth-params", f"token:{keys.token('admin')}"],
        "Taureau functions worker ready", output, 60, "functions worker")
    (root / "probe.py").write_text(STATE_PROBE)
    yield broker, f"http://127.0.0.1:{web_port}", output, root / "probe.py"
    worker.send_signal(signal.SIGINT)
    assert worker.wait(30) == 0
    assert broker.stop() == 0


def _create(worker_url: str, keys: Keys, role: str, name: str, *code: str):
    code = code or ("--py", str(EXAMPLES / "exclamation.py"), "--classname", "exclamation.Exclamation")
    return cli("functions", "--admin-url", worker_url, "--auth-plugin", "token", "--auth-params",
               f"token:{keys.token(role)}", "create", "--tenant", "acme", "--namespace", "fn", "--name", name,
               *code, "--inputs", f"persistent://{NS}/{name}-in", "--output", f"persistent://{NS}/{name}-out")


def _send(broker, keys: Keys, name: str, *payloads: bytes) -> list[bytes]:
    c = client(broker, pulsar.AuthenticationToken(keys.token("admin")), timeout=30)
    try:
        consumer = c.subscribe(f"persistent://{NS}/{name}-out", "check", initial_position=pulsar.InitialPosition.Earliest)
        producer = c.create_producer(f"persistent://{NS}/{name}-in")
        out = []
        for p in payloads:
            producer.send(p)
            out.append(consumer.receive(30_000).data())
        return out
    finally:
        c.close()


def test_the_workers_callers_need_the_brokers_grants(servers, keys):
    broker, worker_url, _, _ = servers
    refused = _create(worker_url, keys, "app1", "nope")
    assert refused.returncode == 1
    assert "403" in refused.stderr and "role app1 may not use functions in namespace acme/fn" in refused.stderr
    assert httpx.get(f"{worker_url}/admin/v3/functions/acme/fn", timeout=10).status_code == 401
    forged = cli("functions", "--admin-url", worker_url, "--auth-plugin", "token", "--auth-params",
                 "token:eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl", "list", "--tenant", "acme",
                 "--namespace", "fn")
    assert forged.returncode == 1 and "401" in forged.stderr


def test_functions_run_as_their_role_minted_by_the_worker(servers, keys):
    broker, worker_url, output, probe = servers
    created = _create(worker_url, keys, "dev", "excl")
    assert created.returncode == 0, created.stderr
    assert _send(broker, keys, "excl", b"hello") == [b"hello!"]
    # State: its namespace is open to it, another namespace's space is not.
    created = _create(worker_url, keys, "tadmin", "probe", "--py", str(probe), "--classname", "probe")
    assert created.returncode == 0, created.stderr
    refusal = b"role function:acme/fn/probe may not use state path /functions/acme/other/victim/t"
    assert _send(broker, keys, "probe", b"", b"acme/other/victim") == [b"stored", b"StateAuthorizationError: " + refusal]
    assert any(refusal.decode() in line for line in broker.output)  # logged by the state store


def test_a_worker_without_the_pieces_of_auth_refuses_to_start(tmp_path, keys, capsys):
    from taureau.cli.app import run  # in this process: the refusal comes before anything starts

    base = ["functions-worker", "--data-dir", str(tmp_path / "w"), "--web-port", "0"]
    for extra, reason in [
        (["--auth", "token", "--token-secret-key", str(keys.secret_file)], "go together"),
        (["--auth-plugin", "token", "--auth-params", "token:x"], "go together"),
        (["--auth", "token", "--token-secret-key", str(keys.secret_file), "--auth-plugin", "token",
          "--auth-params", "token:x"], "--internal-key-file"),
        (["--auth-plugin", "basic", "--auth-params", '{"userId":"a","password":"b"}'], "with a token"),
    ]:
        assert run([*base, *extra]) == 2
        assert reason in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "w")


def test_the_worker_refuses_when_it_cannot_ask_the_broker(keys):
    import asyncio

    from fastapi import FastAPI

    from taureau.auth.config import AuthConfig, build_authentication
    from taureau.broker.admin.authn import Authenticate
    from taureau.functions_worker import AuthorizeFunctions, BrokerGrants

    app = FastAPI()

    @app.get("/admin/v3/functions/{tenant}/{namespace}")
    async def listing(tenant: str, namespace: str) -> list[str]:
        return ["reached"]

    authentication = build_authentication(AuthConfig(methods=("token",), token_secret_key_file=str(keys.secret_file),
                                                     superuser_roles=("admin",)))
    grants = BrokerGrants(f"http://127.0.0.1:{free_port()}", keys.token("admin"), ("admin",))  # nothing listens
    app.add_middleware(AuthorizeFunctions, grants=grants)
    app.add_middleware(Authenticate, service=authentication)

    async def ask(role: str, path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as http:
            return await http.get(path, headers={"Authorization": f"Bearer {keys.token(role)}"})

    async def scenario() -> list[tuple[int, str]]:
        out = []
        for role, path in [("dev", "/admin/v3/functions/acme/fn"), ("dev", "/admin/v3/functions/acme/bad%20ns"),
                           ("admin", "/admin/v3/functions/acme/fn"), ("dev", "/admin/v3/functions")]:
            r = await ask(role, path)
            out.append((r.status_code, r.text))
        await grants.close()
        return out

    unreachable, bad_name, superuser, unnamed = asyncio.run(scenario())
    assert unreachable[0] == 503 and "cannot read the broker's permissions" in unreachable[1]
    assert bad_name[0] == 400
    assert superuser == (200, '["reached"]')  # superusers need no grant read
    assert unnamed[0] == 403 and "superusers only" in unnamed[1]
