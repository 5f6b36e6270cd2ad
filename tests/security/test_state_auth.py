"""The state store with authentication on, tried as an attacker would: no token, a forged or
expired one, another tenant's path, a memory server's blocks without (or with the wrong)
ticket. Each refusal is typed, leaves nothing behind, and the store keeps serving."""

from __future__ import annotations

import time

import pytest

from taureau.auth import tokens
from taureau.common import errors
from taureau.state import AuthenticationError, AuthorizationError, HashTable, StateClient, client_auth, codec
from taureau.state.codec import Op, Redirect
from taureau.state.conn import Conn
from tests.security.helpers import cli, rest, start


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    s = start(tmp_path_factory.mktemp("state-auth"), keys, state=True)
    admin = rest(s, keys.token("admin"))
    for tenant in ("acme", "rival"):
        assert admin.put(f"/admin/v2/tenants/{tenant}", json={"adminRoles": [f"{tenant}-admin"],
                                                             "allowedClusters": ["standalone"]}).status_code == 204
        assert admin.put(f"/admin/v2/namespaces/{tenant}/ns").status_code == 204
    grant = admin.post("/admin/v2/namespaces/acme/ns/permissions/app", json=["functions"])
    assert grant.status_code == 204
    assert admin.post("/admin/v2/namespaces/rival/ns/permissions/other", json=["functions"]).status_code == 204
    assert admin.post("/admin/v2/namespaces/acme/ns/permissions/reader", json=["consume"]).status_code == 204
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def address(server):
    return f"127.0.0.1:{server.state_port}"


@pytest.fixture(scope="module")
def root(address, keys):
    """A superuser's client, to look behind the attacker's back."""
    with StateClient(address, token=keys.token("admin"), timeout=10) as c:
        yield c


def test_a_granted_role_uses_its_namespace(address, keys, root):
    with StateClient(address, token=keys.token("app"), timeout=10) as c:
        ht = c.open_or_create_hash_table("/acme/ns/orders")
        ht.put(b"k", b"v")
        assert ht.get(b"k") == b"v"
        assert [e["name"] for e in c.ls("/acme/ns")] == ["orders"]
    assert root.open_hash_table("/acme/ns/orders").get(b"k") == b"v"


@pytest.mark.parametrize("token", [
    None,  # no credentials at all
    "not-a-jwt",
    "forged",  # a well-formed token signed with another key
    "expired",
])
def test_bad_credentials_are_refused_before_anything(address, keys, root, token):
    if token == "forged":
        token = tokens.create_token("admin", secret_key=tokens.create_secret_key())
    elif token == "expired":
        token = tokens.create_token("admin", secret_key=keys.secret, expires_in_s=-10)
    with pytest.raises(AuthenticationError):
        StateClient(address, token=token, timeout=5)
    assert not root.exists("/acme/ns/attack")


def test_a_connection_that_skips_auth_gets_nothing(address, keys, root):
    conn = Conn(address, 5)
    try:
        for op, args in [(Op.HELLO, {}), (Op.CREATE, {"path": "/acme/ns/attack", "kind": "hash_table"}),
                         (Op.LIST, {"path": "/"}), (Op.STATS, {}), (Op.DROP_DUMP, {"src": "local://x"})]:
            with pytest.raises(errors.StateAuthenticationError, match="authenticate first"):
                conn.call(op, codec.pack_json(args))
        # Malformed credentials: a protocol error, and the connection still serves.
        with pytest.raises(errors.StateProtocolError):
            conn.call(Op.AUTH, codec.pack_json({"method": "token"}))
        with pytest.raises(errors.StateAuthenticationError, match="not accepted"):
            conn.call(Op.AUTH, codec.pack_json({"method": "kerberos", "data": "x"}))
        conn.call(Op.AUTH, codec.pack_json({"method": "basic", "data": "bob:builder"}))
        assert codec.unpack_json(conn.call(Op.HELLO, codec.pack_json({})))["lease_ms"] > 0
    finally:
        conn.close()
    assert not root.exists("/acme/ns/attack")


def test_basic_users_authenticate_too(address, root):
    with StateClient(address, basic=("alice", "wonder"), timeout=10) as c:  # alice is a superuser
        assert c.exists("/acme/ns") is root.exists("/acme/ns")
    with pytest.raises(AuthenticationError):
        StateClient(address, basic=("alice", "wrong"), timeout=5)


@pytest.mark.parametrize("path", [
    "/rival/ns/loot",  # another tenant's namespace
    "/acme/other/x",  # a namespace of the right tenant with no grant
    "/functions/rival/ns/f/space",  # another tenant's function
    "/acme",  # the tenant itself: its admins only
    "/loot",  # a path of no tenant: superusers only
])
def test_paths_outside_the_roles_grants_are_refused(address, keys, root, path):
    existed = root.exists(path)  # /acme is there: the directory of /acme/ns/orders
    with StateClient(address, token=keys.token("app"), timeout=10) as c:
        with pytest.raises(AuthorizationError, match=f"may not use state path {path}"):
            c.create_hash_table(path)
        with pytest.raises(AuthorizationError):
            c.exists(path)
        with pytest.raises(AuthorizationError):
            c.ls("/")
        with pytest.raises(AuthorizationError):
            c.rename("/acme/ns/orders", path)
        with pytest.raises(AuthorizationError, match="superusers only"):
            c.stats()
    assert root.exists(path) is existed and (path == "/acme" or not existed)
    assert root.exists("/acme/ns/orders")


def test_a_request_naming_many_paths_is_refused_for_any_foreign_one(address, keys, root):
    root.open_or_create_hash_table("/rival/ns/leased")
    with StateClient(address, token=keys.token("app"), timeout=10) as c:
        paths = [f"/acme/ns/p{i}" for i in range(50)] + ["/rival/ns/leased"]
        with pytest.raises(AuthorizationError, match="may not use state path /rival/ns/leased"):
            c.control(Op.RENEW, {"paths": paths})
        with pytest.raises(errors.StateProtocolError):  # not a list of strings: refused, not crashed
            c.control(Op.RENEW, {"paths": ["/acme/ns/orders", 7]})
        assert c.control(Op.RENEW, {"paths": paths[:50]})["missing"] == paths[:50]


def test_consume_alone_is_not_a_state_grant(address, keys):
    with StateClient(address, token=keys.token("reader"), timeout=10) as c, pytest.raises(AuthorizationError):
        c.open_or_create_hash_table("/acme/ns/orders")


def test_a_namespaces_users_may_not_lift_its_quota_nor_read_server_files(address, keys, root):
    with StateClient(address, token=keys.token("app"), timeout=10) as c:
        assert c.quota("/acme/ns")["path"] == "/acme/ns"  # reading is using
        with pytest.raises(AuthorizationError):
            c.set_quota("/acme/ns", 1_000_000)
        with pytest.raises(AuthorizationError, match="superusers only"):
            c.load("/acme/ns/stolen", "local://../internal.key")
        with pytest.raises(AuthorizationError, match="superusers only"):
            c.drop_dump("local://controller.json")  # deleting a server file is the operators' business
        with pytest.raises(AuthorizationError, match="backing path"):
            c.create_hash_table("/acme/ns/mapped", backing_path="local://x")
    assert not root.exists("/acme/ns/stolen") and not root.exists("/acme/ns/mapped")
    with StateClient(address, token=keys.token("acme-admin"), timeout=10) as c:
        assert c.set_quota("/acme/ns", 64)["blocks"] == 64
        c.set_quota("/acme/ns", None)


def _victim(root: StateClient) -> HashTable:
    ht = root.open_or_create_hash_table("/rival/ns/vault")
    ht.upsert(b"password", b"hunter2")
    return ht


def test_memory_servers_serve_ticket_holders_only(address, keys, root):
    victim = _victim(root)
    part = victim._parts[0]
    with StateClient(address, token=keys.token("app"), timeout=10) as c:
        mine = c.open_or_create_hash_table("/acme/ns/mine")
        my_ticket = mine._ticket
    assert my_ticket is not None and part.addr
    conn = Conn(part.addr, 5)
    try:
        # No ticket at all: the victim's block is not served, not even a count.
        with pytest.raises(errors.StateAuthorizationError, match="no ticket"):
            conn.call(Op.GET, [part.alloc, b"password"])
        # A ticket of its own structure does not open another's block.
        conn.call(Op.ACCESS, [my_ticket.encode()])
        with pytest.raises(errors.StateAuthorizationError):
            conn.call(Op.GET, [part.alloc, b"password"])
        with pytest.raises(errors.StateAuthorizationError):
            conn.call(Op.PUT, [part.alloc, b"evil", b"1"])
        # A forged ticket for the victim's structure: its id with our MAC, or a later expiry.
        sid, exp, mac = my_ticket.split(":")
        for forged in (f"{victim._id}:{exp}:{mac}", f"{sid}:{int(exp) + 3600}:{mac}", "garbage"):
            with pytest.raises(errors.StateAuthenticationError):
                conn.call(Op.ACCESS, [forged.encode()])
        with pytest.raises(errors.StateAuthorizationError):
            conn.call(Op.GET, [part.alloc, b"password"])
    finally:
        conn.close()
    assert victim.get(b"password") == b"hunter2"
    with pytest.raises(errors.KeyNotFoundError):
        victim.get(b"evil")


def test_an_expired_ticket_sends_the_client_back_to_the_controller(address, keys):
    # A ticket expires with the token it was issued to: the memory server answers STALE.
    info: dict = {}
    gate = client_auth.ClientGate(None, b"s" * 32)  # type: ignore[arg-type]  # tickets only
    client_auth.accept_ticket(info, b"s" * 32, [gate.ticket(7, time.time() + 30).encode()])
    info[client_auth.TICKETS][7] = time.time() - 1
    with pytest.raises(Redirect) as stale:
        client_auth.check_ticket(info, 7)
    assert stale.value.code == codec.STALE


def test_a_token_supplier_is_asked_again_when_the_token_expires(address, keys, root):
    issued: list[str] = []

    def supplier() -> str:
        issued.append(keys.token("app", expires_in_s=2))
        return issued[-1]

    with StateClient(address, token=supplier, timeout=10) as c:
        ht = c.open_or_create_hash_table("/acme/ns/renewed")
        ht.upsert(b"k", b"1")
        time.sleep(2.5)  # the token, and the ticket issued with it, have expired
        ht.upsert(b"k", b"2")  # STALE from the memory server, a fresh token to the controller
        assert ht.get(b"k") == b"2"
        assert c.exists("/acme/ns/renewed")
    assert len(issued) >= 2


def test_an_expired_token_without_a_supplier_is_refused(address, keys):
    with StateClient(address, token=keys.token("app", expires_in_s=2), timeout=10) as c:
        ht = c.open_or_create_hash_table("/acme/ns/short")
        time.sleep(2.5)
        with pytest.raises(AuthenticationError, match="expired"):
            c.exists("/acme/ns/short")
        with pytest.raises(AuthenticationError, match="expired"):
            ht.upsert(b"k", b"v")  # the ticket went stale; the controller refuses a new one


def test_the_cli_takes_the_same_credentials(address, keys, root):
    root.open_or_create_hash_table("/acme/ns/cli").upsert(b"k", b"from-cli")
    base = ("state", "--controller", address)
    ok = cli(*base, "--auth-plugin", "token", "--auth-params", f"token:{keys.token('app')}", "get", "/acme/ns/cli", "k")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "from-cli"
    anonymous = cli(*base, "ls", "/acme/ns")
    assert anonymous.returncode == 1 and "StateAuthenticationError: authenticate first" in anonymous.stderr
    elsewhere = cli(*base, "--auth-plugin", "basic", "--auth-params", '{"userId":"bob","password":"builder"}',
                    "rm", "/acme/ns/cli")
    assert elsewhere.returncode == 1 and "StateAuthorizationError: role bob may not use" in elsewhere.stderr
    tls = cli(*base, "--auth-plugin", "tls", "--auth-params", "tlsCertFile:a,tlsKeyFile:b", "ls")
    assert tls.returncode == 2 and "token or basic" in tls.stderr
    assert root.exists("/acme/ns/cli")
