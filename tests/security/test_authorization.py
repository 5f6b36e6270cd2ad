"""Authorization end to end: superusers, tenant admins, namespace, topic and subscription
permissions granted and revoked with the CLI (pulsar-admin verbs) and REST, enforced on the
wire (AuthorizationError) and over REST (403), and nothing left behind by a refusal."""

from __future__ import annotations

import pulsar
import pytest

from taureau.broker.error_codes import ServerError
from tests.e2e.raw import RawClient, T, command
from tests.security.helpers import Keys, cli, client, rest, round_trip, start

NS = "acme/ns"
TOPIC = f"persistent://{NS}/orders"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    s = start(tmp_path_factory.mktemp("authz"), keys)
    with rest(s, keys.token("admin")) as http:
        assert http.put("/admin/v2/tenants/acme", json={"adminRoles": ["tadmin"],
                                                        "allowedClusters": ["standalone"]}).status_code == 204
    yield s
    s.stop()


def _admin(server, keys, role: str, *args: str):
    return cli("admin", "--admin-url", server.admin_url, "--auth-plugin", "token",
               "--auth-params", f"token:{keys.token(role)}", *args)


def _as(server, keys, role: str, timeout: int = 5) -> pulsar.Client:
    return client(server, pulsar.AuthenticationToken(keys.token(role)), timeout=timeout)


def _topics(server, keys) -> list[str]:
    with rest(server, keys.token("admin")) as http:
        return http.get(f"/admin/v2/persistent/{NS}").json()


def _refused_producer(server, keys, role: str, topic: str) -> None:
    c = _as(server, keys, role)
    try:
        with pytest.raises(pulsar.AuthorizationError):
            c.create_producer(topic)
    finally:
        c.close()


def _refused_consumer(server, keys, role: str, topic: str, subscription: str = "s") -> None:
    c = _as(server, keys, role)
    try:
        with pytest.raises(pulsar.AuthorizationError):
            c.subscribe(topic, subscription)
    finally:
        c.close()


def test_tenant_admin_manages_namespaces_others_cannot(server, keys):
    created = _admin(server, keys, "tadmin", "namespaces", "create", NS)
    assert created.returncode == 0, created.stderr
    refused = _admin(server, keys, "app1", "namespaces", "create", "acme/other")
    assert refused.returncode == 1 and "403" in refused.stderr and "not an admin of tenant acme" in refused.stderr
    assert _admin(server, keys, "tadmin", "tenants", "create", "evil").returncode == 1  # superusers only
    with rest(server, keys.token("admin")) as http:
        assert http.get("/admin/v2/namespaces/acme").json() == [NS]
        assert "evil" not in http.get("/admin/v2/tenants").json()


def test_produce_and_consume_need_their_permissions(server, keys):
    _refused_producer(server, keys, "app1", TOPIC)
    assert TOPIC not in _topics(server, keys)  # a refused producer creates nothing
    granted = _admin(server, keys, "tadmin", "namespaces", "grant-permission", NS, "--role", "app1",
                     "--actions", "produce")
    assert granted.returncode == 0, granted.stderr
    c = _as(server, keys, "app1")
    try:
        c.create_producer(TOPIC).send(b"x")
    finally:
        c.close()
    _refused_consumer(server, keys, "app1", TOPIC)
    assert _admin(server, keys, "tadmin", "namespaces", "grant-permission", NS, "--role", "app1",
                  "--actions", "produce,consume").returncode == 0
    assert round_trip(_as(server, keys, "app1"), TOPIC) == TOPIC.encode()
    shown = _admin(server, keys, "tadmin", "namespaces", "permissions", NS)
    assert '"app1": [\n    "consume",\n    "produce"\n  ]' in shown.stdout
    assert _admin(server, keys, "tadmin", "namespaces", "revoke-permission", NS, "--role", "app1").returncode == 0
    _refused_producer(server, keys, "app1", TOPIC)


def test_topic_permission_covers_that_topic_only(server, keys):
    other = f"persistent://{NS}/other"
    granted = _admin(server, keys, "tadmin", "topics", "grant-permission", TOPIC, "--role", "app2",
                     "--actions", "produce,consume")
    assert granted.returncode == 0, granted.stderr
    assert round_trip(_as(server, keys, "app2"), TOPIC) == TOPIC.encode()
    _refused_producer(server, keys, "app2", other)
    shown = _admin(server, keys, "tadmin", "topics", "permissions", TOPIC)
    assert '"app2"' in shown.stdout
    # A namespace grant is not revoked on one topic (Pulsar answers 412 as well).
    missing = _admin(server, keys, "tadmin", "topics", "revoke-permission", other, "--role", "app2")
    assert missing.returncode == 1 and "412" in missing.stderr
    assert _admin(server, keys, "tadmin", "topics", "revoke-permission", TOPIC, "--role", "app2").returncode == 0
    _refused_producer(server, keys, "app2", TOPIC)


def test_subscription_permission_limits_who_uses_it(server, keys):
    assert _admin(server, keys, "tadmin", "namespaces", "grant-permission", NS, "--role", "app3",
                  "--actions", "consume").returncode == 0
    assert _admin(server, keys, "tadmin", "namespaces", "grant-permission", NS, "--role", "app4",
                  "--actions", "consume").returncode == 0
    limited = _admin(server, keys, "tadmin", "namespaces", "grant-subscription-permission", NS,
                     "-s", "billing", "--roles", "app3")
    assert limited.returncode == 0, limited.stderr
    _refused_consumer(server, keys, "app4", TOPIC, "billing")
    for role in ("app3", "app4"):
        c = _as(server, keys, role)
        try:
            c.subscribe(TOPIC, "billing" if role == "app3" else "audit").close()
        finally:
            c.close()
    assert _admin(server, keys, "tadmin", "namespaces", "revoke-subscription-permission", NS, "-s", "billing",
                  "--role", "app3").returncode == 0
    c = _as(server, keys, "app4")
    try:
        c.subscribe(TOPIC, "billing").close()  # no roles listed any more: the namespace grant holds
    finally:
        c.close()


def test_rest_topic_operations_by_permission(server, keys):
    assert _admin(server, keys, "tadmin", "namespaces", "grant-permission", NS, "--role", "reader",
                  "--actions", "consume").returncode == 0
    base = f"/admin/v2/persistent/{NS}/orders"
    with rest(server, keys.token("reader")) as http:
        assert http.get(f"{base}/stats").status_code == 200
        assert http.get(f"/admin/v2/persistent/{NS}").status_code == 200
        assert http.post(f"{base}/subscription/reader-sub/skip_all").status_code in (204, 404)
        for method, path in [("DELETE", base), ("PUT", f"{base}/partitions"), ("POST", f"{base}/deduplication"),
                             ("POST", f"/admin/v2/namespaces/{NS}/retention"), ("DELETE", f"/admin/v2/namespaces/{NS}"),
                             ("DELETE", "/admin/v2/tenants/acme"), ("GET", "/admin/v2/tenants"),
                             ("POST", f"/admin/v2/namespaces/{NS}/permissions/reader")]:
            response = http.request(method, path, json=["produce"])
            assert response.status_code == 403, (method, path, response.text)
    with rest(server, keys.token("nobody")) as http:
        response = http.get(f"{base}/stats")
        assert response.status_code == 403
        assert response.json()["reason"] == f"role nobody may not look up on {TOPIC}"
        assert http.post(f"{base}/subscription/s/skip_all").status_code == 403
        assert http.get(f"{base}/subscription/s/position/1").status_code == 403  # peek
    assert TOPIC in _topics(server, keys)  # every refusal above left the topic as it was


def test_functions_rest_needs_the_functions_permission(server, keys):
    path = f"/admin/v3/functions/{NS}"
    with rest(server, keys.token("dev")) as http:
        assert http.get(path).status_code == 403
    assert _admin(server, keys, "tadmin", "namespaces", "grant-permission", NS, "--role", "dev",
                  "--actions", "functions").returncode == 0
    with rest(server, keys.token("dev")) as http:
        assert http.get(path).status_code == 404  # allowed; this standalone runs no functions worker


def test_wire_refusal_is_authorization_error(server, keys):
    raw = RawClient(server.broker_port, connect=False)
    raw.send(command(T.CONNECT, "connect", client_version="raw", protocol_version=20,
                     auth_method_name="token", auth_data=keys.token("nobody").encode()))
    raw.expect(T.CONNECTED)
    answer = raw.producer(f"persistent://{NS}/wire")
    assert answer.type == T.ERROR and answer.error.error == ServerError.AuthorizationError
    assert answer.error.message == f"role nobody may not produce on persistent://{NS}/wire"
    raw.send(command(T.LOOKUP, "lookupTopic", topic=f"persistent://{NS}/wire", request_id=2))
    lookup = raw.expect(T.LOOKUP_RESPONSE)
    assert lookup.lookupTopicResponse.error == ServerError.AuthorizationError
    assert lookup.lookupTopicResponse.message == f"role nobody may not look up on persistent://{NS}/wire"
    raw.send(command(T.SUBSCRIBE, "subscribe", topic=f"persistent://{NS}/wire", subscription="s",
                     subType=0, consumer_id=1, request_id=3))
    refused = raw.expect(T.ERROR)
    assert refused.error.error == ServerError.AuthorizationError
    assert refused.error.message == f"role nobody may not consume on persistent://{NS}/wire with subscription s"
    assert f"persistent://{NS}/wire" not in _topics(server, keys)


def test_bad_permission_requests_are_refused_and_store_nothing(server, keys):
    base = f"/admin/v2/namespaces/{NS}/permissions"
    with rest(server, keys.token("tadmin")) as http:
        before = http.get(base).json()
        for body, reason in [(["produce", "fly"], "unknown action(s) ['fly']"),
                             ({"produce": True}, "actions must be a list"),
                             ("produce", "actions must be a list"),
                             ([1], "actions must be a list")]:
            response = http.post(f"{base}/bad-role", json=body)
            assert response.status_code == 400, (body, response.text)
            assert reason in response.json()["reason"]
        sub = http.post(f"{base}/subscription/billing", json=[""])
        assert sub.status_code == 400 and sub.json()["reason"] == "roles must be a list of role names"
        topic = http.post(f"/admin/v2/persistent/{NS}/orders/permissions/bad-role", json=["write"])
        assert topic.status_code == 400
        assert http.post("/admin/v2/namespaces/acme/missing/permissions/r", json=["produce"]).status_code == 404
        assert http.get(base).json() == before  # nothing stored, and the policies still read back
        assert "bad-role" not in http.get(f"/admin/v2/persistent/{NS}/orders/permissions").json()


def test_cli_checks_actions_and_roles_before_connecting(keys):
    # Port 9 (discard): were anything sent, the command would fail to connect, not on its arguments.
    base = ["admin", "--admin-url", "http://127.0.0.1:9", "namespaces", "grant-permission", NS]
    bad_action = cli(*base, "--role", "app1", "--actions", "produce,fly")
    assert bad_action.returncode == 2
    assert "unknown action(s) ['fly']" in bad_action.stderr and "Traceback" not in bad_action.stderr
    bad_role = cli(*base, "--role", "", "--actions", "produce")
    assert bad_role.returncode == 2 and "invalid role ''" in bad_role.stderr


def test_schema_compaction_and_policy_paths_by_permission(server, keys):
    assert _admin(server, keys, "tadmin", "namespaces", "grant-permission", NS, "--role", "schema-reader",
                  "--actions", "consume").returncode == 0
    schema = {"type": "STRING", "schema": "", "properties": {}}
    schemas = f"/admin/v2/schemas/{NS}/typed"
    with rest(server, keys.token("tadmin")) as http:
        assert http.post(f"{schemas}/schema", json=schema).status_code == 200
    with rest(server, keys.token("schema-reader")) as http:
        assert http.get(f"{schemas}/schema").json()["type"] == "STRING"
        assert http.post(f"{schemas}/compatibility", json=schema).status_code == 200
        for method, path in [("POST", f"{schemas}/schema"), ("DELETE", f"{schemas}/schema"),
                             ("PUT", f"/admin/v2/persistent/{NS}/orders/compaction"),
                             ("POST", f"/admin/v2/namespaces/{NS}/messageTTL"),
                             ("POST", f"/admin/v2/namespaces/{NS}/backlogQuota"),
                             ("PUT", f"/admin/v2/namespaces/{NS}/schemaCompatibilityStrategy")]:
            response = http.request(method, path, json=schema if "schema" in path else 1)
            assert response.status_code == 403, (method, path, response.text)
    with rest(server, keys.token("nobody")) as http:
        assert http.get(f"{schemas}/schema").status_code == 403
    with rest(server, keys.token("admin")) as http:  # the refusals changed nothing
        assert http.get(f"{schemas}/schema").json()["version"] == 0
        assert http.get(f"/admin/v2/namespaces/{NS}/messageTTL").json() == 0


def test_non_persistent_topics_need_the_same_permissions(server, keys):
    """A non-persistent topic is authorized as a persistent one: refused before it is made,
    namespace and topic grants honoured, REST by permission."""
    live = f"non-persistent://{NS}/live"
    with rest(server, keys.token("admin")) as http:  # run alone, this test makes the namespace
        assert http.put(f"/admin/v2/namespaces/{NS}").status_code in (204, 409)
    _refused_producer(server, keys, "np1", live)
    _refused_consumer(server, keys, "np1", live)
    with rest(server, keys.token("admin")) as http:
        assert live not in http.get(f"/admin/v2/non-persistent/{NS}").json()  # the refusals made nothing
    granted = _admin(server, keys, "tadmin", "topics", "grant-permission", live, "--role", "np1",
                     "--actions", "produce,consume")
    assert granted.returncode == 0, granted.stderr
    c = _as(server, keys, "np1")
    try:
        consumer = c.subscribe(live, "s")
        c.create_producer(live).send(b"hello")
        assert consumer.receive(5000).data() == b"hello"
        _refused_producer(server, keys, "np1", f"persistent://{NS}/live")  # that grant is the other domain's
        base = f"/admin/v2/non-persistent/{NS}/live"
        with rest(server, keys.token("np1")) as http:
            assert http.get(f"{base}/stats").status_code == 200
            assert http.delete(base).status_code == 403  # tenant admins only
        with rest(server, keys.token("nobody")) as http:
            assert http.get(f"{base}/stats").status_code == 403
            assert http.delete(f"{base}/subscription/s").status_code == 403
        shown = _admin(server, keys, "tadmin", "topics", "permissions", live)
        assert shown.returncode == 0 and '"np1"' in shown.stdout
    finally:
        c.close()
    assert _admin(server, keys, "tadmin", "topics", "revoke-permission", live, "--role", "np1").returncode == 0
    _refused_producer(server, keys, "np1", live)
