"""Pulsar transactions over the wire (raw protocol, as a client with transactions enabled
speaks it): commit and abort of produced messages and acknowledgements, pending acks held from
other consumers, conflicts, timeouts, bad input, a restart, and the disabled coordinator."""

from __future__ import annotations

import json

import httpx
import pytest

from taureau.protocol import pb
from tests.e2e.harness import Standalone
from tests.e2e.raw import bad_string
from tests.e2e.test_admin import run_cli
from tests.e2e.txn_raw import (
    ABORT,
    COMMIT,
    COORDINATOR_NOT_FOUND,
    NOT_ALLOWED,
    TXN_CONFLICT,
    TXN_NOT_FOUND,
    T,
    TxnClient,
)

STANDALONE = {"args": ["--transaction-coordinator-enabled"]}


@pytest.fixture
def raw(standalone):
    with TxnClient(standalone.broker_port) as client:
        yield client


def _produce_plain(raw: TxnClient, topic: str, *bodies: bytes) -> None:
    assert raw.producer(topic).type == T.PRODUCER_SUCCESS
    for seq, body in enumerate(bodies):
        assert raw.send_in(None, body, seq).type == T.SEND_RECEIPT


def test_the_coordinator_is_found_as_pulsar_clients_look_for_it(raw):
    raw.send(pb.BaseCommand(type=T.PARTITIONED_METADATA, partitionMetadata=pb.CommandPartitionedTopicMetadata(
        topic="persistent://pulsar/system/transaction_coordinator_assign", request_id=1)))
    assert raw.expect(T.PARTITIONED_METADATA_RESPONSE).partitionMetadataResponse.partitions == 16
    raw.send(pb.BaseCommand(type=T.LOOKUP, lookupTopic=pb.CommandLookupTopic(
        topic="persistent://pulsar/system/transaction_coordinator_assign-partition-15", request_id=2)))
    assert raw.expect(T.LOOKUP_RESPONSE).lookupTopicResponse.response == pb.CommandLookupTopicResponse.Connect
    for tc in (0, 15):
        assert not raw.tc_connect(tc).HasField("error")
    refused = raw.tc_connect(16)
    assert refused.error == COORDINATOR_NOT_FOUND
    assert "does not exist" in refused.message


def test_commit_publishes_the_messages_and_applies_the_acks(raw, topic):
    _produce_plain(raw, topic, b"m0")
    raw.subscribe(topic, "s", consumer_id=1)
    ((mid0, body0),) = raw.messages(1)
    assert body0 == b"m0"
    txn = raw.new_txn()
    assert not raw.add_partition(txn, topic).HasField("error")
    assert not raw.add_subscription(txn, topic, "s").HasField("error")
    for seq, body in ((1, b"t1"), (2, b"t2")):
        receipt = raw.send_in(txn, body, seq)
        assert receipt.type == T.SEND_RECEIPT and receipt.send_receipt.sequence_id == seq
    assert not raw.ack(1, mid0, txn).HasField("error")
    raw.no_message()  # nothing of the transaction is visible before the commit
    done = raw.end(txn, COMMIT)
    assert not done.HasField("error") and (done.txnid_most_bits, done.txnid_least_bits) == txn
    assert [body for _, body in raw.messages(2)] == [b"t1", b"t2"]
    # The ack was applied: a fresh consumer of the subscription gets the committed ones only.
    raw.send(pb.BaseCommand(type=T.CLOSE_CONSUMER, close_consumer=pb.CommandCloseConsumer(consumer_id=1, request_id=9)))
    raw.expect(T.SUCCESS)
    raw.subscribe(topic, "s", consumer_id=2)
    assert sorted(body for _, body in raw.messages(2)) == [b"t1", b"t2"]
    raw.no_message()


@pytest.mark.parametrize("sub_type", [pb.CommandSubscribe.Shared, pb.CommandSubscribe.Exclusive,
                                      pb.CommandSubscribe.Failover, pb.CommandSubscribe.Key_Shared])
def test_abort_discards_the_messages_and_redelivers_the_acked_ones(raw, topic, sub_type):
    _produce_plain(raw, topic, b"m0")
    raw.subscribe(topic, "s", consumer_id=1, sub_type=sub_type)
    ((mid0, _),) = raw.messages(1)
    txn = raw.new_txn()
    raw.add_partition(txn, topic)
    assert raw.send_in(txn, b"never", 1).type == T.SEND_RECEIPT
    assert not raw.ack(1, mid0, txn).HasField("error")
    assert not raw.end(txn, ABORT).HasField("error")
    ((again, body),) = raw.messages(1)  # the acked message comes back
    assert body == b"m0" and (again.ledgerId, again.entryId) == (mid0.ledgerId, mid0.entryId)
    raw.no_message()  # and the aborted one never shows
    assert raw.send_in(None, b"after", 2).type == T.SEND_RECEIPT
    assert [body for _, body in raw.messages(1)] == [b"after"]


def test_a_pending_ack_is_held_from_the_other_consumers_until_abort(standalone, raw, topic):
    _produce_plain(raw, topic, b"m0")
    raw.subscribe(topic, "s", consumer_id=1)
    ((mid0, _),) = raw.messages(1)
    txn = raw.new_txn()
    raw.ack(1, mid0, txn)
    with TxnClient(standalone.broker_port) as other:
        other.subscribe(topic, "s", consumer_id=1)
        raw.close()  # the acking consumer leaves: its unacked messages go to the others...
        other.no_message(1.0)  # ...but not the one its transaction acknowledged
        assert not other.end(txn, ABORT).HasField("error")
        assert [body for _, body in other.messages(1)] == [b"m0"]


def test_acknowledging_what_another_transaction_holds_is_a_conflict(raw, topic):
    _produce_plain(raw, topic, b"m0", b"m1")
    raw.subscribe(topic, "s", consumer_id=1)
    (mid0, _), (mid1, _) = raw.messages(2)
    first, second = raw.new_txn(), raw.new_txn()
    assert not raw.ack(1, mid0, first).HasField("error")
    conflict = raw.ack(1, mid0, second)
    assert conflict.error == TXN_CONFLICT and "already acknowledged in transaction" in conflict.message
    assert not raw.ack(1, mid1).HasField("error")  # acknowledged outside any transaction
    assert raw.ack(1, mid1, second).error == TXN_CONFLICT
    assert not raw.end(second, COMMIT).HasField("error")  # the refused acks left nothing
    assert not raw.end(first, COMMIT).HasField("error")
    raw.no_message()


def txn_record(standalone, txn: tuple[int, int]) -> dict:
    reply = httpx.get(f"{standalone.admin_url}/admin/v3/transactions/transactionMetadata/{txn[0]}/{txn[1]}",
                      timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_bad_requests_get_pulsars_errors_and_the_connection_keeps_serving(standalone, raw, topic):
    unknown = (0, 987654)
    assert raw.end(unknown, COMMIT).error == TXN_NOT_FOUND
    assert raw.add_partition(unknown, topic).error == TXN_NOT_FOUND
    assert raw.add_subscription(unknown, topic, "s").error == TXN_NOT_FOUND
    assert raw.new_txn_reply(tc_id=99).error == COORDINATOR_NOT_FOUND
    assert raw.producer(topic).type == T.PRODUCER_SUCCESS
    refused = raw.send_in(unknown, b"x", 0)  # a transaction never opened
    assert refused.type == T.SEND_ERROR and refused.send_error.error == NOT_ALLOWED
    assert "TransactionNotFound" in refused.send_error.message
    txn = raw.new_txn()
    refused = raw.send_in(txn, b"x", 1)  # its topic was never added to the transaction
    assert refused.type == T.SEND_ERROR and "ADD_PARTITION_TO_TXN" in refused.send_error.message
    assert raw.add_partition(txn, "persistent://bad//name").error == 17  # InvalidTopicName
    not_utf8 = bad_string(pb.CommandAddPartitionToTxn(
        request_id=4, txnid_most_bits=txn[0], txnid_least_bits=txn[1]), "partitions")
    raw.send(pb.BaseCommand(type=T.ADD_PARTITION_TO_TXN, addPartitionToTxn=not_utf8))
    error = raw.expect(T.ERROR).error
    assert error.request_id == 4 and error.error == NOT_ALLOWED and "not valid UTF-8" in error.message
    raw.send(pb.BaseCommand(type=T.END_TXN, endTxn=pb.CommandEndTxn(
        request_id=5, txnid_most_bits=txn[0], txnid_least_bits=txn[1])))
    assert raw.expect(T.END_TXN_RESPONSE).endTxnResponse.error == NOT_ALLOWED  # no txn_action
    raw.send(pb.BaseCommand(type=T.END_TXN_ON_PARTITION, endTxnOnPartition=pb.CommandEndTxnOnPartition(
        request_id=6, txnid_most_bits=txn[0], txnid_least_bits=txn[1], topic=topic, txn_action=0)))
    assert raw.expect(T.END_TXN_ON_PARTITION_RESPONSE).endTxnOnPartitionResponse.error == NOT_ALLOWED
    assert raw.tc_connect(0).HasField("error") is False  # the connection kept serving
    assert txn_record(standalone, txn)["producedPartitions"] == []  # nothing refused was stored
    raw.subscribe(topic, "s", consumer_id=1)
    assert not raw.end(txn, ABORT).HasField("error")
    assert raw.end(txn, ABORT).error == TXN_NOT_FOUND  # ended transactions are forgotten
    assert raw.end(txn, COMMIT).error == TXN_NOT_FOUND  # commit after abort
    assert raw.add_partition(txn, topic).error == TXN_NOT_FOUND  # ADD_PARTITION after the end
    done = raw.new_txn()
    raw.add_partition(done, topic)
    assert raw.send_in(done, b"ok", 2).type == T.SEND_RECEIPT
    assert not raw.end(done, COMMIT).HasField("error")
    assert raw.end(done, COMMIT).error == TXN_NOT_FOUND  # double commit
    assert raw.send_in(done, b"late", 3).type == T.SEND_ERROR  # SEND after the commit
    ((mid, body),) = raw.messages(1)  # nothing refused was stored; readers read on
    assert body == b"ok"
    assert raw.ack(1, mid, done).error == TXN_NOT_FOUND
    cumulative = raw.ack(1, mid, raw.new_txn(), cumulative=True)
    assert cumulative.error == NOT_ALLOWED and "cumulative" in cumulative.message
    raw.no_message()


def test_a_transaction_not_ended_in_time_is_aborted(raw, topic):
    _produce_plain(raw, topic, b"m0")
    raw.subscribe(topic, "s", consumer_id=1)
    ((mid0, _),) = raw.messages(1)
    txn = raw.new_txn(ttl_s=1)
    raw.add_partition(txn, topic)
    assert raw.send_in(txn, b"late", 1).type == T.SEND_RECEIPT
    raw.ack(1, mid0, txn)
    assert [body for _, body in raw.messages(1, timeout=5)] == [b"m0"]  # redelivered at the abort
    assert raw.end(txn, COMMIT).error == TXN_NOT_FOUND
    raw.no_message()


def test_admin_rest_shows_the_coordinator_and_a_transaction(standalone, raw, topic):
    txn = raw.new_txn()
    raw.add_partition(txn, topic)
    base = f"{standalone.admin_url}/admin/v3/transactions"
    stats = httpx.get(f"{base}/coordinatorStats", timeout=10)
    assert stats.status_code == 200 and stats.json()["openTransactions"] >= 1
    meta = httpx.get(f"{base}/transactionMetadata/{txn[0]}/{txn[1]}", timeout=10)
    assert meta.status_code == 200, meta.text
    assert meta.json()["status"] == "OPEN" and meta.json()["producedPartitions"] == [topic]
    shown = run_cli(standalone, "admin", "transactions", "transaction-metadata", "-m", str(txn[0]), "-l", str(txn[1]))
    assert shown.returncode == 0 and json.loads(shown.stdout)["txnId"] == f"({txn[0]},{txn[1]})"
    raw.end(txn, ABORT)
    gone = httpx.get(f"{base}/transactionMetadata/{txn[0]}/{txn[1]}", timeout=10)
    assert gone.status_code == 404 and "not found" in gone.json()["reason"]
    missing = run_cli(standalone, "admin", "transactions", "transaction-metadata", "-m", str(txn[0]), "-l", str(txn[1]))
    assert missing.returncode != 0 and "404" in missing.stderr
    stats = run_cli(standalone, "admin", "transactions", "coordinator-stats")
    assert stats.returncode == 0 and json.loads(stats.stdout)["coordinators"] == 16


def test_a_restart_keeps_committed_and_open_transactions(tmp_path):
    topic = "persistent://public/default/txn-restart"
    server = Standalone(tmp_path, "--transaction-coordinator-enabled").start()
    try:
        with TxnClient(server.broker_port) as raw:
            _produce_plain(raw, topic, b"m0", b"m1")
            raw.subscribe(topic, "s", consumer_id=1, sub_type=pb.CommandSubscribe.Shared)
            (mid0, _), (mid1, _) = raw.messages(2)
            committed, open_one = raw.new_txn(), raw.new_txn(ttl_s=600)
            for txn, body, seq in ((committed, b"c", 5), (open_one, b"o", 6)):
                raw.add_partition(txn, topic)
                assert raw.send_in(txn, body, seq).type == T.SEND_RECEIPT
            raw.ack(1, mid0, committed)
            raw.ack(1, mid1, open_one)
            assert not raw.end(committed, COMMIT).HasField("error")
            assert [body for _, body in raw.messages(1)] == [b"c"]
        server.kill()  # no chance to save anything more
        server.restart()
        with TxnClient(server.broker_port) as raw:
            raw.subscribe(topic, "s", consumer_id=1)
            # m0 stays acknowledged (committed); m1 stays held by the open transaction.
            assert [body for _, body in raw.messages(1)] == [b"c"]
            raw.no_message()
            assert not raw.end(open_one, COMMIT).HasField("error")
            assert [body for _, body in raw.messages(1)] == [b"o"]
            raw.no_message()
            assert raw.end(committed, COMMIT).error == TXN_NOT_FOUND
    finally:
        server.stop()


def test_without_the_coordinator_transactions_are_refused(tmp_path):
    topic = "persistent://public/default/txn-disabled"
    server = Standalone(tmp_path).start()
    try:
        with TxnClient(server.broker_port) as raw:
            reply = raw.tc_connect(0)
            assert reply.error == NOT_ALLOWED and reply.message == "Transactions are not enabled."
            assert raw.new_txn_reply().error == NOT_ALLOWED
            _produce_plain(raw, topic, b"m0")
            refused = raw.send_in((0, 1), b"x", 1)
            assert refused.type == T.SEND_ERROR and refused.send_error.error == NOT_ALLOWED
            raw.subscribe(topic, "s", consumer_id=1)
            ((mid, body),) = raw.messages(1)
            assert body == b"m0"  # the refused SEND left nothing
            assert raw.ack(1, mid, (0, 1)).error == NOT_ALLOWED
            assert not raw.ack(1, mid).HasField("error")
            stats = httpx.get(f"{server.admin_url}/admin/v3/transactions/coordinatorStats", timeout=10)
            assert stats.status_code == 503 and "transactionCoordinatorEnabled" in stats.json()["reason"]
    finally:
        assert server.stop() == 0

