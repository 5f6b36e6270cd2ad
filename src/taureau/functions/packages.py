"""Function packages (a .py, a .zip or a wheel) and the environments their requirements need.

Packages are stored by content (sha256) under `functions/packages/<sha>/<file name>`, so two
functions uploading the same file share it and an update never overwrites what a running
instance loaded. A zip is unpacked once beside it, with limits on size and member count
(a zip bomb is refused) and no member outside the directory.

A package's requirements (a `requirements.txt` beside the .py or in the zip, `deps/` wheels
in the zip, or the wheel itself) are installed with `pip install --target` into
`functions/envs/<hash>`, where the hash covers the Python version and every input. The same
set is installed once and shared by every function that asks for it, across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass, field

from taureau.common.private_files import FILE_MODE, fsync_dir, make_private_dirs
from taureau.functions.errors import FunctionCodeError

MAX_PACKAGE_BYTES = 256 * 1024 * 1024
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
MAX_ZIP_MEMBERS = 20_000
PIP_TIMEOUT_S = 600.0
SUFFIXES = (".py", ".zip", ".whl")


@dataclass(frozen=True, slots=True)
class PackageRef:
    sha: str
    filename: str

    def to_dict(self) -> dict[str, str]:
        return {"sha": self.sha, "filename": self.filename}


@dataclass(slots=True)
class PreparedCode:
    code_paths: list[str] = field(default_factory=list)  # sys.path entries, first wins
    requirements: str | None = None  # a requirements.txt to install
    find_links: list[str] = field(default_factory=list)  # directories of wheels (zip deps/)
    wheel: str | None = None  # the package itself, when it is a wheel

    @property
    def needs_env(self) -> bool:
        return self.requirements is not None or self.wheel is not None


def check_filename(filename: str) -> str:
    base = os.path.basename(filename or "")
    if not base or base != filename or not base.endswith(SUFFIXES) or base.startswith("."):
        raise FunctionCodeError(f"a function package is a .py, .zip or .whl file, not {filename!r}")
    if base.endswith(".py") and not base[:-3].isidentifier():
        raise FunctionCodeError(f"{base!r} is not importable as a module (use a Python identifier)")
    return base


class PackageStore:
    def __init__(self, root: str) -> None:
        self.root = root
        make_private_dirs(root)

    def put(self, filename: str, data: bytes) -> PackageRef:
        """Store durably (fsync) before anything refers to it."""
        filename = check_filename(filename)
        if len(data) > MAX_PACKAGE_BYTES:
            raise FunctionCodeError(f"package is over {MAX_PACKAGE_BYTES} bytes")
        if filename.endswith((".zip", ".whl")) and not zipfile.is_zipfile(io.BytesIO(data)):
            raise FunctionCodeError(f"{filename} is not a zip archive")
        if filename.endswith(".py"):
            try:
                compile(data, filename, "exec")
            except SyntaxError as exc:
                raise FunctionCodeError(f"syntax error in {filename}, line {exc.lineno}: {exc.msg}") from None
            except ValueError as exc:  # NUL bytes and the like
                raise FunctionCodeError(f"{filename} is not Python source: {exc}") from None
        sha = hashlib.sha256(data).hexdigest()
        ref = PackageRef(sha, filename)
        path = self.path(ref)
        if os.path.exists(path):
            return ref
        directory = os.path.dirname(path)
        make_private_dirs(directory)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(directory)
        return ref

    def put_requirements(self, data: bytes) -> PackageRef:
        if len(data) > 1024 * 1024:
            raise FunctionCodeError("requirements.txt is over 1 MiB")
        try:
            data.decode()
        except UnicodeDecodeError:
            raise FunctionCodeError("requirements.txt is not UTF-8 text") from None
        sha = hashlib.sha256(data).hexdigest()
        ref = PackageRef(sha, "requirements.txt")
        path = self.path(ref)
        if not os.path.exists(path):
            make_private_dirs(os.path.dirname(path))
            with open(path + ".tmp", "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(path + ".tmp", path)
        return ref

    def path(self, ref: PackageRef) -> str:
        return os.path.join(self.root, ref.sha, ref.filename)

    def read(self, ref: PackageRef) -> bytes:
        with open(self.path(ref), "rb") as f:
            return f.read()

    def prepare(self, ref: PackageRef, requirements: PackageRef | None = None) -> PreparedCode:
        """Where the code is importable from, and what it needs installed."""
        path = self.path(ref)
        if not os.path.exists(path):
            raise FunctionCodeError(f"package {ref.filename} ({ref.sha[:12]}) is missing from the store")
        prepared = PreparedCode()
        if ref.filename.endswith(".py"):
            prepared.code_paths = [os.path.dirname(path)]
        elif ref.filename.endswith(".whl"):
            prepared.wheel = path
        else:
            root = self._unpack(path)
            prepared.code_paths = _zip_code_paths(root)
            for base in [root, *prepared.code_paths]:
                candidate = os.path.join(base, "requirements.txt")
                if prepared.requirements is None and os.path.isfile(candidate):
                    prepared.requirements = candidate
                deps = os.path.join(base, "deps")
                if os.path.isdir(deps) and deps not in prepared.find_links:
                    prepared.find_links.append(deps)
        if requirements is not None:
            prepared.requirements = self.path(requirements)
        return prepared

    def _unpack(self, path: str) -> str:
        target = path + ".d"
        if os.path.isdir(target):
            return target
        tmp = target + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
                if len(members) > MAX_ZIP_MEMBERS:
                    raise FunctionCodeError(f"zip has over {MAX_ZIP_MEMBERS} members")
                if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                    raise FunctionCodeError(f"zip unpacks to over {MAX_UNPACKED_BYTES} bytes")
                for member in members:
                    name = member.filename
                    if name.startswith("/") or ".." in name.replace("\\", "/").split("/"):
                        raise FunctionCodeError(f"zip member {name!r} points outside the package")
                archive.extractall(tmp)
        except zipfile.BadZipFile as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FunctionCodeError(f"bad zip: {exc}") from None
        except FunctionCodeError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.replace(tmp, target)
        return target

    def remove_unreferenced(self, keep: set[str]) -> None:
        for sha in os.listdir(self.root):
            if sha not in keep:
                shutil.rmtree(os.path.join(self.root, sha), ignore_errors=True)


def _zip_code_paths(root: str) -> list[str]:
    """Pulsar's zip layout is `<name>/src/...` (+ `deps/`); plainer zips hold modules at the
    top or in one folder. Every candidate that exists goes on sys.path."""
    paths = []
    for candidate in [os.path.join(root, "src"), root]:
        if os.path.isdir(candidate):
            paths.append(candidate)
    for entry in sorted(os.listdir(root)):
        sub = os.path.join(root, entry)
        if os.path.isdir(sub) and entry not in ("src", "deps", "__MACOSX") and not entry.startswith("."):
            for candidate in [os.path.join(sub, "src"), sub]:
                if os.path.isdir(candidate):
                    paths.append(candidate)
    return paths


class EnvBuilder:
    """Installs requirement sets into shared, cached target directories."""

    def __init__(self, root: str) -> None:
        self.root = root
        make_private_dirs(root)
        self._locks: dict[str, asyncio.Lock] = {}

    def key(self, prepared: PreparedCode) -> str:
        digest = hashlib.sha256(f"python {sys.version_info[:2]}\n".encode())
        for path in filter(None, [prepared.requirements, prepared.wheel]):
            digest.update(_file_digest(path))
        for directory in prepared.find_links:
            for name in sorted(os.listdir(directory)):
                digest.update(name.encode() + _file_digest(os.path.join(directory, name)))
        return digest.hexdigest()[:32]

    async def ensure(self, prepared: PreparedCode) -> str | None:
        """The env directory for `prepared` (installed now if new); None if it needs none."""
        if not prepared.needs_env:
            return None
        key = self.key(prepared)
        target = os.path.join(self.root, key)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if os.path.exists(os.path.join(target, ".complete")):
                return target
            tmp = target + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            args = [sys.executable, "-m", "pip", "install", "--quiet", "--no-input",
                    "--disable-pip-version-check", "--target", tmp]
            for directory in prepared.find_links:
                args += ["--find-links", directory]
            if prepared.requirements:
                args += ["-r", prepared.requirements]
            if prepared.wheel:
                args.append(prepared.wheel)
            proc = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                cwd=os.path.dirname(prepared.requirements or prepared.wheel or self.root),
            )
            try:
                output, _ = await asyncio.wait_for(proc.communicate(), PIP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                shutil.rmtree(tmp, ignore_errors=True)
                raise FunctionCodeError(f"installing requirements took over {PIP_TIMEOUT_S:.0f}s") from None
            if proc.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                tail = "\n".join(output.decode(errors="replace").strip().splitlines()[-5:])
                raise FunctionCodeError(f"installing requirements failed: {tail}")
            with open(os.path.join(tmp, ".complete"), "w") as f:
                f.write(" ".join(args[1:]) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
            return target


def _file_digest(path: str) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()
