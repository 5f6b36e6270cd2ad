"""Where a running server is waiting, on request: `kill -USR1 <pid>` prints every thread's
stack, `kill -USR2 <pid>` every asyncio task's, both to stderr (as `jstack` or a JVM's
`kill -3` do for Pulsar).

Why two signals: a thread dump must work when the event loop is the thing that is stuck (a
loop blocked in a lock or a system call runs no handler), so it is `faulthandler`'s, written
from the signal itself, in C. A task dump needs the loop (tasks are its objects), and is what
says which coroutine an idle loop's work is parked on. Both go to stderr, which the
standalone's supervisor (systemd, a test harness) already collects.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
from collections import Counter
from typing import TextIO

# A broker with thousands of topics has thousands of tasks; their stacks are printed for the
# first few only, and every task is counted by its coroutine's name.
MAX_TASK_STACKS = 50


def install_stack_dumps(loop: asyncio.AbstractEventLoop) -> None:
    """SIGUSR1: every thread's stack (works with the loop stuck); SIGUSR2: the loop's tasks."""
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    loop.add_signal_handler(signal.SIGUSR2, dump_tasks, loop, sys.stderr)


def dump_tasks(loop: asyncio.AbstractEventLoop, out: TextIO) -> None:
    """Print how many tasks run each coroutine, then the stacks of the first MAX_TASK_STACKS."""
    tasks = sorted(asyncio.all_tasks(loop), key=lambda task: task.get_name())
    counts = Counter(_coroutine_name(task) for task in tasks)
    print(f"--- {len(tasks)} asyncio tasks ---", file=out)
    for name, count in counts.most_common():
        print(f"{count:6d}  {name}", file=out)
    for task in tasks[:MAX_TASK_STACKS]:
        print(f"--- {task!r}", file=out)
        for line in _await_chain(task):
            print(line, file=out)
    if len(tasks) > MAX_TASK_STACKS:
        print(f"--- {len(tasks) - MAX_TASK_STACKS} more tasks not shown ---", file=out)
    out.flush()


def _await_chain(task: asyncio.Task[object], limit: int = 30) -> list[str]:
    """Where the task's coroutine is suspended, outermost first, down the chain of coroutines
    it awaits (Task.print_stack shows only the outermost frame of a suspended coroutine)."""
    lines: list[str] = []
    awaitable: object = task.get_coro()
    while awaitable is not None and len(lines) < limit:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:  # a future's iterator, or a finished coroutine: the end of the chain
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return lines


def _coroutine_name(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", type(coro).__name__)
