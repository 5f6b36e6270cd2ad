"""Lithops options Taureau does not take. Lithops code passes them by name (or by position,
the signatures keep Lithops' order), so each is accepted at its Lithops default and refused
with the reason otherwise: a silently ignored option would make a job run differently from
what its author asked."""

from __future__ import annotations

from typing import Any

from taureau.analytics.errors import UnsupportedOptionError

_MEMORY = ("workers are warm processes sized by their machine (or the standalone's function "
           "resources); a call cannot ask for its own memory")  # fmt: skip
_OBJECTS = ("iterdata from object storage is not supported: pass the data itself, or put it in "
            "Executor.state and pass keys")  # fmt: skip
_MODULES = ("a function's own module is shipped by value unless it is installed, and workers "
            "import every other module; there is no per-job module list")  # fmt: skip

# option -> (the values that mean "not used", why any other value is refused)
_REFUSED: dict[str, tuple[tuple[Any, ...], str]] = {
    "runtime_memory": ((None,), _MEMORY),
    "map_runtime_memory": ((None,), _MEMORY),
    "reduce_runtime_memory": ((None,), _MEMORY),
    "obj_chunk_size": ((None,), _OBJECTS),
    "obj_chunk_number": ((None,), _OBJECTS),
    "obj_newline": (("\n",), _OBJECTS),
    "obj_reduce_by_key": ((False,), _OBJECTS + " (reduce_by_key=True groups map output by key)"),
    "include_modules": ((None, []), _MODULES),
    "exclude_modules": ((None, []), _MODULES),
    "threadpool_size": ((None,), "results reach the driver in the workers' messages: there is no download pool"),
    "cs": ((None,), "there are no cloud objects to clean"),
    "cloud_objects_n": ((0,), "there are no cloud objects"),
}


def refuse_unsupported(call: str, **given: Any) -> None:
    """Raise UnsupportedOptionError for the first option of `given` not at its unused value."""
    for name, value in given.items():
        unused, why = _REFUSED[name]
        if not any(value is u or (type(value) is type(u) and value == u) for u in unused):
            raise UnsupportedOptionError(f"{call}({name}={value!r}) is not supported: {why}")

