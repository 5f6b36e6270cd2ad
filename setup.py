"""Build hook: before the package's files are collected (`pip install .`, `pip install -e .`,
`python -m build`), bundle the dashboard's front end from web/ into
src/taureau/dashboard/static/ when it is missing or older than its sources. The bundle holds
uPlot, fetched by npm, so it is built here rather than committed. Without npm the install goes
on, and `taureau standalone` serves a page saying how to build it (docs/dashboard.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "web"
STATIC = ROOT / "src" / "taureau" / "dashboard" / "static"
BUILT = [STATIC / "app.js", STATIC / "app.css"]


def _stale() -> bool:
    if not all(p.is_file() for p in BUILT):
        return True
    sources = [*(WEB / "src").rglob("*.ts"), WEB / "package.json", WEB / "package-lock.json", WEB / "build.mjs"]
    return max(p.stat().st_mtime for p in sources) > min(p.stat().st_mtime for p in BUILT)


def _say(text: str) -> None:
    print(f"taureau dashboard: {text}", file=sys.stderr)


def build_dashboard() -> None:
    if not (WEB / "package.json").is_file() or not _stale():
        return
    npm = shutil.which("npm")
    if npm is None:
        _say("npm not found: the dashboard is not built (see docs/dashboard.md)")
        return
    installed = WEB / "node_modules" / ".package-lock.json"
    try:
        if not installed.is_file() or installed.stat().st_mtime < (WEB / "package-lock.json").stat().st_mtime:
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
        subprocess.run([npm, "run", "build"], cwd=WEB, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        _say(f"the build failed ({exc}); the rest of the package installs without it")


class BuildPyWithDashboard(build_py):
    def run(self) -> None:
        build_dashboard()
        super().run()


setup(cmdclass={"build_py": BuildPyWithDashboard})
