"""/admin/v3/transactions: the coordinator's stats and one transaction's metadata, as Pulsar's
TransactionsBase serves them (503 while the coordinator is disabled, as Pulsar)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from taureau.broker.service import BrokerService
from taureau.broker.transactions.model import TransactionNotFoundError, TxnId, TxnMeta

router = APIRouter()

_DISABLED = "This Broker is not configured with transactionCoordinatorEnabled=true."


def _service(request: Request) -> BrokerService:
    return request.app.state.service


def _metadata(meta: TxnMeta) -> dict:
    acked: dict[str, dict[str, int]] = {}
    for topic, subscription in meta.subscriptions:
        acked.setdefault(topic, {})[subscription] = 0
    for key, positions in meta.acks.items():
        topic, _, subscription = key.partition("\x00")
        acked.setdefault(topic, {})[subscription] = len(positions)
    return {
        "txnId": str(meta.txn),
        "status": meta.status.value,
        "timeoutAt": meta.timeout_at_ms,
        "producedPartitions": meta.partitions,
        "ackedPartitions": acked,  # topic -> subscription -> positions acknowledged (pending)
    }


@router.get("/admin/v3/transactions/coordinatorStats")
async def coordinator_stats(request: Request) -> JSONResponse:
    coordinator = _service(request).transactions
    if coordinator is None:
        return JSONResponse({"reason": _DISABLED}, status_code=503)
    stats = coordinator.stats()
    stats["transactions"] = [_metadata(meta) for meta in coordinator.open_transactions()]
    return JSONResponse(stats)


@router.get("/admin/v3/transactions/transactionMetadata/{most}/{least}")
async def transaction_metadata(request: Request, most: int, least: int) -> JSONResponse:
    coordinator = _service(request).transactions
    if coordinator is None:
        return JSONResponse({"reason": _DISABLED}, status_code=503)
    try:
        meta = coordinator.status(TxnId(most, least))
    except TransactionNotFoundError as exc:
        return JSONResponse({"reason": str(exc)}, status_code=404)
    return JSONResponse(_metadata(meta))
