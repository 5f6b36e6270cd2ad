"""The official Java and Go clients' compatibility programs (java/, go/): build and run them.

Each program takes SERVICE_URL TOPIC_PREFIX [CHECK...] and prints "CHECK name ok" or
"CHECK name FAIL why" per check. `python -m tests.compat.native` builds both ahead of the
tests (.ci/run does, so that first-time downloads happen outside pytest's time limits): it exits
1 when a toolchain is missing or a build fails, and skips a program (exit 0, saying why) only
when its build failed because the registry it downloads from is unreachable.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.peers import pulsar_toolchain

HERE = Path(__file__).resolve().parent
CHECKS = [
    "exclusive",
    "shared",
    "failover",
    "key_shared",
    "batching",
    "compression_lz4",
    "compression_zlib",
    "compression_zstd",
    "compression_snappy",
    "reader",
    "seek",
    "transaction",
]
RUN_TIMEOUT = 600  # seconds for all checks; each program bounds every check at 60 s itself
TOOLS = {"java": ("java", "mvn"), "go": ("go",)}


def missing(language: str) -> str | None:
    absent = pulsar_toolchain.missing_tools(*TOOLS[language])
    return f"the {language} client checks need {' and '.join(TOOLS[language])}: {absent}" if absent else None


def command(language: str) -> list[str]:
    """The program's command line, built first if its sources changed."""
    if language == "java":
        out = pulsar_toolchain.maven_package(HERE / "java", "java-client-compat")
        classpath = pulsar_toolchain.java_classpath(out)
        return [
            "java",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            classpath,
            "dev.taureau.compat.Compat",
        ]
    return [str(pulsar_toolchain.go_build(HERE / "go", ".", "go-client-compat"))]


def run(language: str, service_url: str, topic_prefix: str) -> tuple[dict[str, str], str]:
    """Run every check; returns ({check: "ok" or "FAIL why"}, the program's stderr)."""
    proc = subprocess.run(
        [*command(language), service_url, topic_prefix], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("CHECK "):
            name, _, verdict = line.removeprefix("CHECK ").partition(" ")
            results[name] = verdict
    if proc.returncode != 0:
        raise RuntimeError(f"{language} program exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return results, proc.stderr


def main() -> int:
    failed = False
    for language in TOOLS:
        why = missing(language)
        if why:
            print(f"{language}: FAILED, {why}", file=sys.stderr, flush=True)
            failed = True
            continue
        started = time.monotonic()
        try:
            line = " ".join(command(language))
        except pulsar_toolchain.RegistryUnreachable as exc:
            # The tests skip too (they meet the same error), saying the same.
            print(f"{language}: skipped, {str(exc).splitlines()[0]}", flush=True)
            continue
        except pulsar_toolchain.BuildError as exc:
            print(f"{language}: build FAILED: {exc}", file=sys.stderr, flush=True)
            failed = True
            continue
        print(f"{language}: ready in {time.monotonic() - started:.1f} s: {line}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
