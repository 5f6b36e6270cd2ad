"""ManagedLedgerFactory: opens one ManagedLedgerImpl per name over a metadata store and a ledger client."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from taureau.common.errors import ManagedLedgerClosedError, ManagedLedgerNotFoundError, StorageArgumentError
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger.api import LedgerClient
from taureau.storage.managed_ledger import meta
from taureau.storage.managed_ledger.api import ManagedLedgerConfig, ManagedLedgerFactoryBase
from taureau.storage.managed_ledger.budget import CacheBudget
from taureau.storage.managed_ledger.ledger import ManagedLedgerImpl
from taureau.storage.managed_ledger.save_ticker import SaveTicker

SWEEP_SLICE = 200  # managed ledgers visited per loop turn by a periodic sweep


def check_config(config: ManagedLedgerConfig) -> ManagedLedgerConfig:
    """Return config if its limits make sense, else raise StorageArgumentError."""
    problems = []
    if config.max_entries_per_ledger < 1:
        problems.append("max_entries_per_ledger < 1")
    if config.max_size_per_ledger < 1:
        problems.append("max_size_per_ledger < 1")
    if config.max_ledger_age_s <= 0:
        problems.append("max_ledger_age_s <= 0")
    if not 0 <= config.min_ledger_rollover_s <= config.max_ledger_age_s:
        problems.append("need 0 <= min_ledger_rollover_s <= max_ledger_age_s")
    if config.cache_size_bytes < 0:
        problems.append("cache_size_bytes < 0")
    if not 1 <= config.ack_quorum <= config.write_quorum <= config.ensemble_size:
        problems.append("need 1 <= ack_quorum <= write_quorum <= ensemble_size")
    if config.retention_time_s < -1 or config.retention_size_bytes < -1:
        problems.append("retention below -1")
    if problems:
        raise StorageArgumentError("bad managed ledger config: " + ", ".join(problems))
    return config


class ManagedLedgerFactory(ManagedLedgerFactoryBase):
    """Opens managed ledgers; one instance per name, shared by concurrent openers.

    >>> factory = ManagedLedgerFactory(store, MemoryLedgerClient())
    >>> ml = await factory.open("public/default/persistent/orders")
    """

    def __init__(
        self,
        metadata: MetadataStore,
        ledgers: LedgerClient,
        default_config: ManagedLedgerConfig | None = None,
        *,
        cursor_persist_interval_s: float = 0.1,
        trim_interval_s: float = 60.0,
        cache_budget_bytes: int | None = None,
    ) -> None:
        self._store = metadata
        self._client = ledgers
        self._default = check_config(default_config or ManagedLedgerConfig())
        if cache_budget_bytes is not None and cache_budget_bytes < 0:
            raise StorageArgumentError("cache_budget_bytes < 0")
        # One entry cache budget for every managed ledger opened here (None: each only
        # bounded by its own config.cache_size_bytes).
        self.cache_budget = CacheBudget(cache_budget_bytes) if cache_budget_bytes is not None else None
        # One timer for the rate-limited saves of every cursor opened here (save_ticker.py).
        self.cursor_save_ticker = SaveTicker(cursor_persist_interval_s)
        self._ml_options = {
            "cursor_persist_interval_s": cursor_persist_interval_s,
            "cache_budget": self.cache_budget,
            "cursor_save_ticker": self.cursor_save_ticker,
        }
        self._trim_interval_s = trim_interval_s
        self._trim_sweep: asyncio.Task | None = None  # started with the first open
        self._opened: dict[str, ManagedLedgerImpl] = {}  # open managed ledgers by name
        self._opening: dict[str, asyncio.Task] = {}  # opens in progress, shared by callers
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ManagedLedgerClosedError("managed ledger factory is closed")

    @property
    def ledgers(self) -> LedgerClient:
        return self._client

    async def open(self, name: str, config: ManagedLedgerConfig | None = None) -> ManagedLedgerImpl:
        self._check_open()
        meta.ledger_path(name)  # validates the name
        ml = self._opened.get(name)
        if ml is not None:
            return ml
        task = self._opening.get(name)
        if task is None:
            cfg = check_config(replace(config or self._default))
            task = asyncio.get_running_loop().create_task(self._open(name, cfg))
            self._opening[name] = task
        return await asyncio.shield(task)

    async def _open(self, name: str, config: ManagedLedgerConfig) -> ManagedLedgerImpl:
        try:
            ml = await ManagedLedgerImpl.open(
                name, config, self._store, self._client, on_closed=self._forget, **self._ml_options
            )
            self._opened[name] = ml
            if self._trim_sweep is None:
                self._trim_sweep = asyncio.get_running_loop().create_task(self._sweep_trims())
            return ml
        finally:
            del self._opening[name]

    async def _sweep_trims(self) -> None:
        """One task for every managed ledger's periodic trim (a timer per ledger was 5,000
        timers for 5,000 topics); a slice of ledgers per loop turn."""
        while True:
            await asyncio.sleep(self._trim_interval_s)
            for i, ml in enumerate(list(self._opened.values())):
                ml.periodic_trim()
                if i % SWEEP_SLICE == SWEEP_SLICE - 1:
                    await asyncio.sleep(0)

    def _forget(self, ml: ManagedLedgerImpl) -> None:
        if self._opened.get(ml.name) is ml:
            del self._opened[ml.name]

    async def exists(self, name: str) -> bool:
        self._check_open()
        return await self._store.exists(meta.ledger_path(name)) is not None

    async def list(self, prefix: str = "") -> list[str]:
        self._check_open()
        names = (meta.decode_name(child) for child in await self._store.children(meta.ROOT))
        return sorted(n for n in names if n.startswith(prefix))

    async def delete(self, name: str) -> None:
        """Delete a managed ledger, its ledgers and cursors (opening it first fences any other owner)."""
        if not await self.exists(name):
            raise ManagedLedgerNotFoundError(f"no managed ledger {name!r}")
        ml = await self.open(name)
        await ml.delete()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._trim_sweep is not None:
            self._trim_sweep.cancel()
        for task in list(self._opening.values()):
            await asyncio.wait([task])
        for ml in list(self._opened.values()):
            await ml.close()
        self.cursor_save_ticker.close()  # the closes saved every cursor: nothing waits on it

    def abandon(self) -> None:
        """Drop every managed ledger without closing or saving anything: a simulated crash."""
        self._closed = True
        if self._trim_sweep is not None:
            self._trim_sweep.cancel()
        for ml in list(self._opened.values()):
            ml.abandon()
        self._opened.clear()
        self.cursor_save_ticker.close()
