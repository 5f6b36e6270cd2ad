"""A topic that failed to store refuses new producers for a while (clients back off)."""

import pytest

from taureau.broker.producer import Producer
from taureau.broker.topic import PublishItem
from taureau.common.errors import MetadataStoreClosedError, ServiceNotReadyError

pytestmark = pytest.mark.anyio


def _producer(producer_id: int) -> Producer:
    return Producer(producer_id=producer_id, name=f"p{producer_id}", user_provided_name=True, remote_address="t")


async def test_a_failed_metadata_write_of_the_add_path_holds_new_producers_off(topic, monkeypatch):
    async def full_disk(datas):
        raise MetadataStoreClosedError("metadata log failed earlier: [Errno 28] No space left on device")

    topic.check_producer(_producer(1))  # admitted before the failure
    monkeypatch.setattr(topic.ledger, "add_entries", full_disk)
    item = PublishItem(_producer(1), b"x", 0, 0, 1)
    with pytest.raises(MetadataStoreClosedError):
        await topic.publish_many([item])
    with pytest.raises(ServiceNotReadyError, match="cannot store messages now"):
        topic.check_producer(_producer(2))
