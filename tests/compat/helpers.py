"""Receiving helpers the compat scenarios share."""

from __future__ import annotations

import time

import pulsar


def receive(consumer, count: int, timeout_ms: int = 10_000, ack: bool = True) -> list:
    """Exactly `count` messages (pulsar.Timeout if fewer arrive), acknowledged unless ack=False."""
    got = []
    for _ in range(count):
        msg = consumer.receive(timeout_millis=timeout_ms)
        if ack:
            consumer.acknowledge(msg)
        got.append(msg)
    return got


def drain(consumer, idle_ms: int = 1000, ack: bool = True) -> list:
    """Every message that arrives until none has for `idle_ms`."""
    got = []
    while True:
        try:
            msg = consumer.receive(timeout_millis=idle_ms)
        except pulsar.Timeout:
            return got
        if ack:
            consumer.acknowledge(msg)
        got.append(msg)


def texts(messages) -> list[str]:
    return [m.data().decode() for m in messages]


def send_numbered(producer, count: int, start: int = 0) -> list:
    """Send "0", "1", ... synchronously; returns their message ids."""
    return [producer.send(str(i).encode()) for i in range(start, start + count)]


def collect(consumers, total: int, timeout_s: float = 15.0, ack: bool = True) -> list[tuple[int, object]]:
    """Poll every consumer in turn until `total` messages came in all (AssertionError after
    `timeout_s`), then until all are idle for a second, so extra deliveries show too; returns
    (consumer index, message) pairs in arrival order."""
    got: list[tuple[int, object]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        progressed = False
        for n, consumer in enumerate(consumers):
            for msg in drain(consumer, idle_ms=200 if len(got) < total else 1000, ack=ack):
                got.append((n, msg))
                progressed = True
        if len(got) >= total and not progressed:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(got)} of {total} messages arrived in {timeout_s} s")
