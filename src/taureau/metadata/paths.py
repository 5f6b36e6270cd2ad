"""Validate and split ZooKeeper-style metadata paths (`/a/b/c`)."""

from __future__ import annotations

from taureau.common.errors import InvalidMetadataPathError

ROOT = "/"


def check_path(path: object) -> str:
    """Return `path` if it is a valid absolute path, else raise InvalidMetadataPathError.

    >>> check_path("/ledgers/12")
    '/ledgers/12'
    """
    if not isinstance(path, str):
        raise InvalidMetadataPathError(f"metadata path must be a str, not {type(path).__name__}")
    if path == ROOT:
        return path
    if not path.startswith("/") or path.endswith("/"):
        raise InvalidMetadataPathError(f"invalid metadata path {path!r}: must start and not end with '/'")
    for part in path[1:].split("/"):
        if part in ("", ".", ".."):
            raise InvalidMetadataPathError(f"invalid metadata path {path!r}: empty, '.' or '..' part")
    if "\x00" in path:
        raise InvalidMetadataPathError(f"invalid metadata path {path!r}: NUL character")
    return path


def parent_of(path: str) -> str:
    """The parent path; the root's parent is the root."""
    cut = path.rfind("/")
    return ROOT if cut <= 0 else path[:cut]


def name_of(path: str) -> str:
    return path[path.rfind("/") + 1 :]


def join(parent: str, name: str) -> str:
    return parent + name if parent == ROOT else f"{parent}/{name}"


def ancestors(path: str) -> list[str]:
    """Proper ancestors from the top down, excluding the root: /a/b/c -> [/a, /a/b]."""
    out: list[str] = []
    cut = path.find("/", 1)
    while cut > 0:
        out.append(path[:cut])
        cut = path.find("/", cut + 1)
    return out
