"""Who may speak the state store's internal operations.

Clients and memory servers share ports: a memory server registers with the controller on its
client port, and memory servers send each other IMPORT, INSTALL and CHAIN_WRITE on theirs.
Those operations are refused until the connection proves it holds the cluster's internal
secret: CHALLENGE answers a fresh random challenge, PROVE sends HMAC-SHA256(secret, challenge)
back. The secret itself never crosses the wire, and a proof is good for one connection only.

A connection the controller made itself (a socketpair to its own memory server) or accepted on
its owner-only Unix socket is trusted as it is; the controller tells such a memory server the
secret in its REGISTER reply, so that it can prove itself to the other memory servers.
"""

from __future__ import annotations

import hmac
import os
import secrets
from hashlib import sha256
from typing import Any

from taureau.common import errors
from taureau.common.private_files import open_private
from taureau.state import codec
from taureau.state.codec import Op
from taureau.state.rpc import Peer

SECRET_FILE = "internal.key"  # in the controller's data directory
SECRET_BYTES = 32
_DOMAIN = b"taureau-state-internal\0"  # a proof is good for this protocol only
PROVEN = "internal"  # the Peer.info flag of a connection that proved the secret (or is trusted)


def create_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def read_secret(path: str) -> bytes:
    """The secret in `path` (hex); ValueError with the reason when it cannot be used."""
    try:
        with open(path, "rb") as f:
            text = f.read(4 * SECRET_BYTES).strip()
    except OSError as e:
        raise ValueError(f"cannot read the internal secret {path}: {e.strerror}") from None
    try:
        secret = bytes.fromhex(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{path} is not an internal secret (hex)") from None
    if len(secret) < 16:
        raise ValueError(f"{path}: the internal secret is too short ({len(secret)} bytes, 16 at least)")
    return secret


def load_or_create_secret(data_dir: str) -> bytes:
    """The secret kept in `data_dir`, created owner-only on first use (memory servers on
    other hosts are given a copy of that file)."""
    path = os.path.join(data_dir, SECRET_FILE)
    try:
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return read_secret(path)
    secret = create_secret()
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex() + "\n")
    return secret


def proof(secret: bytes, challenge: bytes) -> bytes:
    return hmac.new(secret, _DOMAIN + challenge, sha256).digest()


def challenge(info: dict[str, Any]) -> dict[str, Any]:
    """Serve CHALLENGE: a fresh challenge for this connection (each one replaces the last)."""
    info["challenge"] = secrets.token_bytes(32)
    return {"challenge": info["challenge"].hex()}


def prove(info: dict[str, Any], secret: bytes | None, args: dict[str, Any]) -> dict[str, Any]:
    """Serve PROVE: mark the connection proven, or StateAuthError. A challenge is used once."""
    issued = info.pop("challenge", None)
    given = args.get("proof")
    if issued is None:
        raise errors.StateAuthError("PROVE without a CHALLENGE first")
    if secret is None:
        raise errors.StateAuthError("this server has no internal secret: nothing can prove it")
    try:
        ok = isinstance(given, str) and hmac.compare_digest(bytes.fromhex(given), proof(secret, issued))
    except ValueError:
        ok = False
    if not ok:
        raise errors.StateAuthError("wrong internal secret")
    info[PROVEN] = True
    return {}


def require(info: dict[str, Any], what: str) -> None:
    """Refuse an internal operation from a connection that has not proved the secret."""
    if not info.get(PROVEN):
        raise errors.StateAuthError(f"{what} refused: this connection has not proved the internal secret")


async def authenticate(peer: Peer, secret: bytes) -> None:
    """Prove the secret on a connection we dialled (to a controller or a memory server)."""
    reply = codec.unpack_json(await peer.call(Op.CHALLENGE, codec.pack_json({})))
    try:
        issued = bytes.fromhex(reply["challenge"])
    except (KeyError, TypeError, ValueError):
        raise errors.StateProtocolError("CHALLENGE reply carries no challenge") from None
    await peer.call(Op.PROVE, codec.pack_json({"proof": proof(secret, issued).hex()}))
