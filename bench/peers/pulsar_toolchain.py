"""Build the Java and Go programs that compare Taureau with Apache Pulsar, once per source change.

Everything lands under one cache directory, TAUREAU_CACHE (default ~/.cache/taureau), so that
.ci/run, pytest and the benchmarks share it and a second run builds nothing: Maven's repository
(m2/), Go's module and build caches (go/), and each build's output in build/<name>-<hash>/, where
the hash covers the build's own source files. A build that fails leaves no output behind.

A failed build raises BuildError, or RegistryUnreachable (a BuildError) when the registry it
downloads from (Maven Central, the Go module proxy) cannot be reached: callers skip on that one
only, and fail on any other.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

CACHE = Path(os.environ.get("TAUREAU_CACHE", Path.home() / ".cache" / "taureau"))
BUILDS = CACHE / "build"
# Pulsar's poms name repositories beyond Maven Central that this network does not reach.
MAVEN_SETTINGS = Path(__file__).with_name("pulsar_standalone") / "settings.xml"
# The one repository settings.xml lets Maven use.
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2/"
BUILD_TIMEOUT = 1200  # seconds; a first build downloads a few hundred MB of dependencies
PROBE_TIMEOUT = 10.0  # seconds for the registry check after a failed build


class BuildError(RuntimeError):
    """A build failed; the message ends with the tool's last output lines."""


class RegistryUnreachable(BuildError):
    """A build failed and the registry it downloads from does not answer."""


def reachable(url: str) -> bool:
    """Whether `url` answers HTTP at all (any status: only a network failure counts)."""
    try:
        httpx.head(url, timeout=PROBE_TIMEOUT)
    except httpx.HTTPError:
        return False
    return True


def go_proxy() -> str | None:
    """The first module proxy Go would use (GOPROXY), None if it uses none (off, direct)."""
    proxies = os.environ.get("GOPROXY") or "https://proxy.golang.org"  # Go's default when unset or empty
    first = proxies.split(",")[0].split("|")[0].strip()
    return first if first.startswith(("http://", "https://")) else None


def _blame_registry(registry: str | None, build: Callable[[], None]) -> None:
    """Run `build`; a BuildError while `registry` is unreachable becomes RegistryUnreachable."""
    try:
        build()
    except BuildError as exc:
        if registry is not None and not reachable(registry):
            first = str(exc).splitlines()[0]
            raise RegistryUnreachable(f"{registry} is unreachable, so {first}") from exc
        raise


def missing_tools(*tools: str) -> str | None:
    """None if every tool is on PATH, else a sentence naming the missing ones."""
    absent = [t for t in tools if shutil.which(t) is None]
    return f"{', '.join(absent)} not on PATH" if absent else None


def source_hash(directory: Path, settings: str = "") -> str:
    """A digest of every file under `directory` (names and contents), build outputs excluded,
    and of the build's `settings`."""
    digest = hashlib.sha256(settings.encode() + b"\0")
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory)
        if rel.parts[0] in ("target", "__pycache__"):
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _build(name: str, source: Path, steps, settings: str = "") -> Path:
    """Run `steps(tmp_out)` unless build/<name>-<hash> exists; publish its output atomically."""
    out = BUILDS / f"{name}-{source_hash(source, settings)}"
    if out.is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
    try:
        steps(tmp)
        try:
            tmp.rename(out)
        except OSError:  # another process published the same build first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=BUILD_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"{' '.join(cmd[:3])} ... in {cwd} took over {BUILD_TIMEOUT} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise BuildError(f"{' '.join(cmd[:3])} ... in {cwd} exited {proc.returncode}:\n{tail}")


def maven_package(project: Path, name: str) -> Path:
    """`mvn package` of a pom whose build directory is ${taureau.out}; returns that directory
    (classes/ and, by the poms' copy-dependencies step, lib/)."""

    def steps(out: Path) -> None:
        repo = CACHE / "m2"
        cmd = ["mvn", "-B", "-q", "-s", str(MAVEN_SETTINGS), f"-Dmaven.repo.local={repo}"]
        _blame_registry(MAVEN_CENTRAL, lambda: _run([*cmd, f"-Dtaureau.out={out}", "package"], project))

    return _build(name, project, steps)


def go_build(module: Path, package: str, name: str) -> Path:
    """`go build` of `package` inside the Go module at `module`; returns the binary's path."""

    # Without cgo: pulsar-client-go then uses its pure-Go zstd instead of compiling DataDog's C
    # zstd, which more than halves a first build (2.5 instead of 7 minutes on a busy 2-core machine).
    env = {"GOMODCACHE": str(CACHE / "go" / "mod"), "GOCACHE": str(CACHE / "go" / "build"), "CGO_ENABLED": "0"}

    def steps(out: Path) -> None:
        _blame_registry(go_proxy(), lambda: _run(["go", "build", "-o", str(out / name), package], module, env))

    return _build(name, module, steps, settings="CGO_ENABLED=0") / name


def java_classpath(out: Path) -> str:
    """The class path of a maven_package output: its own classes, then every dependency jar."""
    return os.pathsep.join([str(out / "classes"), str(out / "lib" / "*")])
