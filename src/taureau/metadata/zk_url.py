"""Parse a `zk://host:port[,host:port...][/chroot]` metadata-store URL, before anything connects."""

from __future__ import annotations

import re
from dataclasses import dataclass

from taureau.common.errors import InvalidMetadataPathError
from taureau.metadata.paths import ROOT, check_path

_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})")


class InvalidMetadataStoreUrlError(ValueError):
    """A metadata-store URL that names no store this build can open."""


@dataclass(frozen=True, slots=True)
class ZooKeeperUrl:
    hosts: tuple[tuple[str, int], ...]
    chroot: str  # "/" when none: every path of the store lives under it

    @property
    def connect_string(self) -> str:
        """Kazoo's hosts string, without the chroot (the store prefixes paths itself)."""
        return ",".join(f"{host}:{port}" for host, port in self.hosts)

    def __str__(self) -> str:
        return f"zk://{self.connect_string}{'' if self.chroot == ROOT else self.chroot}"


def parse_zk_url(url: str) -> ZooKeeperUrl:
    """
    >>> parse_zk_url("zk://127.0.0.1:2181,h2:2182/pulsar")
    ZooKeeperUrl(hosts=(('127.0.0.1', 2181), ('h2', 2182)), chroot='/pulsar')
    """
    if not isinstance(url, str) or not url.lower().startswith("zk://"):
        raise InvalidMetadataStoreUrlError(f"{url!r} is not a zk://host:port[/chroot] URL")
    rest = url[len("zk://") :]
    cut = rest.find("/")
    hosts_part, chroot = (rest, ROOT) if cut < 0 else (rest[:cut], rest[cut:])
    if chroot != ROOT:
        chroot = chroot.rstrip("/") or ROOT
        try:
            check_path(chroot)
        except InvalidMetadataPathError as exc:
            raise InvalidMetadataStoreUrlError(f"{url!r}: bad chroot: {exc}") from None
    hosts: list[tuple[str, int]] = []
    for item in hosts_part.split(","):
        match = _HOST.fullmatch(item.strip())
        if match is None:
            raise InvalidMetadataStoreUrlError(f"{url!r}: {item!r} is not host:port")
        port = int(match.group(2))
        if not 0 < port < 65536:
            raise InvalidMetadataStoreUrlError(f"{url!r}: port {port} is out of range")
        hosts.append((match.group(1), port))
    return ZooKeeperUrl(tuple(hosts), chroot)
