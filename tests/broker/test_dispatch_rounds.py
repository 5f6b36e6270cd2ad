"""Dispatch rounds without a task: new entries and permits schedule one callback for the
next loop turn, which hands out what the entry cache holds; the task for everything else."""

import asyncio
import logging

import pytest

from taureau.broker.consumer import Consumer
from taureau.broker.subscription import SubType
from taureau.protocol import pb
from taureau.protocol.metadata import encode_entry
from taureau.storage.managed_ledger.api import InitialPosition
from tests.broker.test_dispatch import Sink, settle
from tests.broker.test_idle_cost import dispatcher_tasks

pytestmark = pytest.mark.anyio


def entry(body: bytes) -> bytes:
    return encode_entry(pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1), body)


def bodies(sink: Sink) -> list[bytes]:
    return [m[3][-1:] for m in sink.messages]


async def subscribe(topic, sink: Sink, sub_type: SubType = SubType.EXCLUSIVE, cid: int = 1):
    c = Consumer(consumer_id=cid, name=f"c{cid}", sink=sink)
    sub = await topic.subscribe(
        subscription="s", consumer=c, sub_type=sub_type, initial_position=InitialPosition.EARLIEST
    )
    return sub, c


def count_rounds(sub) -> list[int]:
    """Entries handed out per dispatch round, from now on."""
    rounds: list[int] = []
    hand_out = sub.dispatcher._hand_out
    sub.dispatcher._hand_out = lambda entries: rounds.append(len(entries)) or hand_out(entries)
    return rounds


@pytest.mark.parametrize("sub_type", [SubType.EXCLUSIVE, SubType.FAILOVER, SubType.SHARED, SubType.KEY_SHARED])
async def test_a_new_entry_goes_out_at_the_next_loop_turn_without_a_task(topic, sub_type):
    sink = Sink()
    sub, c = await subscribe(topic, sink, sub_type)
    sub.flow(c, 10)
    await settle()
    for body in (b"1", b"2"):
        await topic.ledger.add_entry(entry(body))
        sub.notify_new_entries()
        # Nothing inside the publish that stored it: its SEND_RECEIPT is written first.
        assert body not in bodies(sink)
        await asyncio.sleep(0)
        assert bodies(sink)[-1:] == [body]
        assert dispatcher_tasks() == []
    assert bodies(sink) == [b"1", b"2"]


async def test_the_wakes_of_one_loop_turn_make_one_round(topic):
    """A burst of reads, each its own publish (or several FLOWs): one round, not one each."""
    sink = Sink()
    sub, c = await subscribe(topic, sink)
    for body in (b"1", b"2", b"3"):
        await topic.ledger.add_entry(entry(body))
    await settle()
    rounds = count_rounds(sub)
    for _ in range(3):
        sub.flow(c, 1)
        sub.notify_new_entries()
    await asyncio.sleep(0)
    assert bodies(sink) == [b"1", b"2", b"3"] and rounds == [3]
    assert dispatcher_tasks() == []


async def test_a_consumer_without_permits_costs_no_task(topic):
    sink = Sink()
    sub, c = await subscribe(topic, sink)
    await settle()
    await topic.ledger.add_entry(entry(b"1"))
    sub.notify_new_entries()
    await asyncio.sleep(0)
    assert sink.messages == [] and dispatcher_tasks() == []
    sub.flow(c, 1)
    await asyncio.sleep(0)
    assert bodies(sink) == [b"1"]


async def test_entries_not_in_memory_go_through_the_task(topic):
    sink = Sink()
    sub, c = await subscribe(topic, sink)
    sub.flow(c, 10)
    await settle()
    await topic.ledger.add_entry(entry(b"1"))
    await topic.ledger.add_entry(entry(b"2"))
    topic.ledger.cache.clear()
    sub.notify_new_entries()
    await asyncio.sleep(0)
    assert sink.messages == [] and len(dispatcher_tasks()) == 1
    await settle()
    assert bodies(sink) == [b"1", b"2"]


async def test_redeliveries_keep_their_place_ahead_of_new_entries(topic):
    """A Shared subscription with positions to re-send: new entries wait for the task's
    round, which sends the replayed ones first."""
    sink = Sink()
    sub, c = await subscribe(topic, sink, SubType.SHARED)
    sub.flow(c, 10)
    await settle()
    first = await topic.ledger.add_entry(entry(b"1"))
    sub.notify_new_entries()
    await settle()
    assert bodies(sink) == [b"1"]
    sub.redeliver(c, [first])
    await topic.ledger.add_entry(entry(b"2"))
    sub.notify_new_entries()
    await settle()
    assert bodies(sink) == [b"1", b"1", b"2"]
    assert [m[2] for m in sink.messages] == [0, 1, 0]  # the second "1" is a redelivery


async def test_a_wake_from_inside_a_round_waits_for_the_next_turn(topic):
    """A sink that announces new entries while it is written to (as a connection resuming
    its writes does) starts no second round inside the first."""
    depth = [0, 0]  # current, deepest
    subs = []

    class ReentrantSink(Sink):
        def send_message(self, *args, **kwargs):
            depth[0] += 1
            depth[1] = max(depth[1], depth[0])
            super().send_message(*args, **kwargs)
            subs[0].notify_new_entries()
            depth[0] -= 1

    sink = ReentrantSink()
    sub, c = await subscribe(topic, sink)
    subs.append(sub)
    sub.flow(c, 10)
    await settle()
    for body in (b"1", b"2", b"3"):
        await topic.ledger.add_entry(entry(body))
    sub.notify_new_entries()
    await settle()
    assert bodies(sink) == [b"1", b"2", b"3"] and depth[1] == 1


async def test_a_failed_round_loses_no_entry(topic, caplog):
    """A round that fails after reading its entries un-reads them: the retry delivers them."""
    sink = Sink()
    sub, c = await subscribe(topic, sink)
    sub.flow(c, 10)
    await settle()
    calls = []
    entry_info = sub.dispatcher.entry_info

    def failing_once(e):
        calls.append(e.position)
        if len(calls) == 1:
            raise RuntimeError("entry_info failed")
        return entry_info(e)

    sub.dispatcher.entry_info = failing_once
    with caplog.at_level(logging.DEBUG, logger="taureau.broker.dispatch.base"):
        await topic.ledger.add_entry(entry(b"1"))
        sub.notify_new_entries()
        await asyncio.sleep(0)
    assert "entry_info failed" in caplog.text and sink.messages == []
    await settle()
    assert bodies(sink) == [b"1"]
    assert calls[0] == calls[1]  # the same entry, read again
