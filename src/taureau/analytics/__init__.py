"""Serverless analytics: a PyWren/Lithops-style executor on warm workers, with inputs, outputs
and shuffles in the ephemeral state store (docs/analytics.md)."""

from taureau.analytics.errors import (
    AnalyticsError,
    BackendError,
    CallTimeoutError,
    ExecutorClosedError,
    JobAbortedError,
    TaskError,
    UnpicklableError,
    UnsupportedOptionError,
    WorkerLostError,
)
from taureau.analytics.executor import ALL_COMPLETED, ALWAYS, ANY_COMPLETED, Executor
from taureau.analytics.futures import FuturesList, ResponseFuture
from taureau.analytics.scheduler import Policy
from taureau.analytics.space import JobSpace, job_state

FunctionExecutor = Executor  # Lithops' name

__all__ = [
    "ALL_COMPLETED", "ALWAYS", "ANY_COMPLETED", "AnalyticsError", "BackendError", "CallTimeoutError", "Executor",
    "ExecutorClosedError", "FunctionExecutor", "FuturesList", "JobAbortedError", "JobSpace", "Policy",
    "ResponseFuture", "TaskError", "UnpicklableError", "UnsupportedOptionError", "WorkerLostError", "job_state",
]  # fmt: skip
