"""Producer access modes (broker.access) on their own: who is admitted, queued or fenced."""

import pytest

from taureau.broker import access
from taureau.broker.access import AccessMode, Admitted, ProducerAccess, ProducerFencedError, Queued
from taureau.broker.producer import Producer
from taureau.common.errors import ProducerBusyError
from taureau.metadata.embedded import EmbeddedMetadataStore

pytestmark = pytest.mark.anyio


def producer(name: str, mode: AccessMode) -> Producer:
    return Producer(producer_id=0, name=name, user_provided_name=True, remote_address="t", access_mode=mode)


async def test_waiting_producers_take_the_topic_in_order_with_new_epochs(monkeypatch):
    store = EmbeddedMetadataStore(None)
    acc = ProducerAccess(store, "t")
    holder = producer("holder", AccessMode.EXCLUSIVE)
    admitted, _ = await acc.admit(holder, {}, None)
    assert admitted == Admitted(0)
    with pytest.raises(ProducerBusyError):
        acc.check(producer("shared", AccessMode.SHARED), {"holder": holder}, None)
    with pytest.raises(ProducerFencedError):
        acc.check(producer("other", AccessMode.EXCLUSIVE), {"holder": holder}, None)
    first, _ = await acc.admit(producer("w1", AccessMode.WAIT_FOR_EXCLUSIVE), {"holder": holder}, None)
    second, _ = await acc.admit(producer("w2", AccessMode.WAIT_FOR_EXCLUSIVE), {"holder": holder}, None)
    assert isinstance(first, Queued) and isinstance(second, Queued)
    acc.release(holder)
    assert (await acc.promote({})).name == "w1" and first.ready.result() == 1
    assert not second.ready.done()
    # A producer fenced at epoch 0 may not come back.
    with pytest.raises(ProducerFencedError):
        acc.check(producer("holder", AccessMode.EXCLUSIVE), {}, 0)
    # The epoch is stored: a reloaded topic continues from it.
    again = ProducerAccess(store, "t")
    await again.load()
    assert again.epoch == 1
    monkeypatch.setattr(access, "MAX_WAITING", 1)
    with pytest.raises(ProducerBusyError):
        await acc.admit(producer("w3", AccessMode.WAIT_FOR_EXCLUSIVE), {"w1": producer("w1", 1)}, None)
