"""tune_allocator fixes glibc's thresholds (where glibc is), and a heap tuned so still gives its
free pages back on malloc_trim."""

from __future__ import annotations

import subprocess
import sys

import pytest

from taureau.common import memory


def test_tune_allocator_is_accepted_where_mallopt_exists() -> None:
    # In a child: the thresholds are the process's own, not to be changed for the test run.
    code = (
        "from taureau.common import memory\n"
        "print(memory.tune_allocator(), memory.trim_heap())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = "True True" if memory._mallopt is not None else "False False"
    assert out.stdout.strip() == expected


def test_a_tuned_heap_reuses_freed_large_blocks_without_faulting_them_in_again() -> None:
    if memory._mallopt is None:
        pytest.skip("no glibc mallopt here: nothing is tuned")
    code = (
        "import resource\n"
        "from taureau.common import memory\n"
        "memory.tune_allocator()\n"
        "def churn():\n"
        "    for _ in range(50):\n"
        "        blocks = [bytearray(1 << 20) for _ in range(8)]\n"
        "        del blocks\n"
        "churn()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "churn()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Untuned, each round's 8 MiB went back to the OS and came again: ~100,000 faults here.
    assert int(out.stdout) < 5_000
