"""The durable list of functions: one metadata node per function, `/admin/functions/t/ns/name`.

A node holds the function's config, its package, its id and version, and which instances an
operator stopped; so a restart (or a `kill -9`) of the worker brings every function back as
it was. Updates are compare-and-set on the node's version.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from taureau.common.errors import NodeExistsError, NotFoundError
from taureau.functions.config import FunctionConfig
from taureau.functions.errors import FunctionExistsError, FunctionNotFoundError
from taureau.functions.packages import PackageRef
from taureau.metadata.store import MetadataStore

ROOT = "/admin/functions"


@dataclass(slots=True)
class FunctionRecord:
    config: FunctionConfig
    package: PackageRef
    requirements: PackageRef | None = None
    function_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    version: int = 0  # grows by one on every update
    create_time_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    stopped: list[int] = field(default_factory=list)  # instance ids an operator stopped
    all_stopped: bool = False  # `functions stop` without an instance id
    node_version: int = -1  # the metadata node's version this was read at (not stored)

    @property
    def fqfn(self) -> str:
        return self.config.fqfn

    def to_json(self) -> bytes:
        return json.dumps({
            "config": self.config.to_dict(),
            "package": self.package.to_dict(),
            "requirements": self.requirements.to_dict() if self.requirements else None,
            "functionId": self.function_id,
            "version": self.version,
            "createTimeMs": self.create_time_ms,
            "stopped": self.stopped,
            "allStopped": self.all_stopped,
        }).encode()

    @classmethod
    def from_json(cls, data: bytes, node_version: int) -> FunctionRecord:
        raw: dict[str, Any] = json.loads(data)
        requirements = raw.get("requirements")
        return cls(
            config=FunctionConfig.from_dict(raw["config"]),
            package=PackageRef(**raw["package"]),
            requirements=PackageRef(**requirements) if requirements else None,
            function_id=raw["functionId"],
            version=int(raw["version"]),
            create_time_ms=int(raw["createTimeMs"]),
            stopped=list(raw.get("stopped", [])),
            all_stopped=bool(raw.get("allStopped", False)),
            node_version=node_version,
        )


def _path(fqfn: str) -> str:
    return f"{ROOT}/{fqfn}"


class FunctionRegistry:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def load_all(self) -> list[FunctionRecord]:
        records = []
        for tenant in await self._store.children(ROOT):
            for namespace in await self._store.children(f"{ROOT}/{tenant}"):
                for name in await self._store.children(f"{ROOT}/{tenant}/{namespace}"):
                    record = await self.get(f"{tenant}/{namespace}/{name}")
                    if record is not None:
                        records.append(record)
        return records

    async def get(self, fqfn: str) -> FunctionRecord | None:
        found = await self._store.get(_path(fqfn))
        if found is None or not found[0]:
            return None
        return FunctionRecord.from_json(found[0], found[1].version)

    async def create(self, record: FunctionRecord) -> None:
        try:
            stat = await self._store.put(_path(record.fqfn), record.to_json(), expected_version=-1)
        except NodeExistsError:
            raise FunctionExistsError(f"function {record.fqfn} already exists") from None
        record.node_version = stat.version

    async def save(self, record: FunctionRecord) -> None:
        """Write back a record read earlier (BadVersionError if it changed since)."""
        try:
            stat = await self._store.put(_path(record.fqfn), record.to_json(), expected_version=record.node_version)
        except NotFoundError:
            raise FunctionNotFoundError(f"function {record.fqfn} does not exist") from None
        record.node_version = stat.version

    async def delete(self, fqfn: str) -> None:
        try:
            await self._store.delete(_path(fqfn))
        except NotFoundError:
            raise FunctionNotFoundError(f"function {fqfn} does not exist") from None

    async def list(self, tenant: str, namespace: str) -> list[str]:
        return await self._store.children(f"{ROOT}/{tenant}/{namespace}")
