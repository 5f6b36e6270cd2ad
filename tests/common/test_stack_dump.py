"""The task dump counts every task by coroutine and prints a bounded number of stacks."""

from __future__ import annotations

import asyncio
import io

from taureau.common import stack_dump


async def _parked(event: asyncio.Event) -> None:
    await _deeper(event)


async def _deeper(event: asyncio.Event) -> None:
    await event.wait()


def test_tasks_are_counted_by_coroutine_and_only_the_first_stacks_printed(monkeypatch):
    monkeypatch.setattr(stack_dump, "MAX_TASK_STACKS", 3)

    async def main() -> str:
        event = asyncio.Event()
        tasks = [asyncio.create_task(_parked(event), name=f"parked-{i}") for i in range(5)]
        await asyncio.sleep(0)  # each task runs up to its wait
        out = io.StringIO()
        stack_dump.dump_tasks(asyncio.get_running_loop(), out)
        event.set()
        await asyncio.gather(*tasks)
        return out.getvalue()

    dump = asyncio.run(main())
    assert "--- 6 asyncio tasks ---" in dump  # the five and main()
    assert "     5  _parked\n" in dump
    assert dump.count("name='parked-") == 2 and dump.count("name='Task-") == 1  # 3 stacks of 6
    assert "--- 3 more tasks not shown ---" in dump
    # A stack goes down the await chain to where the coroutine is parked, inner frames last.
    assert dump.index("in _parked") < dump.index("in _deeper") < dump.index("in wait")
