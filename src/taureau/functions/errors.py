"""Errors of the functions layer; the REST layer maps each class to one HTTP status."""

from __future__ import annotations

from taureau.common.errors import TaureauError


class FunctionError(TaureauError):
    """Base of every functions-layer error."""


class FunctionConfigError(FunctionError, ValueError):
    """A function config that cannot run: missing or contradictory fields, bad values."""


class FunctionCodeError(FunctionError, ValueError):
    """The function's code cannot be loaded: missing file, syntax error, no such class,
    unknown serde, a requirement that does not install."""


class FunctionNotFoundError(FunctionError):
    pass


class FunctionExistsError(FunctionError):
    pass


class FunctionNotRunningError(FunctionError):
    """The function has no instance that could serve the request (stopped, or failing)."""


class FunctionTimeoutError(FunctionError):
    """An invocation or a processing step took longer than allowed."""


class FunctionStateError(FunctionError, ValueError):
    """A state operation that cannot apply: a counter op on a non-counter value, a key or
    value over the size limits, a table over its size budget."""


class StateKeyNotFoundError(FunctionError):
    pass


class FunctionInvocationError(FunctionError):
    """The function raised while serving an invocation; carries the traceback."""

    def __init__(self, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.trace = trace


class FunctionElsewhereError(FunctionError):
    """What was asked is served by another worker of the cluster: answered with a redirect
    (307) to the same request at `url`, as Pulsar's workers answer for another's instance."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url
