"""Producer: one client producer attached to a topic."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable

from taureau.broker.entries import producer_info

# Pulsar's replicatorPrefix: a producer so named is another cluster's replicator.
REPLICATOR_PREFIX = "pulsar.repl."

# Names the broker generates must never repeat across restarts, since de-duplication keys on
# (producer name, sequence id): a random per-process prefix plus a counter.
_PREFIX = f"standalone-{secrets.token_hex(3)}"
_COUNTER = itertools.count()


def generate_producer_name() -> str:
    return f"{_PREFIX}-{next(_COUNTER)}"


class Producer:
    def __init__(
        self,
        *,
        producer_id: int,
        name: str,
        user_provided_name: bool,
        remote_address: str,
        metadata: dict[str, str] | None = None,
        access_mode: int = 0,
    ) -> None:
        self.producer_id = producer_id
        self.name = name
        self.user_provided_name = user_provided_name
        self.remote_address = remote_address
        self.metadata = metadata or {}
        self.access_mode = access_mode  # 0 Shared, 1 Exclusive, 2 WaitForExclusive, 3 ExclusiveWithFencing
        self.schema_version = b""  # of the schema it registered; b"": it sent none
        self.ready = True  # False while it waits for exclusive access: its SENDs are refused
        self.connected_since = time.time()
        self.msg_in = 0
        self.bytes_in = 0
        # Set by the connection: asks the client to drop and re-create this producer.
        self.disconnect: Callable[[], None] | None = None

    def dedup_name(self, data: bytes) -> str:
        """The name de-duplication keys this producer's entry on: its own, but for another
        cluster's replicator, whose entries keep their original producer and sequence ids
        (a resend after the replicator's restart is then recognised, as Pulsar does)."""
        if self.name.startswith(REPLICATOR_PREFIX):
            return producer_info(data)[0]
        return self.name

    def stats(self) -> dict:
        return {
            "producerName": self.name,
            "producerId": self.producer_id,
            "msgInCounter": self.msg_in,
            "bytesInCounter": self.bytes_in,
            "address": self.remote_address,
            "accessMode": ["Shared", "Exclusive", "WaitForExclusive", "ExclusiveWithFencing"][
                self.access_mode
            ],
            "connectedSince": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.connected_since)),
            "metadata": self.metadata,
        }
