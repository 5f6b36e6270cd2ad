"""Sample a server process with py-spy while a cell runs; summarise self and inclusive time.

py-spy is a dev tool, not a project dependency: `/work/venv/bin/pip install py-spy`.
It records folded stacks (`--format raw`: "frame;frame;... count" per line, root first), which
are folded here by function into self time (the innermost frame) and inclusive time (every
distinct function on the stack).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

RATE = 250  # samples per second
TOP = 12
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


class Profiler:
    """One py-spy recording of `pid` for `duration` seconds."""

    def __init__(self, pid: int, duration: float) -> None:
        self.pid, self.duration = pid, duration
        self.proc: subprocess.Popen | None = None
        self.out = Path(tempfile.mkstemp(prefix="pyspy-", suffix=".txt")[1])

    def start(self) -> None:
        exe = py_spy()
        if exe is None:
            raise SystemExit("--profile needs py-spy: /work/venv/bin/pip install py-spy")
        cmd = [exe, "record", "-p", str(self.pid), "-d", str(max(1, int(self.duration))), "-r", str(RATE)]
        cmd += ["--nonblocking", "-f", "raw", "-o", str(self.out)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @property
    def started(self) -> bool:
        return self.proc is not None

    def finish(self, title: str) -> Profile:
        assert self.proc is not None
        _, err = self.proc.communicate(timeout=self.duration + 60)
        text = self.out.read_text() if self.out.exists() else ""
        self.out.unlink(missing_ok=True)
        if not text.strip():
            raise RuntimeError(f"py-spy recorded nothing: {err.decode(errors='replace')[-500:]}")
        return Profile.from_folded(title, text, self.duration)


def short(frame: str) -> str:
    """`func (path/to/mod.py:123)` -> `func (mod.py)`; taureau frames keep their package path."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    path = "taureau/" + path.rsplit("taureau/", 1)[1] if "taureau/" in path else Path(path).name
    return f"{m['func']} ({path})"


BOILERPLATE = ("taureau/cli/", "taureau/standalone.py")  # wrappers every stack passes through


def _is_broker_code(frame: str) -> bool:
    """Inclusive time is shown for Taureau's own functions below its entry points."""
    return "(taureau/" in frame and not any(b in frame for b in BOILERPLATE)


class Profile:
    """Self and inclusive sample counts per function, from folded stacks."""

    def __init__(self, title: str, samples: int, duration: float) -> None:
        self.title, self.samples, self.duration = title, samples, duration
        self.self_time: Counter[str] = Counter()
        self.inclusive: Counter[str] = Counter()

    @classmethod
    def from_folded(cls, title: str, text: str, duration: float) -> Profile:
        profile = cls(title, 0, duration)
        for line in text.splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [short(f) for f in stack.split(";")]
            frames = [f for f in frames if not f.startswith("process ")]  # py-spy's pid/thread roots
            n = int(count)
            profile.samples += n
            if frames:
                profile.self_time[frames[-1]] += n
            for f in set(frames):
                if _is_broker_code(f):
                    profile.inclusive[f] += n
        return profile

    def busy_fraction(self) -> float:
        """Share of the window the broker's threads were running Python (not idle in epoll)."""
        return self.samples / (RATE * self.duration)

    def render(self, top: int = TOP) -> str:
        lines = [
            f"py-spy, broker during {self.title}: {self.samples} samples, {self.busy_fraction():.0%} busy"
        ]
        lines.append(
            "  (self time of Runner.run = uvloop's C loop: socket syscalls, callback dispatch; "
            "OSFiles.fsync and thread.py _worker = journal and executor threads, off the event loop)"
        )
        for label, counter in (("self", self.self_time), ("inclusive, taureau code", self.inclusive)):
            lines.append(f"  top by {label} time:")
            for func, n in counter.most_common(top):
                lines.append(f"    {100 * n / max(1, self.samples):5.1f}%  {func}")
        return "\n".join(lines)
