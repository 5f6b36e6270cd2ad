"""Key_Shared balance and throughput against Shared, on one standalone, official Python client.

Run: python bench/key_shared.py [--messages 20000] [--keys 2000] [--consumers 4]

For Key_Shared (AUTO_SPLIT) it prints how many messages each consumer took and the ratio of
the busiest to the idlest; for Shared, Key_Shared unbatched and Key_Shared with the client's
KEY_BASED batch builder it prints end-to-end throughput (messages received per second by all
consumers, producer running). Not a test: pytest never collects it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import pulsar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import Standalone  # noqa: E402


def run(
    service_url: str, topic: str, sub_type, batching: str | None, messages: int, keys: int, consumers: int
):
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    counts = [0] * consumers
    done = threading.Event()
    lock = threading.Lock()
    received = [0]

    def listener(index):
        def on_message(consumer, msg):
            consumer.acknowledge(msg)
            with lock:
                counts[index] += 1
                received[0] += 1
                if received[0] >= messages:
                    done.set()

        return on_message

    subs = [
        client.subscribe(
            topic, "bench", consumer_type=sub_type, message_listener=listener(i), consumer_name=f"c{i}"
        )
        for i in range(consumers)
    ]
    options = {"batching_enabled": batching is not None, "block_if_queue_full": True}
    if batching == "key_based":
        options["batching_type"] = pulsar.BatchingType.KeyBased
    producer = client.create_producer(topic, **options)
    started = time.monotonic()
    for i in range(messages):
        producer.send_async(b"x" * 100, None, partition_key=f"key-{i % keys}")
    producer.flush()
    if not done.wait(120):
        print(f"  only {received[0]} of {messages} messages arrived within 120 s")
    elapsed = time.monotonic() - started
    for consumer in subs:
        consumer.close()
    client.close()
    return counts, received[0] / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--consumers", type=int, default=4)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        server = Standalone(Path(data), "--no-functions").start()
        try:
            cases = [
                ("Shared, batched", pulsar.ConsumerType.Shared, "default"),
                ("Key_Shared, unbatched", pulsar.ConsumerType.KeyShared, None),
                ("Key_Shared, KEY_BASED batches", pulsar.ConsumerType.KeyShared, "key_based"),
            ]
            for n, (label, sub_type, batching) in enumerate(cases):
                counts, rate = run(
                    server.service_url, f"bench-ks-{n}", sub_type, batching, a.messages, a.keys, a.consumers
                )
                ratio = max(counts) / max(min(counts), 1)
                print(f"{label:32} {rate:9.0f} msg/s   per consumer {counts}   max/min {ratio:.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
