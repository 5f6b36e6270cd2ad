"""Transaction requests over the raw protocol client (tests/e2e/raw.py), as a Pulsar client
with transactions enabled sends them."""

from __future__ import annotations

import time

from taureau.protocol import pb
from taureau.protocol.metadata import parse_metadata
from tests.e2e.raw import RawClient, command, entry

T = pb.BaseCommand.Type
COMMIT, ABORT = 0, 1
NOT_ALLOWED = 22
COORDINATOR_NOT_FOUND = 20
INVALID_TXN_STATUS = 21
TXN_CONFLICT = 23
TXN_NOT_FOUND = 24


class TxnClient(RawClient):
    """A raw connection with a request-id counter and one call per transaction command."""

    def __init__(self, port: int, **kwargs) -> None:
        super().__init__(port, **kwargs)
        self._next = 100

    def rid(self) -> int:
        self._next += 1
        return self._next

    def tc_connect(self, tc_id: int = 0) -> pb.CommandTcClientConnectResponse:
        self.send(command(T.TC_CLIENT_CONNECT_REQUEST, "tcClientConnectRequest", request_id=self.rid(), tc_id=tc_id))
        return self.expect(T.TC_CLIENT_CONNECT_RESPONSE).tcClientConnectResponse

    def new_txn(self, ttl_s: int = 60, tc_id: int = 0) -> tuple[int, int]:
        reply = self.new_txn_reply(ttl_s, tc_id)
        assert not reply.HasField("error"), reply
        return reply.txnid_most_bits, reply.txnid_least_bits

    def new_txn_reply(self, ttl_s: int = 60, tc_id: int = 0) -> pb.CommandNewTxnResponse:
        self.send(command(T.NEW_TXN, "newTxn", request_id=self.rid(), txn_ttl_seconds=ttl_s, tc_id=tc_id))
        return self.expect(T.NEW_TXN_RESPONSE).newTxnResponse

    def add_partition(self, txn: tuple[int, int], *topics: str) -> pb.CommandAddPartitionToTxnResponse:
        self.send(command(T.ADD_PARTITION_TO_TXN, "addPartitionToTxn", request_id=self.rid(),
                          txnid_most_bits=txn[0], txnid_least_bits=txn[1], partitions=list(topics)))
        return self.expect(T.ADD_PARTITION_TO_TXN_RESPONSE).addPartitionToTxnResponse

    def add_subscription(self, txn: tuple[int, int], topic: str, sub: str) -> pb.CommandAddSubscriptionToTxnResponse:
        self.send(command(T.ADD_SUBSCRIPTION_TO_TXN, "addSubscriptionToTxn", request_id=self.rid(),
                          txnid_most_bits=txn[0], txnid_least_bits=txn[1],
                          subscription=[pb.Subscription(topic=topic, subscription=sub)]))
        return self.expect(T.ADD_SUBSCRIPTION_TO_TXN_RESPONSE).addSubscriptionToTxnResponse

    def end(self, txn: tuple[int, int], action: int) -> pb.CommandEndTxnResponse:
        self.send(command(T.END_TXN, "endTxn", request_id=self.rid(), txnid_most_bits=txn[0],
                          txnid_least_bits=txn[1], txn_action=action))
        return self.expect(T.END_TXN_RESPONSE, timeout=20).endTxnResponse

    def send_in(self, txn: tuple[int, int] | None, body: bytes, sequence_id: int, producer_id: int = 1) -> pb.BaseCommand:
        extra = {} if txn is None else {"txnid_most_bits": txn[0], "txnid_least_bits": txn[1]}
        self.publish(entry(body, sequence_id), sequence_id, producer_id=producer_id, **extra)
        return self.expect(T.SEND_RECEIPT, T.SEND_ERROR)

    def subscribe(self, topic: str, sub: str, consumer_id: int, sub_type: int = pb.CommandSubscribe.Shared,
                  permits: int = 100) -> None:
        self.send(command(T.SUBSCRIBE, "subscribe", topic=topic, subscription=sub, consumer_id=consumer_id,
                          request_id=self.rid(), subType=sub_type, initialPosition=pb.CommandSubscribe.Earliest))
        reply = self.expect(T.SUCCESS, T.ERROR)
        assert reply.type == T.SUCCESS, reply
        self.send(command(T.FLOW, "flow", consumer_id=consumer_id, messagePermits=permits))

    def messages(self, count: int, timeout: float = 5.0) -> list[tuple[pb.MessageIdData, bytes]]:
        """The next `count` MESSAGE frames: (message id, payload body)."""
        out = []
        for _ in range(count):
            frame = self._next_message(timeout)
            out.append(frame)
        return out

    def _next_message(self, timeout: float) -> tuple[pb.MessageIdData, bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, frame in enumerate(self.pending):
                if frame.command.type == T.MESSAGE:
                    del self.pending[i]
                    return frame.command.message.message_id, _body(frame.payload)
            self.pending += [f for f in self.frames(0.2) if f.command.type != T.PING]
        raise TimeoutError(f"no MESSAGE within {timeout}s; got {self.kinds()}")

    def no_message(self, within: float = 0.7) -> None:
        try:
            got = self._next_message(within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {got}")

    def ack(self, consumer_id: int, mid: pb.MessageIdData, txn: tuple[int, int] | None = None,
            cumulative: bool = False) -> pb.CommandAckResponse:
        extra = {} if txn is None else {"txnid_most_bits": txn[0], "txnid_least_bits": txn[1]}
        ack_type = pb.CommandAck.Cumulative if cumulative else pb.CommandAck.Individual
        self.send(command(T.ACK, "ack", consumer_id=consumer_id, ack_type=ack_type,
                          message_id=[pb.MessageIdData(ledgerId=mid.ledgerId, entryId=mid.entryId)],
                          request_id=self.rid(), **extra))
        return self.expect(T.ACK_RESPONSE).ackResponse


def _body(payload: bytes | None) -> bytes:
    assert payload is not None
    return bytes(payload[parse_metadata(payload)[1]:])
