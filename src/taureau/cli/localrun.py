"""`taureau functions localrun`: run a function in this process against any broker.

As `pulsar-admin functions localrun` does: nothing is registered with a worker, the instances
stop with the command (Ctrl-C), and state (`incr_counter`, `put_state`...) lives in memory
for the run only. `--state-address` gives the function its ephemeral state space.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import threading

from taureau.cli.admin import AdminError


def register(verbs) -> None:
    from taureau.cli.admin import run_verb
    from taureau.cli.functions import _add_config_flags

    p = verbs.add_parser("localrun", help="run a function here, against a broker, until Ctrl-C")
    _add_config_flags(p)
    p.add_argument("--broker-service-url", default=os.environ.get("TAUREAU_SERVICE_URL", "pulsar://localhost:6650"))
    p.add_argument("--state-address", default=None, help="ephemeral state controller host:port")
    p.set_defaults(func=run_verb(lambda _client, a: localrun(a)))


def localrun(a: argparse.Namespace) -> None:
    if not a.py:
        raise AdminError("give the function's code with --py FILE (.py, .zip or .whl)")
    # The function's package is unpacked here for the run only: removed when it ends, however
    # it ends (each run left a copy of the code in the temp dir).
    store_dir = tempfile.mkdtemp(prefix="taureau-localrun-")
    try:
        _run(a, store_dir)
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)


def _run(a: argparse.Namespace, store_dir: str) -> None:
    from taureau.cli.functions import _config_dict
    from taureau.functions.config import FunctionConfig
    from taureau.functions.errors import FunctionCodeError, FunctionConfigError
    from taureau.functions.instance import FunctionInstance, InstanceSpec
    from taureau.functions.instance_main import _ephemeral_factory
    from taureau.functions.packages import EnvBuilder, PackageStore
    from taureau.functions.state_ops import LocalState

    raw = _config_dict(a)
    raw.setdefault("name", (raw.get("className") or "function").split(".")[-1])
    try:
        config = FunctionConfig.from_dict(raw)
        with open(a.py, "rb") as f:
            data = f.read()
        store = PackageStore(store_dir)
        ref = store.put(os.path.basename(a.py), data)
        requirements = None
        if a.requirements:
            with open(a.requirements, "rb") as f:
                requirements = store.put_requirements(f.read())
        prepared = store.prepare(ref, requirements)
        cache = os.path.join(os.path.expanduser("~"), ".cache", "taureau", "envs")
        env = asyncio.run(EnvBuilder(cache).ensure(prepared))
    except OSError as exc:
        raise AdminError(f"cannot read {a.py}: {exc.strerror}") from None
    except (FunctionConfigError, FunctionCodeError) as exc:
        raise AdminError(str(exc)) from None
    code_paths = prepared.code_paths + ([env] if env else [])
    state = LocalState()
    ephemeral = _ephemeral_factory(a.state_address) if a.state_address else None
    instances = [
        FunctionInstance(InstanceSpec(config, i, "localrun", "0", a.broker_service_url, code_paths),
                         state, None, ephemeral)
        for i in range(config.parallelism)
    ]
    try:
        for instance in instances:
            instance.start()
    except (FunctionCodeError, Exception) as exc:
        raise AdminError(f"cannot start the function: {type(exc).__name__}: {exc}") from None
    def stop_all(*_: object) -> None:
        for instance in instances:
            instance.stop()

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    threads = [threading.Thread(target=i.run, daemon=True) for i in instances[1:]]
    for t in threads:
        t.start()
    print(f"running {config.fqfn} with {len(instances)} instance(s); Ctrl-C stops", file=sys.stderr, flush=True)
    instances[0].run()
    for instance in instances[1:]:
        instance.stop()
    for t in threads:
        t.join(10)
