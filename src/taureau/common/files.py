"""Reading a file the user named (a key, a token, a package): its bytes, or one clear error."""

from __future__ import annotations


def read_file(path: str, error: type[Exception] = ValueError) -> bytes:
    """The file's bytes; `error("cannot read PATH: reason")` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None
