"""Stop user code that runs past `--timeout-ms`: raise FunctionTimeoutError inside it.

On the main thread (the process runtime) a SIGALRM interval timer raises it; on any other
thread (the thread runtime) a watchdog thread raises it asynchronously in the target thread.
Either way it lands between two bytecodes, so a pure-Python infinite loop or a `time.sleep`
stops; code stuck inside a C call is the worker's to kill (it sees the instance stay busy).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
from collections.abc import Iterator

from taureau.functions.errors import FunctionTimeoutError


class Deadline:
    def __init__(self) -> None:
        self._armed = False  # True only while user code runs under a deadline
        self._main = threading.current_thread() is threading.main_thread()
        self._lock = threading.Lock()
        if self._main:
            signal.signal(signal.SIGALRM, self._on_alarm)

    def _on_alarm(self, _signum, _frame) -> None:
        if self._armed:
            self._armed = False
            raise FunctionTimeoutError("function timed out")

    @contextlib.contextmanager
    def limit(self, seconds: float | None) -> Iterator[None]:
        if not seconds:
            yield
            return
        if self._main:
            self._armed = True
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                yield
            finally:
                self._armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            return
        target = threading.get_ident()
        done = threading.Event()

        def watchdog() -> None:
            if done.wait(seconds):
                return
            with self._lock:  # never raise into the thread once it has left the block
                if self._armed:
                    self._armed = False
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(
                        ctypes.c_ulong(target), ctypes.py_object(FunctionTimeoutError)
                    )

        self._armed = True
        threading.Thread(target=watchdog, daemon=True).start()
        try:
            yield
        finally:
            with self._lock:
                self._armed = False
            done.set()
