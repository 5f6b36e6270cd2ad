"""The transaction commands of a connection: TC_CLIENT_CONNECT_REQUEST, NEW_TXN,
ADD_PARTITION_TO_TXN, ADD_SUBSCRIPTION_TO_TXN, END_TXN, and ACKs inside a transaction.

control.py registers HANDLERS with its command table (so the UTF-8 check of every command
applies) and hands ACKs that carry a transaction id to `ack`. Each request is answered with its
own response type, the error fields set on failure (the client matches it by request id):
NotAllowedError while the coordinator is disabled, as a Pulsar broker does.
END_TXN_ON_PARTITION / END_TXN_ON_SUBSCRIPTION are Pulsar's broker-to-broker commands; here the
coordinator calls the topics itself, so a client sending them is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from taureau.broker.error_codes import server_error
from taureau.broker.session import Session
from taureau.broker.transactions.coordinator import TransactionCoordinator
from taureau.broker.transactions.model import TransactionsDisabledError, TxnId
from taureau.common.errors import NotAllowedError, TaureauError
from taureau.protocol import pb
from taureau.protocol.commands import encode_command
from taureau.storage.position import Position

log = logging.getLogger(__name__)

T = pb.BaseCommand.Type
_U64 = 2**64 - 1
Handler = Callable[[Session, pb.BaseCommand], Awaitable[None]]


def _response(kind: int, field: str, request_id: int, txn: TxnId | None, exc: BaseException | None) -> bytes:
    command = pb.BaseCommand(type=cast(Any, kind))
    body = getattr(command, field)
    body.request_id = request_id & _U64
    if txn is not None:
        body.txnid_most_bits = txn.most & _U64
        body.txnid_least_bits = txn.least & _U64
    if exc is not None:
        body.error = cast(Any, server_error(exc))
        body.message = str(exc) or type(exc).__name__
    return encode_command(command)


def _coordinator(session: Session) -> TransactionCoordinator:
    coordinator = session.service.transactions
    if coordinator is None:
        raise TransactionsDisabledError("Transactions are not enabled.")
    return coordinator


def _txn_of(body: Any) -> TxnId:
    return TxnId(body.txnid_most_bits, body.txnid_least_bits)


async def _answer(
    session: Session, kind: int, field: str, request_id: int, txn: TxnId | None,
    work: Callable[[TransactionCoordinator], Awaitable[TxnId | None]],
) -> None:
    """Run `work` and answer with response type `kind` (its error fields set on failure)."""
    try:
        result = await work(_coordinator(session))
        session.write(_response(kind, field, request_id, result or txn, None))
    except Exception as exc:
        if not isinstance(exc, TaureauError):
            log.exception("%s %d from %s failed", T.Name(kind), request_id, session.remote_address)
        else:
            log.info("%s %d from %s refused: %s", T.Name(kind), request_id, session.remote_address, exc)
        session.write(_response(kind, field, request_id, txn, exc))


async def tc_client_connect(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.tcClientConnectRequest

    async def work(tc: TransactionCoordinator) -> None:
        tc.check_coordinator(req.tc_id)

    await _answer(session, T.TC_CLIENT_CONNECT_RESPONSE, "tcClientConnectResponse", req.request_id, None, work)


async def new_txn(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.newTxn

    async def work(tc: TransactionCoordinator) -> TxnId:
        return await tc.new_txn(req.tc_id, req.txn_ttl_seconds, owner=session, role=session.role)

    await _answer(session, T.NEW_TXN_RESPONSE, "newTxnResponse", req.request_id, None, work)


async def add_partition(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.addPartitionToTxn
    txn = _txn_of(req)

    async def work(tc: TransactionCoordinator) -> None:
        await tc.add_partitions(txn, list(req.partitions), session.role)

    await _answer(session, T.ADD_PARTITION_TO_TXN_RESPONSE, "addPartitionToTxnResponse", req.request_id, txn, work)


async def add_subscription(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.addSubscriptionToTxn
    txn = _txn_of(req)

    async def work(tc: TransactionCoordinator) -> None:
        await tc.add_subscriptions(txn, [(s.topic, s.subscription) for s in req.subscription], session.role)

    await _answer(
        session, T.ADD_SUBSCRIPTION_TO_TXN_RESPONSE, "addSubscriptionToTxnResponse", req.request_id, txn, work
    )


async def end_txn(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.endTxn
    txn = _txn_of(req)

    async def work(tc: TransactionCoordinator) -> None:
        if not req.HasField("txn_action"):
            raise NotAllowedError("END_TXN without txn_action")
        await tc.end(txn, commit=req.txn_action == pb.TxnAction.Value("COMMIT"), role=session.role)

    await _answer(session, T.END_TXN_RESPONSE, "endTxnResponse", req.request_id, txn, work)


def _broker_internal(kind: int, field: str, body_field: str) -> Handler:
    async def refuse(session: Session, cmd: pb.BaseCommand) -> None:
        req = getattr(cmd, body_field)

        async def work(tc: TransactionCoordinator) -> None:
            raise NotAllowedError(f"{T.Name(cmd.type)} is internal to this broker's transaction coordinator")

        await _answer(session, kind, field, req.request_id, _txn_of(req), work)

    return refuse


HANDLERS: dict[int, Handler] = {
    T.TC_CLIENT_CONNECT_REQUEST: tc_client_connect,
    T.NEW_TXN: new_txn,
    T.ADD_PARTITION_TO_TXN: add_partition,
    T.ADD_SUBSCRIPTION_TO_TXN: add_subscription,
    T.END_TXN: end_txn,
    T.END_TXN_ON_PARTITION: _broker_internal(
        T.END_TXN_ON_PARTITION_RESPONSE, "endTxnOnPartitionResponse", "endTxnOnPartition"
    ),
    T.END_TXN_ON_SUBSCRIPTION: _broker_internal(
        T.END_TXN_ON_SUBSCRIPTION_RESPONSE, "endTxnOnSubscriptionResponse", "endTxnOnSubscription"
    ),
}


def in_transaction(req: pb.CommandAck) -> bool:
    return req.HasField("txnid_most_bits") or req.HasField("txnid_least_bits")


async def ack(session: Session, req: pb.CommandAck) -> None:
    """An ACK inside a transaction: its positions are held until the transaction ends.
    Individual acks of whole entries only (cumulative and batch-index acks in a transaction
    are refused with NotAllowedError)."""
    txn = _txn_of(req)
    error: BaseException | None = None
    try:
        tc = _coordinator(session)
        _, sub, topic = session.consumer(req.consumer_id)
        if req.ack_type == pb.CommandAck.Cumulative:
            raise NotAllowedError("cumulative acknowledgement in a transaction is not supported")
        if any(word for mid in req.message_id for word in mid.ack_set):
            raise NotAllowedError("batch-index acknowledgement in a transaction is not supported")
        positions = [Position(mid.ledgerId, mid.entryId) for mid in req.message_id]
        await tc.ack(txn, str(topic.name), sub, positions)
    except Exception as exc:
        error = exc
        if not isinstance(exc, TaureauError):
            log.exception("transactional ack from %s failed", session.remote_address)
        else:
            log.info("transactional ack from %s refused: %s", session.remote_address, exc)
    if req.HasField("request_id"):
        body = pb.CommandAckResponse(
            consumer_id=req.consumer_id, request_id=req.request_id,
            txnid_most_bits=txn.most, txnid_least_bits=txn.least,
        )
        if error is not None:
            body.error = cast(Any, server_error(error))
            body.message = str(error) or type(error).__name__
        session.write(encode_command(pb.BaseCommand(type=T.ACK_RESPONSE, ackResponse=body)))

