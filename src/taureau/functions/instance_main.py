"""`python -m taureau.functions.instance_main --channel PATH`: one instance process.

It starts warm (interpreter up, the client library imported, connected to the worker) and
waits: `assign` makes it an instance of a function until `stop`; `check` makes it load a
function's code once and report whether it loads, then exit (so `functions create` can refuse
bad code without running user code in the worker's process).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from taureau.common.private_files import open_private
from taureau.functions.channel import InstanceChannel, Message
from taureau.functions.errors import FunctionCodeError
from taureau.functions.instance import FunctionInstance, InstanceSpec, load_code
from taureau.functions.runtime.isolation import Confinement, confine
from taureau.functions.state_ops import ChannelState

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """An instance must not outlive its worker (a `kill -9` of standalone included)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)


class Process:
    """Wires the channel to one instance's life in this process."""

    def __init__(self, channel_path: str, token: str, *, in_thread: bool = False) -> None:
        self.in_thread = in_thread  # the thread runtime: share the worker's process, so keep its fds
        self.assigned = threading.Event()
        self.closed = threading.Event()
        self.first: Message | None = None
        self.instance: FunctionInstance | None = None
        self.auth_token = ""  # the function's role's token: the assigned one, then each renewal
        self.channel = InstanceChannel(channel_path, self._on_message, self._on_close)
        self.channel.send({"t": "hello", "token": token, "pid": os.getpid()})

    def _on_message(self, message: Message) -> None:
        kind = message.header["t"]
        if kind in ("assign", "check") and self.first is None:
            self.first = message
            self.assigned.set()
        elif kind == "token":
            self.auth_token = str(message.header["token"])
        elif kind == "invoke" and self.instance is not None:
            self.instance.submit("invoke", message)
        elif kind == "stop":
            if self.instance is not None:
                self.instance.stop()
            else:
                self._on_close()

    def _on_close(self) -> None:
        self.closed.set()
        self.assigned.set()
        if self.instance is not None:
            self.instance.stop()

    def serve(self) -> int:
        self.assigned.wait()
        if self.closed.is_set() or self.first is None:
            return 0
        spec = InstanceSpec.from_dict(self.first.header["spec"])
        if self.first.header["t"] == "check":
            return self._check(spec, self.first.header["req"])
        return self._run(spec)

    def current_token(self) -> str:
        return self.auth_token

    def _confine(self, spec: InstanceSpec) -> dict[str, str]:
        """Confine this process before any of the function's code runs (runtime/isolation.py)."""
        if self.in_thread or "isolation" not in spec.limits:
            return {}
        return confine(Confinement.from_dict(spec.limits["isolation"]))

    def _check(self, spec: InstanceSpec, req: int) -> int:
        try:
            self._confine(spec)
            load_code(spec)
            self.channel.send({"t": "result", "req": req, "ok": True})
        except FunctionCodeError as exc:
            self.channel.send({"t": "result", "req": req, "ok": False, "error": str(exc)})
        except Exception as exc:  # anything else the user's code raised while loading
            self.channel.send({"t": "result", "req": req, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 0

    def _run(self, spec: InstanceSpec) -> int:
        if not self.in_thread:
            _redirect_output(spec.limits.get("log_file"))
        self.auth_token = spec.auth_token or ""
        try:
            isolation = self._confine(spec)
        except (OSError, ValueError) as exc:  # a limit the system refuses: do not run unconfined
            self.channel.send({"t": "failed", "error": f"cannot confine the instance: {exc}"})
            return 2
        token = self.current_token if spec.auth_token else None
        ephemeral = _ephemeral_factory(spec.state_address, token) if spec.state_address else None
        instance = FunctionInstance(spec, ChannelState(self.channel), self.channel, ephemeral, token)
        try:
            instance.start()
        except Exception as exc:  # code that does not load, a broker that refuses: report and exit
            self.channel.send({"t": "failed", "error": f"{type(exc).__name__}: {exc}"})
            return 2
        self.instance = instance
        self.channel.send({"t": "ready", "isolation": isolation})
        if self.closed.is_set():
            instance.stop()
        instance.run()
        return 0


def _redirect_output(path: str | None) -> None:
    """From here on, this process's stdout and stderr go to its instance's log file."""
    if not path:
        return
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _ephemeral_factory(address: str, token: Callable[[], str] | None = None) -> Any:
    """Far memory as the function's own role (its minted token), when authentication is on."""
    state_client: Any = None
    lock = threading.Lock()

    def open_space(fqfn: str) -> Any:
        nonlocal state_client
        from taureau.functions.ephemeral import EphemeralState
        from taureau.state.client import StateClient

        with lock:
            if state_client is None:
                state_client = StateClient(address, token=token)
        return EphemeralState(state_client, fqfn)

    return open_space


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taureau-instance")
    parser.add_argument("--channel", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--parent", type=int, default=os.getppid())
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = Process(args.channel, args.token).serve()
    sys.stdout.flush()
    os._exit(code)  # the client library's threads must not keep the process alive


if __name__ == "__main__":
    main()
