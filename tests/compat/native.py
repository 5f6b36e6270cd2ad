"""The official Java and Go clients' compatibility programs (java/, go/): build and run them.

Each program takes SERVICE_URL TOPIC_PREFIX [CHECK...] and prints "CHECK name ok" or
"CHECK name FAIL why" per check. `python -m tests.compat.native` builds both ahead of the
tests (.ci/run does, so that first-time downloads happen outside pytest's time limits).
"""

from __future__ import annotations

import subprocess
import sys
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
    for language in TOOLS:
        why = missing(language)
        print(f"{language}: {'skipped, ' + why if why else ' '.join(command(language))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
