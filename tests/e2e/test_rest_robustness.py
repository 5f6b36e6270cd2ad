"""Admin REST answers that were wrong (issue 7): oversized bodies and records, names that
are path steps or carry NUL or a trailing newline, a subscription created past the end,
and peeks of messages whose stored strings are not header-safe."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import httpx
import pulsar
import pytest

from taureau.protocol import encode_entry, pb
from tests.e2e.harness import Standalone, append_below_the_broker
from tests.e2e.raw import bad_string, metadata

TOPICS = "/admin/v2/persistent"


@pytest.fixture
def admin(standalone):
    with httpx.Client(base_url=standalone.admin_url, timeout=30) as c:
        yield c


def _path(topic: str) -> str:
    return f"{TOPICS}/{topic.split('://')[1]}"


# -- sizes ------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_with_413_and_nothing_is_stored(admin):
    body = json.dumps({"adminRoles": ["r" * 1000] * 6000}).encode()  # 6 MB > 5 MiB
    answer = admin.put(
        "/admin/v2/tenants/huge-body", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert "exceeds the limit of 5242880 bytes" in answer.json()["reason"]
    assert admin.get("/admin/v2/tenants/huge-body").status_code == 404


def test_a_streamed_body_over_the_limit_is_refused_too(admin):
    def chunks():
        yield b'{"adminRoles": ['
        for _ in range(6000):
            yield b'"' + b"r" * 1000 + b'",'
        yield b'"r"]}'

    answer = admin.put(
        "/admin/v2/tenants/streamed", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413 and "exceeds the limit" in answer.json()["reason"]
    assert admin.get("/admin/v2/tenants/streamed").status_code == 404


def test_a_record_over_the_metadata_limit_is_refused_with_413(admin):
    body = {"adminRoles": ["r" * 1000] * 2000}  # 2 MB: under the body limit, over a record's
    answer = admin.put("/admin/v2/tenants/huge-record", json=body)
    assert answer.status_code == 413
    assert "exceeds the 1048576 a record may hold" in answer.json()["reason"]
    assert admin.get("/admin/v2/tenants/huge-record").status_code == 404


# -- names ------------------------------------------------------------------------------------------

BAD_NAMES = ["%2E", "%2E%2E", "a%00b", "ok%0A"]
ENDPOINTS = [
    ("get", "/admin/v2/tenants/{bad}"),
    ("put", "/admin/v2/tenants/{bad}"),
    ("post", "/admin/v2/tenants/{bad}"),
    ("delete", "/admin/v2/tenants/{bad}"),
    ("get", "/admin/v2/namespaces/{bad}"),
    ("get", "/admin/v2/namespaces/public/{bad}"),
    ("put", "/admin/v2/namespaces/public/{bad}"),
    ("delete", "/admin/v2/namespaces/public/{bad}"),
    ("get", "/admin/v2/namespaces/{bad}/default/topics"),
    ("post", "/admin/v2/namespaces/public/{bad}/retention"),
    ("post", "/admin/v2/namespaces/public/{bad}/deduplication"),
    ("get", "/admin/v2/persistent/{bad}/default"),
    ("get", "/admin/v2/persistent/public/{bad}/partitioned"),
    ("put", "/admin/v2/persistent/public/default/{bad}"),
    ("delete", "/admin/v2/persistent/public/default/{bad}"),
    ("get", "/admin/v2/persistent/public/default/{bad}/stats"),
    ("get", "/admin/v2/persistent/public/default/{bad}/internalStats"),
    ("get", "/admin/v2/persistent/public/default/{bad}/lastMessageId"),
    ("put", "/admin/v2/persistent/public/default/{bad}/partitions"),
    ("post", "/admin/v2/persistent/public/default/{bad}/partitions"),
    ("get", "/admin/v2/persistent/public/default/{bad}/partitions"),
    ("delete", "/admin/v2/persistent/public/default/{bad}/partitions"),
    ("get", "/admin/v2/persistent/public/default/{bad}/partitioned-stats"),
    ("get", "/admin/v2/persistent/public/default/{bad}/subscriptions"),
    ("put", "/admin/v2/persistent/public/default/{bad}/subscription/s"),
    ("delete", "/admin/v2/persistent/public/default/{bad}/subscription/s"),
    ("post", "/admin/v2/persistent/public/default/{bad}/subscription/s/skip_all"),
    ("post", "/admin/v2/persistent/public/default/{bad}/subscription/s/skip/1"),
    ("post", "/admin/v2/persistent/public/default/{bad}/subscription/s/resetcursor/0"),
    ("post", "/admin/v2/persistent/public/default/{bad}/subscription/s/resetcursor"),
    ("get", "/admin/v2/persistent/public/default/{bad}/subscription/s/position/1"),
    ("put", "/admin/v2/persistent/{bad}/default/t"),
]
BODIES = {"partitions": 2, "retention": {"retentionTimeInMinutes": 1}, "deduplication": True}


@pytest.mark.parametrize("bad", BAD_NAMES)
@pytest.mark.parametrize(("method", "template"), ENDPOINTS, ids=[f"{m}:{t}" for m, t in ENDPOINTS])
def test_dot_nul_and_newline_names_are_400_with_a_reason(standalone, method, template, bad):
    # Raw paths: an HTTP client would resolve "." and ".." segments before sending them.
    url = standalone.admin_url + template.format(bad=bad)
    body = next((b for k, b in BODIES.items() if template.endswith(k)), None)
    if template.endswith("resetcursor"):
        body = {"ledgerId": -1, "entryId": -1}
    with httpx.Client(timeout=10) as c:
        answer = c.request(method.upper(), url, json=body if method in ("put", "post") else None)
    assert answer.status_code == 400, (answer.status_code, answer.text)
    reason = answer.json()["reason"]
    assert reason.startswith("invalid ") and " name: " in reason, reason


def test_a_subscription_past_the_end_starts_at_the_end(admin, client, topic):
    """As Pulsar clamps a cursor reset: a message id past the last entry means the end."""
    producer = client.create_producer(topic)
    for i in range(3):
        producer.send(f"old-{i}".encode())
    answer = admin.put(f"{_path(topic)}/subscription/late", json={"ledgerId": 999_999, "entryId": 5})
    assert answer.status_code == 204, answer.text
    assert admin.get(f"{_path(topic)}/stats").json()["subscriptions"]["late"]["msgBacklog"] == 0
    reset = admin.post(
        f"{_path(topic)}/subscription/late/resetcursor", json={"ledgerId": 2**62, "entryId": 0}
    )
    assert reset.status_code == 204, reset.text
    producer.send(b"new")
    consumer = client.subscribe(topic, "late")
    assert consumer.receive(timeout_millis=5000).data() == b"new"
    consumer.close()
    producer.close()


def test_a_refused_subscription_is_not_created(admin, client, topic):
    client.create_producer(topic).close()
    answer = admin.put(f"{_path(topic)}/subscription/a%00b", json={"ledgerId": -1, "entryId": -1})
    assert answer.status_code == 400 and answer.json()["reason"]
    assert admin.get(f"{_path(topic)}/subscriptions").json() == []


# -- peek -----------------------------------------------------------------------------------------


def test_every_stored_message_can_be_peeked_with_encoded_headers(tmp_path):
    topic = "persistent://public/default/peek-anything"
    meta = bad_string(metadata(0), "producer_name", b"pro\xffducer")
    meta.properties.add().CopyFrom(bad_string(pb.KeyValue(key="raw", value=""), "value", b"\xfe\xff"))
    stored = [encode_entry(meta, b"legacy")]  # stored before publish validation existed
    asyncio.run(append_below_the_broker(tmp_path, "public/default/persistent/peek-anything", stored, ["s"]))
    server = Standalone(tmp_path).start()
    try:
        client = pulsar.Client(server.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        producer = client.create_producer(topic)
        producer.send(b"crlf", properties={"evil": "a\r\nX-Injected: yes", "city=shanghai": "tag"})
        producer.send(b"cjk", properties={"lang": "中文"}, partition_key="键")
        client.close()
        with httpx.Client(base_url=server.admin_url, timeout=10) as admin:
            # The stored cursor "s" is a subscription again as the topic loads (no consumer).
            assert admin.get(f"{_path(topic)}/subscriptions").json() == ["s"]
            path = f"{_path(topic)}/subscription/s/position"
            legacy = admin.get(f"{path}/1")
            assert legacy.status_code == 200 and legacy.content == b"legacy"
            assert legacy.headers["X-Pulsar-producer-name"] == "pro%FFducer"
            assert legacy.headers["X-Pulsar-PROPERTY-raw"] == "%FE%FF"
            crlf = admin.get(f"{path}/2")
            assert crlf.status_code == 200 and crlf.content == b"crlf"
            assert crlf.headers["X-Pulsar-PROPERTY-evil"] == "a%0D%0AX-Injected: yes"
            assert "X-Injected" not in crlf.headers
            assert crlf.headers["X-Pulsar-PROPERTY-city%3Dshanghai"] == "tag"
            assert json.loads(crlf.headers["X-Pulsar-PROPERTY"]) == {
                "evil": "a\r\nX-Injected: yes",
                "city=shanghai": "tag",
            }
            cjk = admin.get(f"{path}/3")
            assert cjk.status_code == 200 and cjk.content == b"cjk"
            assert urllib.parse.unquote(cjk.headers["X-Pulsar-PROPERTY-lang"]) == "中文"
            assert urllib.parse.unquote(cjk.headers["X-Pulsar-partition-key"]) == "键"
    finally:
        assert server.stop() == 0
