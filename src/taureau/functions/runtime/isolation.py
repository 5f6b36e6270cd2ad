"""OS-level isolation of a function instance process (the process runtime).

An instance process starts warm, before it knows its function, with a scrubbed environment
(`scrubbed_env`: no broker credentials, no other function's secrets). When the worker assigns
it a function, `confine` runs in it before the function's code is loaded:

- umask 077, and a working directory of its own (also HOME and TMPDIR), owner-only;
- resource limits from the function's resources (Pulsar's `--ram`, `--disk`): RLIMIT_DATA at
  twice `ram` plus DATA_HEADROOM (its heap and anonymous memory, reserved or not: a runaway
  allocation raises MemoryError in the function at once, before the cgroup or the 1-second
  resident-memory watch could act; memory really used past `ram` still gets the instance
  killed and restarted, as before), RLIMIT_FSIZE at `disk`, RLIMIT_NOFILE, no core dumps;
- with the files sandbox on (`--functions-sandbox`: by default with `--auth`, where tenants
  share a worker) and where the kernel has Landlock (Linux 5.13+, no privilege needed, binding
  even on root), a filesystem confinement: read-only access to the Python installation, the code paths, a few
  system files (TLS roots, name resolution, time zones), the function's own secrets
  directory, any `--functions-readable-path`, and read-write to its working directory only.
  The worker's data directory (the
  broker's ledgers, keys, other functions' packages and logs) and the secrets root stay out of
  reach: a directory holding either is never opened up;
- with `--functions-run-as USER` on a worker running as root, the instance then drops to that
  user (no supplementary groups), keeping only CAP_DAC_READ_SEARCH so that it can still read
  the root-owned code and secrets Landlock lets it read, and nothing else of root's; its
  processes and threads are capped by RLIMIT_NPROC.

The confinement holds for the thread that applies it and every thread started after it
(those that run the function); the process's channel thread, started before, is not user
code's. What is in force is reported back (`status`'s `limits`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("taureau.functions.isolation")

# Kept from the worker's environment: what Python and the client library need to run.
ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
MAX_FILES = 1024
DATA_HEADROOM = 256 << 20  # thread stacks and the client library's arenas, reserved up front
MAX_PROCS = 4096  # RLIMIT_NPROC of a dropped user (threads count): its instances share it
# System files an instance may read (what the client library and Python's stdlib open).
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/bin", "/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/resolv.conf",
               "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/services",
               "/etc/protocols", "/etc/localtime", "/etc/mime.types")
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full")


def scrubbed_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment an instance process starts with."""
    return {k: environ[k] for k in ENV_KEEP if k in environ}


def secret_env(names: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """For the `env` secrets provider: the variables this function's secrets map names, handed
    to its instance alone (over the worker's private channel, never on a command line)."""
    return {n: environ[n] for n in names if n in environ}


@dataclass(slots=True)
class Confinement:
    """What the worker tells an instance process to confine itself to (JSON in its spec)."""

    work_dir: str
    ram: int
    disk: int
    read_only: list[str] = field(default_factory=list)  # code paths, its secrets directory
    protected: list[str] = field(default_factory=list)  # never opened up, nor any directory above
    env: dict[str, str] = field(default_factory=dict, repr=False)
    run_as: tuple[int, int] | None = None  # (uid, gid) to drop to, from root
    files: bool = True  # confine its files (Landlock)

    def to_dict(self) -> dict[str, Any]:
        return {"workDir": self.work_dir, "ram": self.ram, "disk": self.disk, "readOnly": self.read_only,
                "protected": self.protected, "env": self.env, "runAs": list(self.run_as) if self.run_as else None,
                "files": self.files}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Confinement:
        run_as = data.get("runAs")
        return cls(str(data["workDir"]), int(data["ram"]), int(data["disk"]), list(data.get("readOnly", [])),
                   list(data.get("protected", [])), dict(data.get("env", {})),
                   (int(run_as[0]), int(run_as[1])) if run_as else None, bool(data.get("files", True)))


@dataclass(frozen=True, slots=True)
class Sandbox:
    """The worker's side: where instances get their working directories, what they must never
    reach, and which secrets provider hands them environment variables."""

    work_root: str
    protected: tuple[str, ...]
    secrets_provider: str = "env"
    run_as: tuple[int, int] | None = None  # (uid, gid) instances drop to
    files: bool = True  # confine instances' files (Landlock)
    readable: tuple[str, ...] = ()  # more trees every instance may read (input data)

    def confinement(self, fqfn: str, instance_id: int | str, resources: Any, code_paths: list[str],
                    secrets_dir: str | None, secrets: Mapping[str, Any]) -> Confinement:
        env = secret_env(secrets, os.environ) if self.secrets_provider == "env" else {}
        work_dir = os.path.join(self.work_root, f"{fqfn.replace('/', '.')}.{instance_id}")
        read_only = [*code_paths, *([secrets_dir] if secrets_dir else []), *self.readable]
        return Confinement(work_dir, resources.ram, resources.disk, read_only, list(self.protected), env,
                           self.run_as, self.files)


def confine(c: Confinement) -> dict[str, str]:
    """Apply `c` to this process (see the module docstring); returns what is in force."""
    os.umask(0o077)
    os.makedirs(c.work_dir, mode=0o700, exist_ok=True)
    os.chmod(c.work_dir, 0o700)
    os.chdir(c.work_dir)
    os.environ.update(c.env)
    os.environ["HOME"] = os.environ["TMPDIR"] = c.work_dir
    data = 2 * c.ram + DATA_HEADROOM
    resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    resource.setrlimit(resource.RLIMIT_FSIZE, (c.disk, c.disk))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_FILES, MAX_FILES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    readable = [*SYSTEM_READ, sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path, *c.read_only]
    files = _landlock(readable, c.work_dir, c.protected) if c.files else "not confined (--functions-sandbox off)"
    applied = {"memory_rlimit": f"RLIMIT_DATA {data}", "filesystem": files}
    if c.run_as is not None:
        uid, gid = c.run_as
        os.chown(c.work_dir, uid, gid)
        _drop_to(uid, gid)
        applied["user"] = f"uid {uid}"
    return applied


# -- dropping root ---------------------------------------------------------------------------

_PR_SET_KEEPCAPS = 8
_CAP_VERSION_3 = 0x20080522
_CAP_DAC_READ_SEARCH = 2


def _drop_to(uid: int, gid: int) -> None:
    """Become `uid`:`gid` for good, keeping CAP_DAC_READ_SEARCH alone (effective and permitted)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)  # the permitted capabilities survive (KEEPCAPS); the effective ones do not
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    keep = 1 << _CAP_DAC_READ_SEARCH
    data = (ctypes.c_uint32 * 6)(keep, keep, 0, 0, 0, 0)  # effective, permitted, inheritable x 2 words
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError("the user was not dropped")
    resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCS, MAX_PROCS))


# -- Landlock (linux/landlock.h) ------------------------------------------------------------

_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446  # x86-64 and arm64 alike
_PR_SET_NO_NEW_PRIVS = 38
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FILE_RIGHTS_V3 = _EXECUTE | _WRITE_FILE | _READ_FILE | (1 << 14)  # + TRUNCATE
_READ = _EXECUTE | _READ_FILE | _READ_DIR


def _handled(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= 1 << 13  # REFER
    if abi >= 3:
        rights |= 1 << 14  # TRUNCATE
    if abi >= 5:
        rights |= 1 << 15  # IOCTL_DEV
    return rights


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _covers(root: str, protected: list[str]) -> bool:
    """Would opening up `root` open a protected path (it is one, or holds one)?"""
    root = root.rstrip("/") or "/"
    return any(p == root or p.startswith(root + "/") or root == "/" for p in protected)


def _landlock(readable: list[str], writable: str, protected: list[str]) -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return f"not confined (no Landlock: {os.strerror(ctypes.get_errno())})"
    handled = _handled(abi)
    attr = ctypes.c_uint64(handled)
    ruleset = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(8), ctypes.c_uint32(0))
    if ruleset < 0:
        return f"not confined (Landlock refused the ruleset: {os.strerror(ctypes.get_errno())})"
    protected = [os.path.realpath(p) for p in protected]
    try:
        rules = [(p, _READ) for p in readable if p] + [(d, _READ | _WRITE_FILE) for d in DEVICES]
        rules.append((writable, handled))
        for path, rights in rules:
            real = os.path.realpath(path)
            if path != writable and _covers(real, protected):
                continue  # e.g. a working directory that holds the data directory
            _add_rule(libc, ruleset, real, rights & handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.syscall(_SYS_RESTRICT, ruleset, 0) != 0:
            return f"not confined (Landlock restrict failed: {os.strerror(ctypes.get_errno())})"
    finally:
        os.close(ruleset)
    return f"landlock (ABI {abi})"


def _add_rule(libc: Any, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # absent on this system: nothing to allow
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS_V3  # directory rights on a file are refused (EINVAL)
        rule = _PathBeneath(rights, fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, 1, ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            log.warning("Landlock rule for %s refused: %s", path, os.strerror(ctypes.get_errno()))
    finally:
        os.close(fd)
