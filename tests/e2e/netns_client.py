"""The official Pulsar client run inside a test host (a network namespace) by the partition
tests, which cannot run it in their own process (the client's threads would not be in the
host's namespace). It prints one line per outcome, flushed, so the test knows exactly what
was acknowledged:

    python -m tests.e2e.netns_client produce URL TOPIC PREFIX --stop-file F   # ACK p / FAIL p error
    python -m tests.e2e.netns_client produce URL TOPIC PREFIX --count N
    python -m tests.e2e.netns_client consume URL TOPIC SUBSCRIPTION            # GOT p ... then DONE
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import pulsar


def _client(url: str) -> pulsar.Client:
    return pulsar.Client(url, operation_timeout_seconds=30, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def produce(a: argparse.Namespace) -> None:
    client = _client(a.url)
    producer = client.create_producer(a.topic, batching_enabled=False, send_timeout_millis=int(a.send_timeout * 1000))
    _say("READY")
    i = 0
    while (a.stop_file is None or not os.path.exists(a.stop_file)) and (a.count is None or i < a.count):
        payload = f"{a.prefix}-{i}"
        try:
            producer.send(payload.encode())
        except pulsar.PulsarException as exc:
            _say(f"FAIL {payload} {type(exc).__name__}")
        else:
            _say(f"ACK {payload}")
        i += 1
        time.sleep(a.pause)
    client.close()
    _say("DONE")


def consume(a: argparse.Namespace) -> None:
    client = _client(a.url)
    consumer = client.subscribe(a.topic, a.subscription, initial_position=pulsar.InitialPosition.Earliest)
    while True:
        try:
            msg = consumer.receive(int(a.quiet * 1000))
        except pulsar.Timeout:
            break
        _say(f"GOT {msg.data().decode()}")
        consumer.acknowledge(msg)
    client.close()
    _say("DONE")


def main() -> None:
    parser = argparse.ArgumentParser(prog="netns_client")
    verbs = parser.add_subparsers(required=True)
    p = verbs.add_parser("produce")
    p.add_argument("url")
    p.add_argument("topic")
    p.add_argument("prefix")
    p.add_argument("--stop-file")
    p.add_argument("--count", type=int)
    p.add_argument("--pause", type=float, default=0.05)
    p.add_argument("--send-timeout", type=float, default=60.0)
    p.set_defaults(func=produce)
    c = verbs.add_parser("consume")
    c.add_argument("url")
    c.add_argument("topic")
    c.add_argument("subscription")
    c.add_argument("--quiet", type=float, default=5.0, help="stop after this many seconds without a message")
    c.set_defaults(func=consume)
    a = parser.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
