"""ConnectionLimits: how many Pulsar connections the broker holds, in total and per client IP.

Every open connection costs memory (a frame buffer of up to the largest message, in-flight
publishes, replies): the caps bound what many connections together can take. Refusals are
logged at most once per LOG_EVERY_S with how many there were, so a flood cannot flood the log.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0


class ConnectionLimits:
    """Counts open connections by IP. The connection asks `admit` when it opens and calls
    `release` exactly once when an admitted connection is lost."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total  # 0: no limit
        self.max_per_ip = max_per_ip  # 0: no limit
        self.total = 0
        self.by_ip: dict[str, int] = {}  # owned here; an IP leaves when its count drops to 0
        self._refused = 0  # refusals since the last log line
        self._logged_at = float("-inf")

    def admit(self, ip: str) -> bool:
        """Count a new connection from `ip`; False (and nothing counted) if over a limit."""
        held = self.by_ip.get(ip, 0)
        if self.max_total and self.total >= self.max_total:
            self._refuse(ip, f"the broker holds {self.total} connections (max_connections)")
            return False
        if self.max_per_ip and held >= self.max_per_ip:
            self._refuse(ip, f"{held} connections are open from {ip} (max_connections_per_ip)")
            return False
        self.total += 1
        self.by_ip[ip] = held + 1
        return True

    def release(self, ip: str) -> None:
        self.total -= 1
        held = self.by_ip[ip] - 1
        if held:
            self.by_ip[ip] = held
        else:
            del self.by_ip[ip]

    def _refuse(self, ip: str, why: str) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            log.warning(
                "refusing connection from %s: %s (%d refused since the last report)", ip, why, self._refused
            )
            self._logged_at = now
            self._refused = 0
