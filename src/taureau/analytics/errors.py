"""Errors of the analytics executor; each says what the caller can do about it."""

from __future__ import annotations

from taureau.common.errors import TaureauError


class AnalyticsError(TaureauError):
    """Base of every analytics error."""


class UnpicklableError(AnalyticsError, TypeError):
    """A function or an argument cannot be shipped to a worker; raised before any task runs."""


class TaskError(AnalyticsError):
    """A task raised on its worker (after its retries); carries the remote traceback.

    `cause` is the original exception when it could be unpickled on this side (it is also
    chained as `__cause__`); `remote_traceback` is the worker's formatted traceback."""

    def __init__(self, call_id: str, type_name: str, message: str, remote_traceback: str,
                 cause: BaseException | None = None, attempts: int = 1) -> None:  # fmt: skip
        self.call_id = call_id
        self.type_name = type_name
        self.remote_traceback = remote_traceback
        self.cause = cause
        self.attempts = attempts
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"task {call_id} raised {type_name}: {message}{tries}\n"
                         f"--- remote traceback ---\n{remote_traceback.rstrip()}")  # fmt: skip


class WorkerLostError(AnalyticsError):
    """The worker running a task died (or its backend lost it) as many times as retries allow."""


class CallTimeoutError(AnalyticsError, TimeoutError):
    """A call ran longer than its job's `timeout` (Lithops' per-call limit); it is not retried."""


class JobAbortedError(AnalyticsError):
    """A task depended on another that failed (a reducer whose mapper failed)."""


class BackendError(AnalyticsError):
    """The backend is unknown, not installed or not reachable."""


class ExecutorClosedError(AnalyticsError):
    """The executor was closed; its futures that had not finished never will."""


class UnsupportedOptionError(AnalyticsError, ValueError):
    """A Lithops option that has no meaning on Taureau (object-storage iterdata, memory sizes,
    module lists, download thread pools); raised before anything runs, never ignored."""
