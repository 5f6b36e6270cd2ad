"""The admin REST API's basics, with Apache Pulsar's paths, bodies and status codes."""

import uuid

from pulsar import InitialPosition

from tests.compat.helpers import send_numbered


def rest(topic: str) -> str:
    return "/admin/v2/" + topic.replace("://", "/")


def test_namespaces_are_created_listed_and_deleted(admin):
    assert "public" in admin.get("/admin/v2/tenants").json()
    namespace = f"public/compat-ns-{uuid.uuid4().hex[:8]}"
    assert admin.put(f"/admin/v2/namespaces/{namespace}").status_code == 204
    assert admin.put(f"/admin/v2/namespaces/{namespace}").status_code == 409
    assert namespace in admin.get("/admin/v2/namespaces/public").json()
    assert admin.delete(f"/admin/v2/namespaces/{namespace}").status_code == 204
    assert namespace not in admin.get("/admin/v2/namespaces/public").json()


def test_topic_lifecycle_and_stats(client, admin, topic):
    assert admin.put(rest(topic)).status_code == 204
    assert admin.put(rest(topic)).status_code == 409
    assert topic in admin.get("/admin/v2/persistent/public/default").json()
    producer = client.create_producer(topic)
    send_numbered(producer, 3)
    stats = admin.get(f"{rest(topic)}/stats").json()
    assert (stats["msgInCounter"], len(stats["publishers"]), stats["subscriptions"]) == (3, 1, {})
    assert admin.delete(rest(topic)).status_code == 412  # a producer is connected
    producer.close()
    assert admin.delete(rest(topic)).status_code == 204
    assert admin.get(f"{rest(topic)}/stats").status_code == 404


def test_subscriptions_backlog_skip_and_delete(client, admin, topic):
    client.subscribe(topic, "sub", initial_position=InitialPosition.Earliest).close()
    send_numbered(client.create_producer(topic), 5)
    assert admin.get(f"{rest(topic)}/subscriptions").json() == ["sub"]
    assert admin.get(f"{rest(topic)}/stats").json()["subscriptions"]["sub"]["msgBacklog"] == 5
    assert admin.post(f"{rest(topic)}/subscription/sub/skip/2").status_code == 204
    assert admin.get(f"{rest(topic)}/stats").json()["subscriptions"]["sub"]["msgBacklog"] == 3
    assert admin.post(f"{rest(topic)}/subscription/sub/skip_all").status_code == 204
    assert admin.get(f"{rest(topic)}/stats").json()["subscriptions"]["sub"]["msgBacklog"] == 0
    assert admin.delete(f"{rest(topic)}/subscription/sub").status_code == 204
    assert admin.get(f"{rest(topic)}/subscriptions").json() == []


def test_a_subscription_created_over_rest_starts_where_asked(client, admin, topic):
    send_numbered(client.create_producer(topic), 4)
    assert (
        admin.put(f"{rest(topic)}/subscription/from-start", json={"ledgerId": -1, "entryId": -1}).status_code
        == 204
    )
    assert admin.put(f"{rest(topic)}/subscription/from-end").status_code == 204
    backlog = {
        name: s["msgBacklog"] for name, s in admin.get(f"{rest(topic)}/stats").json()["subscriptions"].items()
    }
    assert backlog == {"from-start": 4, "from-end": 0}


def test_missing_things_answer_404(admin, topic):
    assert admin.get(f"{rest(topic)}/stats").status_code == 404
    assert admin.delete(f"{rest(topic)}/subscription/nope").status_code == 404
    assert admin.get("/admin/v2/namespaces/no-such-tenant").status_code == 404
