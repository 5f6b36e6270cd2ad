"""`taureau functions`: the verbs and flags of `pulsar-admin functions`, over the REST API.

Flags keep pulsar-admin's names and units (`--ram` and `--disk` in bytes, `--cpu` in cores);
a `--function-config-file` (YAML, Pulsar's field names) gives the same fields, and flags on
the command line override it. Names, files and the config are checked before any request.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from typing import Any

import yaml

from taureau.cli import credentials
from taureau.cli.admin import AdminClient, AdminError, run_verb
from taureau.common.errors import InvalidTopicNameError
from taureau.common.files import read_file
from taureau.common.names import check_name_part
from taureau.common.sizes import parse_size
from taureau.functions.config import FunctionConfig
from taureau.functions.errors import FunctionConfigError

BASE = "/admin/v3/functions"


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None


def _bytes(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# flag -> (config field, argparse kwargs); the flags of `pulsar-admin functions create/update`.
Flag = tuple[list[str], str, dict[str, Any]]
CONFIG_FLAGS: list[Flag] = [
    (["--classname"], "className", {"help": "MODULE.CLASS, or MODULE for a plain process(input)"}),
    (["-i", "--inputs"], "inputs", {"help": "comma-separated input topics"}),
    (["--topics-pattern"], "topicsPattern", {"help": "regex of input topics (one namespace)"}),
    (["--custom-serde-inputs"], "customSerdeInputs", {"type": _json, "help": "JSON map topic -> serde class"}),
    (["-o", "--output"], "output", {"help": "output topic"}),
    (["--output-serde-classname"], "outputSerdeClassName", {}),
    (["-st", "--schema-type"], "outputSchemaType", {"help": "avro or json: the output serde is a Record class"}),
    (["--input-specs"], "inputSpecs", {"type": _json, "help": 'JSON map topic -> {"schemaType", "serdeClassName"}'}),
    (["--log-topic"], "logTopic", {"help": "topic that receives log records and print() output"}),
    (["--processing-guarantees"], "processingGuarantees",
     {"choices": ["ATLEAST_ONCE", "ATMOST_ONCE", "EFFECTIVELY_ONCE", "MANUAL"], "type": str.upper}),
    (["--retain-ordering"], "retainOrdering", {"action": "store_const", "const": True}),
    (["--retain-key-ordering"], "retainKeyOrdering", {"action": "store_const", "const": True}),
    (["--forward-source-message-property"], "forwardSourceMessageProperty", {"type": _bool}),
    (["--user-config"], "userConfig", {"type": _json, "help": "JSON object"}),
    (["--secrets"], "secrets", {"type": _json, "help": "JSON map name -> secret"}),
    (["--auto-ack"], "autoAck", {"type": _bool}),
    (["--max-message-retries"], "maxMessageRetries", {"type": int}),
    (["--dead-letter-topic"], "deadLetterTopic", {}),
    (["--subs-name"], "subName", {"help": "subscription name (default tenant/namespace/name)"}),
    (["--subs-position"], "subscriptionPosition", {"choices": ["Latest", "Earliest"]}),
    (["--skip-to-latest"], "skipToLatest", {"action": "store_const", "const": True}),
    (["--parallelism"], "parallelism", {"type": int}),
    (["--timeout-ms"], "timeoutMs", {"type": int}),
    (["--cleanup-subscription"], "cleanupSubscription", {"type": _bool}),
    (["--custom-runtime-options"], "customRuntimeOptions", {"help": 'JSON, e.g. {"runtime": "thread"}'}),
    (["--producer-config"], "producerConfig", {"type": _json}),
    (["--schedule"], "schedule", {"help": "cron expression: run periodically (e.g. '*/5 * * * *')"}),
    (["--min-instances"], "minInstances", {"type": int, "help": "autoscaling floor (0 scales to zero)"}),
    (["--max-instances"], "maxInstances", {"type": int, "help": "autoscaling ceiling"}),
    (["--idle-timeout-ms"], "idleTimeoutMs", {"type": int, "help": "idle time before scaling down"}),
]
RESOURCE_FLAGS: list[Flag] = [(["--cpu"], "cpu", {"type": float, "help": "cores per instance"}),
                  (["--ram"], "ram", {"type": _bytes, "help": "bytes per instance"}),
                  (["--disk"], "disk", {"type": _bytes, "help": "bytes per instance"})]
WINDOW_FLAGS: list[Flag] = [(["--window-length-count"], "windowLengthCount", {"type": int}),
                (["--window-length-duration-ms"], "windowLengthDurationMs", {"type": int}),
                (["--sliding-interval-count"], "slidingIntervalCount", {"type": int}),
                (["--sliding-interval-duration-ms"], "slidingIntervalDurationMs", {"type": int}),
                (["--timestamp-extractor-classname"], "timestampExtractorClassName",
                 {"help": "event-time windows: a class with extract_timestamp(value), or event_time"}),
                (["--max-lag-ms"], "maxLagMs", {"type": int, "help": "event time: how late records may come"}),
                (["--late-data-topic"], "lateDataTopic", {"help": "event time: where late records go"}),
                (["--watermark-emit-interval-ms"], "watermarkEmitIntervalMs", {"type": int})]


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _add_name_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", default=None, help="default public")
    p.add_argument("--namespace", default=None, help="default default")
    p.add_argument("--name", default=None)
    p.add_argument("--fqfn", default=None, help="tenant/namespace/name, instead of the three above")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    _add_name_flags(p)
    p.add_argument("--py", help="the function's code: a .py, .zip or .whl file")
    p.add_argument("--requirements", help="a requirements.txt to install (default: one beside --py)")
    p.add_argument("--function-config-file", help="YAML (or JSON) with Pulsar's FunctionConfig fields")
    for flags, _field, kwargs in CONFIG_FLAGS + RESOURCE_FLAGS + WINDOW_FLAGS:
        p.add_argument(*flags, dest=_dest(flags[-1]), default=None, **kwargs)


def _config_dict(a: argparse.Namespace) -> dict[str, Any]:
    """The config the flags (over the config file) describe, in Pulsar's field names."""
    raw: dict[str, Any] = {}
    if a.function_config_file:
        try:
            with open(a.function_config_file) as f:
                loaded = yaml.safe_load(f)
        except OSError as exc:
            raise AdminError(f"cannot read {a.function_config_file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise AdminError(f"{a.function_config_file} is not YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise AdminError(f"{a.function_config_file} must hold a YAML mapping")
        raw.update(loaded)
    for flags, field, _ in CONFIG_FLAGS:
        value = getattr(a, _dest(flags[-1]))
        if value is not None:
            raw[field] = value
    resources = {f: getattr(a, _dest(fl[-1])) for fl, f, _ in RESOURCE_FLAGS if getattr(a, _dest(fl[-1])) is not None}
    if resources:
        raw["resources"] = {**raw.get("resources", {}), **resources}
    window = {f: getattr(a, _dest(fl[-1])) for fl, f, _ in WINDOW_FLAGS if getattr(a, _dest(fl[-1])) is not None}
    if window:
        raw["windowConfig"] = {**raw.get("windowConfig", {}), **window}
    if a.py:
        raw["py"] = os.path.basename(a.py)
    _apply_names(raw, a)
    return raw


def _apply_names(raw: dict[str, Any], a: argparse.Namespace) -> None:
    if a.fqfn:
        parts = a.fqfn.split("/")
        if len(parts) != 3:
            raise AdminError(f"--fqfn must be tenant/namespace/name, not {a.fqfn!r}")
        raw["tenant"], raw["namespace"], raw["name"] = parts
    for key in ("tenant", "namespace", "name"):
        if getattr(a, key, None):
            raw[key] = getattr(a, key)
    raw.setdefault("tenant", "public")
    raw.setdefault("namespace", "default")


def _fqfn(a: argparse.Namespace) -> str:
    raw: dict[str, Any] = {}
    _apply_names(raw, a)
    if not raw.get("name"):
        raise AdminError("give the function's --name (or --fqfn tenant/namespace/name)")
    try:
        for key, kind in (("tenant", "tenant"), ("namespace", "namespace"), ("name", "function")):
            check_name_part(kind, raw[key])
    except InvalidTopicNameError as exc:
        raise AdminError(str(exc)) from None
    return f"{raw['tenant']}/{raw['namespace']}/{raw['name']}"



def _files(a: argparse.Namespace) -> dict[str, Any]:
    files: dict[str, Any] = {}
    if not a.py:
        return files
    if not a.py.endswith((".py", ".zip", ".whl")):
        raise AdminError(f"--py must be a .py, .zip or .whl file, not {a.py!r}")
    files["data"] = (os.path.basename(a.py), read_file(a.py, AdminError), "application/octet-stream")
    requirements = a.requirements
    beside = os.path.join(os.path.dirname(os.path.abspath(a.py)), "requirements.txt")
    if requirements is None and a.py.endswith(".py") and os.path.isfile(beside):
        requirements = beside
    if requirements:
        files["requirements"] = ("requirements.txt", read_file(requirements, AdminError), "text/plain")
    return files


def _create(c: AdminClient, a: argparse.Namespace) -> str:
    raw = _config_dict(a)
    if not a.py:
        raise AdminError("give the function's code with --py FILE (.py, .zip or .whl)")
    try:
        config = FunctionConfig.from_dict(raw)
    except FunctionConfigError as exc:
        raise AdminError(str(exc)) from None
    files = _files(a)
    c.call("POST", f"{BASE}/{config.fqfn}", files=files, form={"functionConfig": config.to_json()})
    return "Created successfully"


def _update(c: AdminClient, a: argparse.Namespace) -> str:
    raw = _config_dict(a)
    fqfn = _fqfn(a)
    c.call("PUT", f"{BASE}/{fqfn}", files=_files(a) or None, form={"functionConfig": json.dumps(raw)})
    return "Updated successfully"


def _instance_path(a: argparse.Namespace, action: str) -> str:
    fqfn = _fqfn(a)
    if getattr(a, "instance_id", None) is not None:
        return f"{BASE}/{fqfn}/{a.instance_id}/{action}"
    return f"{BASE}/{fqfn}/{action}"


def _action(action: str, done: str):
    def run(c: AdminClient, a: argparse.Namespace) -> str:
        c.call("POST", _instance_path(a, action))
        return done

    return run


def _text(result: Any) -> str:
    if result is None:
        return ""
    content = getattr(result, "content", result)
    if isinstance(content, bytes):
        try:
            return content.decode()
        except UnicodeDecodeError:
            return base64.b64encode(content).decode()
    return json.dumps(content, indent=2)


def _trigger(c: AdminClient, a: argparse.Namespace) -> str:
    fqfn = _fqfn(a)
    if (a.trigger_value is None) == (a.trigger_file is None):
        raise AdminError("give exactly one of --trigger-value or --trigger-file")
    form = {"topic": a.topic} if a.topic else {}
    if a.trigger_file:
        files = {"dataStream": ("data", read_file(a.trigger_file, AdminError), "application/octet-stream")}
        return _text(c.call("POST", f"{BASE}/{fqfn}/trigger", files=files, form=form))
    return _text(c.call("POST", f"{BASE}/{fqfn}/trigger", form={**form, "data": a.trigger_value}))


def _invoke(c: AdminClient, a: argparse.Namespace) -> str:
    fqfn = _fqfn(a)
    if (a.data is None) == (a.data_file is None):
        raise AdminError("give exactly one of --data or --data-file")
    payload = a.data.encode() if a.data is not None else read_file(a.data_file, AdminError)
    return _text(c.call("POST", f"/functions/{fqfn}", content=payload))


def _putstate(c: AdminClient, a: argparse.Namespace) -> str:
    fqfn = _fqfn(a)
    state = a.state
    if not isinstance(state, dict) or "key" not in state:
        raise AdminError('--state must be a JSON FunctionState, e.g. {"key": "k", "stringValue": "v"}')
    c.call("POST", f"{BASE}/{fqfn}/state/{state['key']}", form={"state": json.dumps(state)})
    return "Put state successfully"


INSTANCE = (["--instance-id"], {"type": int, "default": None, "help": "one instance (default: all)"})

# verb -> (help, extra arguments, handler); handlers return text to print.
VERBS: dict[str, tuple[str, list[tuple[list[str], dict]], Any]] = {
    "create": ("register a function and start it", [], _create),
    "update": ("change a function's config or code (instances restart)", [], _update),
    "delete": ("stop a function and forget it", [],
               lambda c, a: (c.call("DELETE", f"{BASE}/{_fqfn(a)}"), "Deleted successfully")[1]),
    "get": ("a function's config", [], lambda c, a: _text(c.call("GET", f"{BASE}/{_fqfn(a)}"))),
    "list": ("the functions of a namespace", [],
             lambda c, a: "\n".join(c.call("GET", f"{BASE}/{a.tenant or 'public'}/{a.namespace or 'default'}"))
             or None),
    "status": ("instances, restarts, errors, backlog, scaling", [INSTANCE],
               lambda c, a: _text(c.call("GET", _instance_path(a, "status")))),
    "stats": ("processing counters and latency", [INSTANCE],
              lambda c, a: _text(c.call("GET", _instance_path(a, "stats")))),
    "start": ("start a stopped function (or instance)", [INSTANCE], _action("start", "Started successfully")),
    "stop": ("stop a function (or instance); it stays registered", [INSTANCE],
             _action("stop", "Stopped successfully")),
    "restart": ("restart a function's instances", [INSTANCE], _action("restart", "Restarted successfully")),
    "trigger": ("publish a value to an input topic and print the output it causes",
                [(["--trigger-value"], {}), (["--trigger-file"], {}), (["--topic"], {})], _trigger),
    "invoke": ("run the function on a value over HTTP and print the result",
               [(["--data"], {}), (["--data-file"], {})], _invoke),
    "querystate": ("read a state key", [(["-k", "--key"], {"required": True})],
                   lambda c, a: _text(c.call("GET", f"{BASE}/{_fqfn(a)}/state/{a.key}"))),
    "putstate": ("write a state key", [(["-s", "--state"], {"type": _json, "required": True,
                                                              "help": 'JSON {"key":..., "stringValue":...}'})],
                 _putstate),
}


def register(sub) -> None:
    p = sub.add_parser("functions", help="deploy and manage functions (pulsar-admin functions verbs)")
    p.add_argument("--admin-url", default=os.environ.get("TAUREAU_ADMIN_URL", "http://localhost:8080"),
                   help="admin REST URL (env TAUREAU_ADMIN_URL, default http://localhost:8080)")
    credentials.add_options(p)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    for name, (help_text, extra, handler) in VERBS.items():
        v = verbs.add_parser(name, help=help_text)
        if name in ("create", "update"):
            _add_config_flags(v)
        else:
            _add_name_flags(v)
        for flags, kwargs in extra:
            v.add_argument(*flags, **kwargs)
        v.set_defaults(func=run_verb(handler))
    from taureau.cli import localrun

    localrun.register(verbs)
