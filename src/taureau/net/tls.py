"""Server-side TLS: one SSLContext per server, reloaded in place when its files change.

A context's certificate chain can be loaded again at any time; connections opened after
that present the new one and connections already open keep theirs, so a renewed
certificate is picked up without a restart (Pulsar's tlsCertRefreshCheckDurationSec).
With a trust file, clients that present a certificate must present one it signed (and with
`require_client_cert`, every client must): that is what mutual TLS authentication reads the
role from (the subject's common name).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert_file: str
    key_file: str
    trust_file: str | None = None  # CA certificates that sign client certificates
    require_client_cert: bool = False
    refresh_check_s: float = 300.0


def _stamp(paths: list[str]) -> tuple[float, ...]:
    return tuple(os.stat(p).st_mtime_ns for p in paths)


class ReloadingContext:
    """An SSLContext for a server, and a task that reloads its files when they change."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        if files.trust_file:
            self.context.verify_mode = ssl.CERT_REQUIRED if files.require_client_cert else ssl.CERT_OPTIONAL
        self._paths = [p for p in (files.cert_file, files.key_file, files.trust_file) if p]
        self._stamp = _stamp(self._paths)
        self._load()
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0

    def _load(self) -> None:
        self.context.load_cert_chain(self.files.cert_file, self.files.key_file)
        if self.files.trust_file:
            self.context.load_verify_locations(self.files.trust_file)

    def check(self) -> bool:
        """Reload if a file changed since the last load; True if it did. A file caught half
        written fails to load: the old certificate stays and the next check tries again."""
        try:
            stamp = _stamp(self._paths)
        except OSError as exc:
            log.warning("TLS files not readable, keeping the loaded certificate: %s", exc)
            return False
        if stamp == self._stamp:
            return False
        try:
            self._load()
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("TLS files changed but do not load, keeping the loaded certificate: %s", exc)
            return False
        self._stamp = stamp
        self.reloads += 1
        log.warning("reloaded TLS certificate %s", self.files.cert_file)
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.files.refresh_check_s)
            self.check()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def peer_common_name(transport: asyncio.BaseTransport) -> str | None:
    """The CN of the verified client certificate on a TLS transport, if any."""
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None  # plain TCP, no certificate, or one that was not verified
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
