"""Producers an instance publishes through: the output topic, `context.publish`, the log topic.

Output producers follow Pulsar's Python runtime (batching, LZ4, no send timeout, block when
the queue is full) except for the batching delay: 1 ms instead of 10 ms by default, because a
chain of functions pays that delay at every hop (`producerConfig.batchingMaxPublishDelayMs`
sets it). An effectively-once output producer is not batched: its sequence ids are the
input's positions and the broker de-duplicates on them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pulsar

_COMPRESSION = {
    "NONE": pulsar.CompressionType.NONE,
    "LZ4": pulsar.CompressionType.LZ4,
    "ZLIB": pulsar.CompressionType.ZLib,
    "ZSTD": pulsar.CompressionType.ZSTD,
    "SNAPPY": pulsar.CompressionType.SNAPPY,
}

SendCallback = Callable[[pulsar.Result, Any], None]


class Publisher:
    """One producer per (topic, producer name), created on first use; thread-safe."""

    def __init__(self, client: pulsar.Client, producer_config: dict[str, Any], properties: dict[str, str]) -> None:
        self._client = client
        self._properties = properties  # identify the instance in the broker's producer stats
        self._delay_ms = int(producer_config.get("batchingMaxPublishDelayMs", 1))
        self._max_pending = int(producer_config.get("maxPendingMessages", 1000))
        compression = str(producer_config.get("compressionType", "LZ4")).upper()
        self._compression = _COMPRESSION.get(compression, pulsar.CompressionType.LZ4)
        self._batch_by_key = str(producer_config.get("batchBuilder", "DEFAULT")).upper() == "KEY_BASED"
        self._producers: dict[tuple[str, str | None], pulsar.Producer] = {}  # guarded by _lock
        self._lock = threading.Lock()

    @property
    def client(self) -> pulsar.Client:
        return self._client

    def producer(self, topic: str, *, name: str | None = None, batching: bool = True,
                 compression: pulsar.CompressionType | None = None) -> pulsar.Producer:
        key = (topic, name)
        with self._lock:
            producer = self._producers.get(key)
            if producer is None:
                producer = self._producers[key] = self._client.create_producer(
                    topic,
                    producer_name=name,
                    batching_enabled=batching,
                    batching_max_publish_delay_ms=self._delay_ms,
                    batching_type=pulsar.BatchingType.KeyBased if self._batch_by_key else pulsar.BatchingType.Default,
                    compression_type=self._compression if compression is None else compression,
                    send_timeout_millis=0,
                    block_if_queue_full=True,
                    max_pending_messages=self._max_pending,
                    properties=self._properties,
                )
            return producer

    def flush(self) -> None:
        with self._lock:
            producers = list(self._producers.values())
        for producer in producers:
            try:
                producer.flush()
            except pulsar.PulsarException:
                pass

    def close(self) -> None:
        with self._lock:
            producers, self._producers = list(self._producers.values()), {}
        for producer in producers:
            try:
                producer.close()
            except pulsar.PulsarException:
                pass


try:  # the client's own message builder: the public send_async re-checks ten arguments per call
    from _pulsar import MessageBuilder as _MessageBuilder
except ImportError:  # pragma: no cover - a client build without it
    _MessageBuilder = None


def send_fast(producer: pulsar.Producer, payload: bytes, callback: SendCallback, properties: dict[str, str],
              partition_key: str | None = None, sequence_id: int | None = None) -> None:
    """producer.send_async for the output hot path, with arguments the caller built right."""
    raw = getattr(producer, "_producer", None)
    if _MessageBuilder is None or raw is None:
        producer.send_async(payload, callback, properties=properties, partition_key=partition_key,
                            sequence_id=sequence_id)
        return
    builder = _MessageBuilder()
    builder.content(payload)
    for key, value in properties.items():
        builder.property(key, value)
    if partition_key:
        builder.partition_key(partition_key)
    if sequence_id is not None:
        builder.sequence_id(sequence_id)
    raw.send_async(builder.build(), callback)


def compression_named(name: Any) -> pulsar.CompressionType | None:
    if name is None or isinstance(name, pulsar.CompressionType):
        return name
    return _COMPRESSION.get(str(name).upper())
