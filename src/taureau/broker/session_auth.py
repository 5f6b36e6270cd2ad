"""Authentication of one connection: CONNECT's credentials checked, and an expiring identity
refreshed with AUTH_CHALLENGE as Pulsar does.

Pulsar's broker checks every authenticationRefreshCheckSeconds whether a connection's
credentials expired; if so it sends AUTH_CHALLENGE (data `PulsarAuthRefresh`) to a client that
announced `supports_auth_refresh`, and closes the connection when no valid AUTH_RESPONSE came
by the next check, or at once for a client that cannot refresh. The refreshed credentials
must prove the same role. Here the check runs at the expiry itself, and the grace is one
refresh interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from taureau.auth.providers import AuthenticationService, Credentials, Identity
from taureau.common.errors import AuthenticationError

log = logging.getLogger("taureau.broker.auth")

REFRESH_DATA = b"PulsarAuthRefresh"
# Checking a password hash (bcrypt) takes tens of milliseconds: not on the event loop.
_SLOW_METHODS = frozenset({"basic"})


async def identify(service: AuthenticationService, credentials: Credentials) -> Identity:
    if credentials.method in _SLOW_METHODS:
        return await asyncio.to_thread(service.identify, credentials)
    return service.identify(credentials)


class Refresher:
    """Watches one connection's identity expiry: challenge, then close if not refreshed."""

    def __init__(self, service: AuthenticationService, grace_s: float, remote_address: str,
                 challenge: Callable[[str], None], close: Callable[[], None]) -> None:
        self._service = service
        self._grace_s = grace_s
        self._remote = remote_address
        self._challenge = challenge  # sends AUTH_CHALLENGE for a method
        self._close = close
        self._timer: asyncio.TimerHandle | None = None
        self._method = ""
        self._role = ""
        self._can_refresh = False
        self.pending = False  # a challenge is out and not answered with valid credentials

    def watch(self, method: str, identity: Identity, can_refresh: bool) -> None:
        self._method, self._role = method, identity.role
        self._can_refresh = can_refresh
        self._arm(identity.expires_at)

    def _arm(self, expires_at: float | None) -> None:
        self.cancel()
        if expires_at is None:
            return
        delay = max(expires_at - time.time(), 0.0)
        self._timer = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        if not self._can_refresh:
            self._refuse("credentials expired and the client cannot refresh them")
            return
        self.pending = True
        self._challenge(self._method)
        self._timer = asyncio.get_running_loop().call_later(self._grace_s, self._unanswered)

    def _unanswered(self) -> None:
        if self.pending:
            self._refuse(f"credentials expired and were not refreshed within {self._grace_s}s")

    def _refuse(self, reason: str) -> None:
        log.warning("closing %s (role %s): %s", self._remote, self._role, reason)
        self._close()

    async def answer(self, credentials: Credentials) -> AuthenticationError | None:
        """An AUTH_RESPONSE: None if it refreshed the identity, else why it did not."""
        if not self.pending:
            return None  # nothing was asked: a stray response changes nothing
        try:
            if credentials.method != self._method:
                raise AuthenticationError(f"refresh used method {credentials.method!r}, not {self._method!r}")
            identity = await identify(self._service, credentials)
            if identity.role != self._role:
                raise AuthenticationError("refreshed credentials are for another role")
        except AuthenticationError as exc:
            log.warning("closing %s (role %s): refresh refused: %s", self._remote, self._role, exc)
            return exc
        self.pending = False
        self._arm(identity.expires_at)
        return None

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
