"""The one exception the codec raises for bytes that break the Pulsar wire format."""

from __future__ import annotations

from taureau.common.errors import TaureauError


class ProtocolError(TaureauError):
    """Malformed or unsupported input on the wire; the session closes that connection.

    `frames` holds the well-formed frames decoded from the same chunk before the bad one, so a
    session can still act on them (e.g. answer a SEND that preceded the garbage) before closing.
    """

    def __init__(self, message: str, frames: list | None = None) -> None:
        super().__init__(message)
        self.frames: list = frames if frames is not None else []
