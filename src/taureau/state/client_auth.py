"""Who may use the state store, with authentication on (docs/security.md#state-store).

A client proves who it is to the controller (AUTH: a token or a basic user, checked by the
broker's own providers through `StateAccess`), and every controller request is then checked
against the namespace path it touches:

    /T/N/... and /functions/T/N/...   (the second: each function's own space, as
                          functions/ephemeral.py lays it out) belong to the Pulsar namespace
                          T/N: a role granted `functions` there, the functions of T/N (roles
                          function:T/N/*), T's admins and superusers may use them
    /T, /functions/T      T's admins and superusers
    /, /functions         superusers

The namespace is the boundary, as on the broker, where a function's role may produce and
consume every topic of its namespace: a function may open its neighbours' spaces
(`ephemeral_state(of=...)`), never another namespace's.

Memory servers know blocks, not paths. So the controller answers each block map it hands an
authorized client with a ticket for that structure: HMAC(internal secret, id:expiry), good
for TICKET_TTL_S at most and never past the client's token. A client presents the ticket
(ACCESS) once per connection before it touches the structure's blocks; the memory server
serves a block only to a connection holding a live ticket for its structure. An expired
ticket answers STALE, so the client fetches a fresh map (and ticket) from the controller,
which checks the path again: a revoked grant or a rename away holds within TICKET_TTL_S.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Protocol

from taureau.auth.roles import function_role
from taureau.common import errors
from taureau.state.codec import STALE, Op, Redirect
from taureau.state.namespace import split_path

log = logging.getLogger("taureau.state.auth")

TICKET_TTL_S = 60
MAX_TICKETS = 4096  # live tickets one memory-server connection may hold
FUNCTIONS_ROOT = "functions"  # /functions/T/N/F: each function's own space (functions/ephemeral.py)
_TICKET_DOMAIN = b"taureau-state-ticket\0"
ROLE = "role"  # Peer.info keys of an authenticated client connection
EXPIRES = "expires_at"
TICKETS = "tickets"

# Controller requests a client must be authenticated for; the rest (AUTH, and a memory
# server's own requests) carry their own checks.
# Ops 64-95 are the client -> controller block (codec.Op): a new one there is gated by default.
CLIENT_OPS = frozenset(range(Op.HELLO, Op.REGISTER))
_SUPERUSER_OPS = frozenset({Op.STATS, Op.DUMP, Op.LOAD, Op.DROP_DUMP})  # server files and global counters


class StateAccess(Protocol):
    """What the state store asks of the server's authentication and authorization."""

    async def identify(self, method: str, data: bytes) -> tuple[str, float | None]:
        """(role, expiry or None) of a credential; AuthenticationError if it is not good."""
        ...

    def is_superuser(self, role: str) -> bool: ...

    async def is_tenant_admin(self, role: str, tenant: str) -> bool: ...

    async def may_use_functions(self, role: str, tenant: str, namespace: str) -> bool:
        """Does `role` hold `functions` on namespace tenant/namespace (or admin it)?"""
        ...


@dataclass(frozen=True, slots=True)
class Scope:
    """What a path belongs to: None parts are above it (only wider roles may use the path)."""

    tenant: str | None
    namespace: str | None


def scope_of(path: str) -> Scope:
    parts = split_path(path)  # InvalidPathError for a malformed path
    if parts and parts[0] == FUNCTIONS_ROOT:
        parts = parts[1:]
    return Scope(parts[0] if parts else None, parts[1] if len(parts) > 1 else None)


class ClientGate:
    """The controller's side: AUTH, the per-request check, and the tickets it signs."""

    def __init__(self, access: StateAccess, secret: bytes) -> None:
        self.access = access
        self.secret = secret

    # -- authentication ---------------------------------------------------------------------

    async def authenticate(self, info: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        """Serve AUTH: remember the connection's role and expiry, or StateAuthenticationError
        (logged once; the connection stays usable for another AUTH)."""
        method, data = args.get("method"), args.get("data")
        if not isinstance(method, str) or not isinstance(data, str):
            raise errors.StateProtocolError("AUTH takes a string 'method' and 'data'")
        try:
            role, expires_at = await self.access.identify(method, data.encode())
        except errors.AuthenticationError as e:
            info.pop(ROLE, None)
            log.warning("state client refused: %s", e)
            raise errors.StateAuthenticationError(str(e)) from None
        info[ROLE], info[EXPIRES] = role, expires_at
        return {"role": role}

    def identity(self, info: dict[str, Any]) -> tuple[str, float | None]:
        role = info.get(ROLE)
        if role is None:
            raise errors.StateAuthenticationError("authenticate first: the state store needs credentials")
        expires_at = info.get(EXPIRES)
        if expires_at is not None and expires_at <= time.time():
            del info[ROLE]
            log.warning("state client refused: the token of role %s has expired", role)
            raise errors.StateAuthenticationError(f"the token of role {role} has expired")
        return role, expires_at

    # -- authorization ----------------------------------------------------------------------

    async def authorize(self, role: str, op: int, args: dict[str, Any]) -> None:
        """StateAuthorizationError unless `role` may send `op` with `args`."""
        if self.access.is_superuser(role) or op == Op.HELLO:
            return
        if op in _SUPERUSER_OPS or (op == Op.CREATE and args.get("backing")):
            what = "a backing path" if op == Op.CREATE else Op(op).name.lower()
            self._refuse(f"role {role} may not use {what}: superusers only")
        scopes: dict[Scope, str] = {}  # each namespace checked once (a RENEW names many paths)
        for path in _paths(op, args):
            scopes.setdefault(scope_of(path), path)
        for scope, path in scopes.items():
            if op == Op.QUOTA and "blocks" in args:  # a namespace's users must not lift their own cap
                ok = scope.tenant is not None and await self.access.is_tenant_admin(role, scope.tenant)
            else:
                ok = await self._may_use(role, scope)
            if not ok:
                self._refuse(f"role {role} may not use state path {path}")

    async def _may_use(self, role: str, scope: Scope) -> bool:
        tenant, namespace = scope.tenant, scope.namespace
        if tenant is None:
            return False
        if namespace is None:
            return await self.access.is_tenant_admin(role, tenant)
        functions = function_role(tenant, namespace, "")  # function:T/N/ and a name
        if role.startswith(functions) and "/" not in role[len(functions):]:
            return True
        return await self.access.may_use_functions(role, tenant, namespace)

    @staticmethod
    def _refuse(reason: str) -> None:
        log.warning("state client refused: %s", reason)
        raise errors.StateAuthorizationError(reason)

    # -- tickets ----------------------------------------------------------------------------

    def ticket(self, struct_id: int, expires_at: float | None) -> str:
        until = time.time() + TICKET_TTL_S
        exp = int(until if expires_at is None else min(until, expires_at))
        return f"{struct_id}:{exp}:{_mac(self.secret, struct_id, exp)}"


def _paths(op: int, args: dict[str, Any]) -> Iterator[str]:
    keys = ("src", "dst") if op == Op.RENAME else ("paths",) if op == Op.RENEW else ("path",)
    for key in keys:
        value = args.get(key)
        values = value if key == "paths" and isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str):
                raise errors.StateProtocolError(f"argument {key!r} must hold path strings")
            yield v


def _mac(secret: bytes, struct_id: int, exp: int) -> str:
    return hmac.new(secret, _TICKET_DOMAIN + f"{struct_id}:{exp}".encode(), sha256).hexdigest()


# -- the memory server's side ---------------------------------------------------------------


def accept_ticket(info: dict[str, Any], secret: bytes | None, fields: list[bytes]) -> list[bytes]:
    """Serve ACCESS: hold a controller-signed ticket on this connection, or refuse it."""
    try:
        sid_s, exp_s, mac = fields[0].decode("ascii").split(":")
        sid, exp = int(sid_s), int(exp_s)
    except (IndexError, ValueError, UnicodeDecodeError):
        raise errors.StateAuthenticationError("not a state ticket") from None
    if secret is None or not hmac.compare_digest(mac, _mac(secret, sid, exp)):
        log.warning("state client refused: a ticket not signed by the controller")
        raise errors.StateAuthenticationError("ticket not signed by the controller")
    now = time.time()
    if exp <= now:
        raise errors.StateAuthenticationError("ticket expired: fetch the block map again")
    tickets: dict[int, int] = info.setdefault(TICKETS, {})
    if len(tickets) >= MAX_TICKETS and sid not in tickets:
        for k in [k for k, e in tickets.items() if e <= now]:
            del tickets[k]
        if len(tickets) >= MAX_TICKETS:
            raise errors.StateAuthorizationError(f"a connection holds at most {MAX_TICKETS} live tickets")
    tickets[sid] = exp
    return []


def check_ticket(info: dict[str, Any], struct_id: int) -> None:
    """Let a data request through only with a live ticket for its block's structure."""
    exp = info.get(TICKETS, {}).get(struct_id)
    if exp is None:
        raise errors.StateAuthorizationError(f"no ticket for structure {struct_id} on this connection")
    if exp <= time.time():
        raise Redirect(STALE, "ticket expired: fetch the block map again")
