"""A progress bar (rich) for long waits on a terminal; a no-op elsewhere."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def on_terminal() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def bar(total: int, show: bool, console: Console | None = None) -> Iterator[Callable[[int], None]]:
    """Yields update(done); draws `done/total` calls while the block runs when `show`."""
    if not show or total <= 0:
        yield lambda done: None
        return
    columns = (TextColumn("calls"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console or Console(stderr=True), transient=False) as p:
        task = p.add_task("calls", total=total)
        yield lambda done: p.update(task, completed=done)
