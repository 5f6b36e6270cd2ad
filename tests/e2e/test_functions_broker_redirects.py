"""What a functions worker asks of the brokers (subscriptions, backlogs, de-duplication) works
through any broker of a cluster: the worker follows the 307 to the topic's owner. Two real
`taureau broker` processes on two bookies and a real ZooKeeper."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pulsar

from taureau.functions.broker_admin import BrokerAdmin
from taureau.protocol import pb
from tests.e2e.bookies import BookieProcess
from tests.e2e.brokers import BrokerProcess
from tests.e2e.raw import RawClient, command

CONNECT = 1


def test_the_worker_reaches_a_topic_owned_by_another_broker(zookeeper, tmp_path):
    url = f"{zookeeper.url}/t/fnredirect-{uuid.uuid4().hex[:8]}"
    started = [BookieProcess(tmp_path / f"bookie{i}", url).start() for i in range(2)]
    try:
        a = BrokerProcess(tmp_path / "a", url).start()
        started.append(a)
        b = BrokerProcess(tmp_path / "b", url).start()
        started.append(b)
        topic = f"persistent://public/default/fn-owned-by-b-{uuid.uuid4().hex[:6]}"
        with RawClient(b.broker_port) as raw:  # an authoritative lookup at B: B takes the bundle
            raw.send(command(pb.BaseCommand.Type.LOOKUP, "lookupTopic", topic=topic, request_id=1,
                             authoritative=True))
            assert raw.expect(pb.BaseCommand.Type.LOOKUP_RESPONSE).lookupTopicResponse.response == CONNECT
        stats_at_b = f"{b.web_url}/admin/v2/persistent/public/default/{topic.rsplit('/', 1)[1]}/stats"

        async def through_a() -> int:
            admin = BrokerAdmin(a.web_url)  # the worker is given broker A only
            try:
                await admin.ensure_subscription(topic, "fn-sub", earliest=True)
                assert "fn-sub" in httpx.get(stats_at_b).json()["subscriptions"]
                client = pulsar.Client(b.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
                producer = client.create_producer(topic)
                for i in range(3):
                    producer.send(f"m{i}".encode())
                client.close()
                backlog = await admin.backlog(topic, "fn-sub")
                await admin.enable_deduplication(topic)
                await admin.delete_subscription(topic, "fn-sub")
                return backlog
            finally:
                await admin.close()

        assert asyncio.run(through_a()) == 3
        assert "fn-sub" not in httpx.get(stats_at_b).json()["subscriptions"]
        dedup = httpx.get(f"{b.web_url}/admin/v2/persistent/public/default/{topic.rsplit('/', 1)[1]}/deduplication")
        assert dedup.status_code == 200 and dedup.json() is True
    finally:
        for process in reversed(started):
            process.stop()
