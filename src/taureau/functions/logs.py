"""A function's log records and `print()` output, sent to its `--log-topic`.

`print()` writes to `sys.stdout`, which is one object per process; `StdoutRouter` replaces it
once and sends what a thread writes to that thread's sink (the function it runs), or to the
real stdout for threads that run no function. So the thread runtime, where several functions
share a process, keeps each function's output apart.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

LogSink = Callable[[str], None]  # takes one complete line (no trailing newline)


class LogTopicHandler(logging.Handler):
    """Publishes each formatted record to the log topic (fire and forget)."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self._sink = sink
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sink(self.format(record))
        except Exception:
            self.handleError(record)


class _LineWriter:
    """Collects writes of one thread into lines for its sink, and echoes them to `echo`."""

    MAX_LINE = 64 * 1024  # a line without a newline is cut here, so memory stays bounded

    def __init__(self, sink: LogSink, echo: TextIO) -> None:
        self.sink = sink
        self.echo = echo
        self.partial = ""

    def write(self, text: str) -> None:
        self.echo.write(text)
        self.partial += text
        while "\n" in self.partial or len(self.partial) > self.MAX_LINE:
            line, sep, rest = self.partial.partition("\n")
            if not sep:
                line, rest = self.partial[: self.MAX_LINE], self.partial[self.MAX_LINE :]
            self.partial = rest
            self.sink(line)

    def flush(self) -> None:
        if self.partial:
            self.sink(self.partial)
            self.partial = ""
        self.echo.flush()


class StdoutRouter(io.TextIOBase):
    """sys.stdout that sends each thread's writes to the sink registered for it."""

    _installed: StdoutRouter | None = None
    _install_lock = threading.Lock()

    def __init__(self, real: TextIO) -> None:
        super().__init__()
        self.real = real
        self._writers: dict[int, _LineWriter] = {}  # thread ident -> its function's writer

    @classmethod
    def install(cls) -> StdoutRouter:
        with cls._install_lock:
            if cls._installed is None:
                cls._installed = cls(sys.stdout)
                sys.stdout = cls._installed
            return cls._installed

    def route_current_thread(self, sink: LogSink | None) -> None:
        ident = threading.get_ident()
        old = self._writers.pop(ident, None)
        if old is not None:
            old.flush()
        if sink is not None:
            self._writers[ident] = _LineWriter(sink, self.real)

    def flush_current_thread(self) -> None:
        writer = self._writers.get(threading.get_ident())
        if writer is not None:
            writer.flush()

    def write(self, text: Any) -> int:
        writer = self._writers.get(threading.get_ident())
        if writer is None:
            return self.real.write(text)
        writer.write(str(text))
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.real, "encoding", "utf-8")

    def fileno(self) -> int:
        return self.real.fileno()
