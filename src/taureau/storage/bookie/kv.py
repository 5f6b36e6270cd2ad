"""The small durable key-value interface under the bookie's index, with its sqlite3 implementation."""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Iterable


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with `prefix`."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\xff" * (len(prefix) + 1)
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class KV(abc.ABC):
    """Ordered bytes -> bytes. `commit` is atomic and durable and may run in a worker
    thread while `get`/`scan` run on the event loop: readers see the state before or after
    a commit, never half of one."""

    @abc.abstractmethod
    def get(self, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with prefix, in key order."""

    @abc.abstractmethod
    def get_for_commit(self, keys: list[bytes]) -> list[bytes | None]:
        """Values of `keys` (None where missing), read by the thread that commits, to merge
        into what it commits next."""

    @abc.abstractmethod
    def commit(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        delete_prefixes: Iterable[bytes] = (),
    ) -> None:
        """Apply deletes, then prefix deletes, then puts, as one durable transaction."""

    @abc.abstractmethod
    def close(self) -> None: ...


class SqliteKV(KV):
    """One WITHOUT ROWID table; WAL so the loop's reader never waits for the writer thread."""

    def __init__(self, path: str) -> None:
        self._writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute("PRAGMA synchronous=FULL")
        self._writer.execute(
            "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
        )
        self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def get(self, key: bytes) -> bytes | None:
        row = self._reader.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        rows = self._reader.execute(
            "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k", (prefix, prefix_end(prefix))
        )
        return [(bytes(k), bytes(v)) for k, v in rows]

    def get_for_commit(self, keys: list[bytes]) -> list[bytes | None]:
        found: dict[bytes, bytes] = {}
        for i in range(0, len(keys), 500):  # sqlite's bound parameters per statement are limited
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            found.update(self._writer.execute(f"SELECT k, v FROM kv WHERE k IN ({marks})", part))
        return [None if (v := found.get(k)) is None else bytes(v) for k in keys]

    def commit(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        delete_prefixes: Iterable[bytes] = (),
    ) -> None:
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM kv WHERE k = ?", ((k,) for k in deletes))
            db.executemany(
                "DELETE FROM kv WHERE k >= ? AND k < ?", ((p, prefix_end(p)) for p in delete_prefixes)
            )
            db.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", puts)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


class MemoryKV(KV):
    """A KV in a dict: a commit is all-or-nothing and "durable" for as long as the object
    lives (CrashFiles hands the same one to the bookie that restarts after a crash)."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    def get_for_commit(self, keys: list[bytes]) -> list[bytes | None]:
        return [self._data.get(k) for k in keys]

    def commit(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        delete_prefixes: Iterable[bytes] = (),
    ) -> None:
        data = dict(self._data)
        for key in deletes:
            data.pop(key, None)
        for prefix in delete_prefixes:
            for key in [k for k in data if k.startswith(prefix)]:
                del data[key]
        data.update(puts)
        self._data = data  # one reference swap: readers see before or after

    def close(self) -> None:
        pass
