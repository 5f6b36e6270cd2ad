"""SchemaRegistry: the versions of each topic's schema, kept in the metadata store.

Layout: /schemas/<tenant>/<namespace>/<topic>/<version, 10 digits> -> StoredSchema JSON. A new
version is created with create-if-absent, so two brokers (or two producers) registering at
once agree on one number: the loser re-reads the history and finds its schema, or the next
number. The store is the only copy; nothing is cached, so every broker sees every change.
"""

from __future__ import annotations

import time

from taureau.broker.schemas import compatibility
from taureau.broker.schemas.compatibility import Strategy
from taureau.broker.schemas.model import (
    MAX_VERSIONS,
    IncompatibleSchemaError,
    SchemaData,
    SchemaNotFoundError,
    StoredSchema,
)
from taureau.common.errors import BrokerError, NodeExistsError
from taureau.metadata.store import MetadataStore

ROOT = "/schemas"
_RETRIES = 10


class SchemaRegistry:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    @staticmethod
    def _path(schema_id: str) -> str:
        return f"{ROOT}/{schema_id}"

    async def history(self, schema_id: str) -> list[StoredSchema]:
        """Every version, tombstones included, oldest first."""
        path = self._path(schema_id)
        out = []
        for name in await self._store.children(path):
            found = await self._store.get(f"{path}/{name}")
            if found is not None:
                out.append(StoredSchema.from_json(found[0]))
        return out

    async def live(self, schema_id: str) -> list[StoredSchema]:
        """The versions since the last delete, oldest first ([] when there is no schema)."""
        return _since_delete(await self.history(schema_id))

    async def latest(self, schema_id: str) -> StoredSchema:
        live = await self.live(schema_id)
        if not live:
            raise SchemaNotFoundError(f"no schema for {schema_id}")
        return live[-1]

    async def get(self, schema_id: str, version: int) -> StoredSchema:
        found = await self._store.get(f"{self._path(schema_id)}/{version:010d}") if version >= 0 else None
        stored = StoredSchema.from_json(found[0]) if found else None
        if stored is None or stored.schema is None:
            raise SchemaNotFoundError(f"no version {version} of the schema of {schema_id}")
        return stored

    async def add(self, schema_id: str, schema: SchemaData, strategy: Strategy, *, allow_update: bool = True) -> int:
        """The version of `schema` for the topic: an identical one already stored, else a new
        one if the strategy accepts it (IncompatibleSchemaError if not)."""
        compatibility.validate(schema)
        for _ in range(_RETRIES):
            history = await self.history(schema_id)
            live = _since_delete(history)
            found = _version_of(live, schema)
            if found is not None:
                return found
            if live and not allow_update:
                raise IncompatibleSchemaError(
                    f"the schema of {schema_id} differs from every stored version and automatic "
                    "schema updates are off for its namespace"
                )
            compatibility.check(schema, [s.schema for s in live if s.schema is not None], strategy)
            version = await self._append(schema_id, history, schema)
            if version is not None:
                return version
        raise BrokerError(f"the schema of {schema_id} changed concurrently, try again")

    async def version_of(self, schema_id: str, schema: SchemaData) -> int | None:
        """The version an identical definition has since the last delete, if any."""
        return _version_of(await self.live(schema_id), schema)

    async def check(self, schema_id: str, schema: SchemaData, strategy: Strategy) -> None:
        """Would `schema` be accepted as the next version (or is it one already)?"""
        compatibility.validate(schema)
        live = [s.schema for s in await self.live(schema_id) if s.schema is not None]
        if not any(s.same_definition(schema) for s in live):
            compatibility.check(schema, live, strategy)

    async def check_reader(self, schema_id: str, schema: SchemaData, strategy: Strategy) -> None:
        """May a consumer with `schema` read the topic (IncompatibleSchemaError if not)?"""
        compatibility.validate(schema)
        live = [s.schema for s in await self.live(schema_id) if s.schema is not None]
        if not live:
            raise IncompatibleSchemaError(f"topic {schema_id} does not have a schema to check the consumer's against")
        if not any(s.same_definition(schema) for s in live):
            compatibility.check_reader(schema, live, strategy)

    async def delete(self, schema_id: str) -> int:
        """Delete the schema (a tombstone version); the next one registered starts afresh."""
        for _ in range(_RETRIES):
            history = await self.history(schema_id)
            if not _since_delete(history):
                raise SchemaNotFoundError(f"no schema for {schema_id}")
            version = await self._append(schema_id, history, None)
            if version is not None:
                return version
        raise BrokerError(f"the schema of {schema_id} changed concurrently, try again")

    async def drop(self, schema_id: str) -> None:
        """Forget every version (the topic itself was deleted)."""
        await self._store.delete_recursive(self._path(schema_id))

    async def _append(self, schema_id: str, history: list[StoredSchema], schema: SchemaData | None) -> int | None:
        version = history[-1].version + 1 if history else 0
        if len(history) >= MAX_VERSIONS:
            raise IncompatibleSchemaError(f"topic {schema_id} already has {MAX_VERSIONS} schema versions")
        stored = StoredSchema(version, schema, int(time.time() * 1000))
        try:
            await self._store.put(f"{self._path(schema_id)}/{version:010d}", stored.to_json(), expected_version=-1)
        except NodeExistsError:
            return None  # another registration took this number: read again
        return version


def _since_delete(history: list[StoredSchema]) -> list[StoredSchema]:
    last_delete = max((i for i, s in enumerate(history) if s.schema is None), default=-1)
    return history[last_delete + 1 :]


def _version_of(live: list[StoredSchema], schema: SchemaData) -> int | None:
    for stored in live:
        if stored.schema is not None and stored.schema.same_definition(schema):
            return stored.version
    return None
