"""Authentication end to end: the official client's token and basic providers on the binary
protocol, Bearer and Basic on the admin REST API, the CLI's credential options, AUTH_CHALLENGE
refresh of expiring tokens, and what a refused client gets (and leaves behind: nothing)."""

from __future__ import annotations

import time

import jwt
import pulsar
import pytest

from taureau.broker.error_codes import ServerError
from tests.e2e.raw import RawClient, T, command
from tests.security.helpers import Keys, cli, client, rest, round_trip, start


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    s = start(tmp_path_factory.mktemp("auth"), keys, "--auth-refresh-check", "1")
    yield s
    s.stop()


def test_token_and_basic_clients_connect(server, keys):
    assert round_trip(client(server, pulsar.AuthenticationToken(keys.token("admin"))), "tok-ok") == b"tok-ok"
    assert round_trip(client(server, pulsar.AuthenticationBasic("alice", "wonder")), "basic-ok") == b"basic-ok"


def _bad_tokens(keys: Keys) -> dict[str, str]:
    other = Keys.__new__(Keys)
    other.secret = b"x" * 32
    return {
        "wrong key": other.token("admin"),
        "expired": jwt.encode({"sub": "admin", "exp": int(time.time()) - 5}, keys.secret, algorithm="HS256"),
        "malformed": "not-a-token",
        "unsigned": jwt.encode({"sub": "admin"}, None, algorithm="none"),
    }


@pytest.mark.parametrize("case", ["wrong key", "expired", "malformed", "unsigned", "wrong password", "none"])
def test_refused_clients_get_authentication_error_and_store_nothing(server, keys, case):
    topic = f"persistent://public/default/refused-{case.replace(' ', '-')}"
    if case == "wrong password":
        auth = pulsar.AuthenticationBasic("alice", "nope")
    elif case == "none":
        auth = None
    else:
        auth = pulsar.AuthenticationToken(_bad_tokens(keys)[case])
    c = client(server, auth, timeout=2)
    try:
        # The official client retries a refused handshake until its operation timeout, as
        # with Pulsar (apache/pulsar-client-python#113).
        with pytest.raises(pulsar.Timeout):
            c.create_producer(topic)
    finally:
        c.close()
    with rest(server, keys.token("admin")) as http:
        assert topic not in http.get("/admin/v2/persistent/public/default").json()
    log = "".join(server.output)
    assert "CONNECT refused" in log


def test_wire_answer_is_error_authentication_then_close(server, keys):
    raw = RawClient(server.broker_port, connect=False)
    raw.send(command(T.CONNECT, "connect", client_version="raw", protocol_version=20,
                     auth_method_name="token", auth_data=b"bogus"))
    frames = raw.until_closed(5)
    assert [f.command.type for f in frames] == [T.ERROR]
    assert frames[0].command.error.error == ServerError.AuthenticationError
    assert raw.closed
    # A refused attempt is logged once.
    refused = [line for line in server.output if "CONNECT refused" in line and "Not enough segments" in line]
    assert len(refused) >= 1


def test_data_before_connect_closes_without_storing(server, keys):
    raw = RawClient(server.broker_port, connect=False)
    raw.send(command(T.PRODUCER, "producer", topic="persistent://public/default/early", producer_id=1,
                     request_id=1))
    raw.until_closed(5)
    assert raw.closed
    with rest(server, keys.token("admin")) as http:
        assert "persistent://public/default/early" not in http.get("/admin/v2/persistent/public/default").json()


def test_rest_needs_credentials(server, keys):
    with rest(server) as http:
        response = http.get("/admin/v2/tenants")
        assert response.status_code == 401
        assert "authentication required" in response.json()["reason"]
        assert http.put("/admin/v2/tenants/evil").status_code == 401
        assert http.get("/admin/v2/tenants", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert http.get("/admin/v2/tenants", headers={"Authorization": "Digest x"}).status_code == 401
        assert http.get("/admin/v2/tenants", auth=("alice", "nope")).status_code == 401
        assert http.get("/admin/v2/tenants", auth=("alice", "wonder")).status_code == 200
    with rest(server, keys.token("admin")) as http:
        assert "evil" not in http.get("/admin/v2/tenants").json()
        expired = _bad_tokens(keys)["expired"]
        response = http.get("/admin/v2/tenants", headers={"Authorization": f"Bearer {expired}"})
        assert response.status_code == 401 and response.json()["reason"] == "token expired"


@pytest.mark.parametrize("role", ["taureau-internal", "function:public/default/f"])
def test_an_operator_token_cannot_claim_a_reserved_role(server, keys, role):
    reason = f"role {role} is reserved for the server's own components"
    with rest(server, keys.token(role)) as http:
        response = http.get("/admin/v2/tenants")
        assert response.status_code == 401 and response.json()["reason"] == reason
    raw = RawClient(server.broker_port, connect=False)
    raw.send(command(T.CONNECT, "connect", client_version="raw", protocol_version=20,
                     auth_method_name="token", auth_data=keys.token(role).encode()))
    (refused,) = raw.until_closed(5)
    assert refused.command.error.error == ServerError.AuthenticationError
    assert refused.command.error.message == reason


def test_cli_sends_credentials(server, keys):
    url = server.admin_url
    refused = cli("admin", "--admin-url", url, "tenants", "list")
    assert refused.returncode == 1 and "401" in refused.stderr
    token_file = keys.token_file("admin")
    ok = cli("admin", "--admin-url", url, "--auth-plugin", "token", "--auth-params", f"file://{token_file}",
             "tenants", "list")
    assert ok.returncode == 0, ok.stderr
    assert "public" in ok.stdout
    basic = cli("admin", "tenants", "list", "--admin-url", url,
                "--auth-plugin", "org.apache.pulsar.client.impl.auth.AuthenticationBasic",
                "--auth-params", '{"userId":"alice","password":"wonder"}')
    assert basic.returncode == 0, basic.stderr
    produced = cli("client", "--service-url", server.service_url, "--auth-plugin", "token",
                   "--auth-params", f"token:{keys.token('admin')}", "produce", "cli-topic", "-m", "x")
    assert produced.returncode == 0, produced.stderr
    assert "1 messages successfully produced" in produced.stdout
    assert keys.token("admin") not in produced.stdout + produced.stderr


def test_expiring_token_is_refreshed_by_a_supplier(server, keys):
    issued = []

    def supplier() -> str:
        issued.append(time.time())
        return keys.token("admin", expires_in_s=2)

    c = client(server, pulsar.AuthenticationToken(supplier))
    try:
        producer = c.create_producer("refreshed")
        time.sleep(5)  # past two expiries: each AUTH_CHALLENGE answered with a fresh token
        producer.send(b"still here", )
        assert len(issued) >= 2
    finally:
        c.close()
    assert not any("refresh refused" in line for line in server.output)


def test_expired_token_that_is_not_refreshed_closes_the_connection(server, keys):
    token = keys.token("admin", expires_in_s=2)
    c = client(server, pulsar.AuthenticationToken(token), timeout=3)
    try:
        producer = c.create_producer("not-refreshed", send_timeout_millis=3000)
        producer.send(b"before expiry")
        time.sleep(4.5)  # expired, challenged, answered with the same (expired) token: closed
        with pytest.raises((pulsar.Timeout, pulsar.AlreadyClosed, pulsar.NotConnected)):
            producer.send(b"after expiry")
    finally:
        c.close()
    assert any("refresh refused: token expired" in line for line in server.output)


def test_a_refresh_with_a_forged_token_closes_the_connection(server, keys):
    from taureau.auth import tokens

    forged = tokens.create_token("admin", secret_key=tokens.create_secret_key())
    issued: list[str] = []

    def supplier() -> str:  # a valid short token first, then one signed with another key
        issued.append(keys.token("admin", expires_in_s=2) if not issued else forged)
        return issued[-1]

    c = client(server, pulsar.AuthenticationToken(supplier), timeout=3)
    try:
        producer = c.create_producer("forged-refresh", send_timeout_millis=3000)
        producer.send(b"before expiry")
        time.sleep(4.5)
        with pytest.raises((pulsar.Timeout, pulsar.AlreadyClosed, pulsar.NotConnected, pulsar.AuthenticationError)):
            producer.send(b"after expiry")
    finally:
        c.close()
    assert len(issued) >= 2
    assert any("refresh refused: token signature does not match" in line for line in server.output)


def _config_of(monkeypatch, *argv: str):
    import taureau.standalone
    from taureau.cli.app import run

    seen = []
    monkeypatch.setattr(taureau.standalone, "run", seen.append)
    assert run(["standalone", *argv]) == 0
    return seen[0]


def test_loopback_unless_authenticated_or_told(monkeypatch, keys):
    assert _config_of(monkeypatch).broker.bind_address == "127.0.0.1"
    auth = _config_of(monkeypatch, "--auth", "token", "--token-secret-key", str(keys.secret_file))
    assert auth.broker.bind_address == "0.0.0.0"
    assert auth.broker.auth.methods == ("token",)
    assert _config_of(monkeypatch, "--bind-address", "0.0.0.0").broker.bind_address == "0.0.0.0"


def test_bad_auth_flags_fail_before_starting(keys, tmp_path):
    missing = cli("standalone", "--data-dir", str(tmp_path), "--auth", "token")
    assert missing.returncode == 2 and "--token-secret-key" in missing.stderr
    unknown = cli("standalone", "--data-dir", str(tmp_path), "--auth", "kerberos")
    assert unknown.returncode == 2 and "unknown authentication method" in unknown.stderr
    unreadable = cli("standalone", "--data-dir", str(tmp_path), "--auth", "basic", "--basic-auth-file",
                     str(tmp_path / "nope"))
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr


def test_wider_bind_without_auth_says_so(tmp_path):
    from tests.e2e.harness import Standalone

    s = Standalone(tmp_path / "data", "--bind-address", "0.0.0.0", "--no-functions").start()
    try:
        time.sleep(0.2)
        assert any("with authentication off" in line for line in s.output)
    finally:
        assert s.stop() == 0


def test_wider_bind_with_auth_is_quiet(monkeypatch, keys, caplog):
    # Every port, the state store's included, authenticates its clients: nothing to warn of.
    import taureau.standalone

    config = _config_of(monkeypatch, "--auth", "token", "--token-secret-key", str(keys.secret_file))
    assert config.broker.bind_address == "0.0.0.0" and config.state.enabled
    with caplog.at_level("WARNING", logger="taureau.standalone"):
        taureau.standalone._check_exposure(config.broker)
    assert caplog.text == ""
