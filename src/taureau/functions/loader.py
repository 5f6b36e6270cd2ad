"""Load user code the way Pulsar's Python runtime does: a class, a module, or a function.

`--classname pkg.mod.Cls` names a class whose instances have `process(input, context)`;
`--classname mod` (no class) names a module with a plain `process(input)`; Taureau also takes
`mod.func`, a plain function, called with `(input)` or `(input, context)` by its arity.
Serdes are named the same way; `serde.IdentitySerDe` and `serde.PickleSerDe` are the SDK's.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import types
from collections.abc import Callable
from typing import Any

from pulsar.functions import serde as sdk_serde

from taureau.functions.errors import FunctionCodeError

# A loaded function: call(input, context) -> result (maybe a coroutine).
Invoke = Callable[[Any, Any], Any]


def add_code_paths(paths: list[str]) -> None:
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)


def resolve(dotted: str) -> Any:
    """The object `dotted` names: a module, or an attribute of one (raises FunctionCodeError)."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (dotted == exc.name or dotted.startswith(exc.name + ".")):
            raise FunctionCodeError(f"cannot import {dotted!r}: {exc}") from None
    except SyntaxError as exc:
        raise FunctionCodeError(f"syntax error in {exc.filename}, line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # the module raised while importing: report it, do not crash
        raise FunctionCodeError(f"importing {dotted!r} raised {type(exc).__name__}: {exc}") from None
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise FunctionCodeError(f"no module named {dotted!r}")
    owner = resolve(module_name)
    try:
        return getattr(owner, attr)
    except AttributeError:
        raise FunctionCodeError(f"{module_name!r} has no attribute {attr!r}") from None


def load_function(class_name: str) -> Invoke:
    """Return call(input, context) for the user's function (raises FunctionCodeError)."""
    target = resolve(class_name)
    if isinstance(target, types.ModuleType):
        process = getattr(target, "process", None)
        if not callable(process):
            raise FunctionCodeError(f"module {class_name!r} has no process(input) function")
        return _by_arity(process, class_name)
    if inspect.isclass(target):
        try:
            instance = target()
        except Exception as exc:
            raise FunctionCodeError(f"{class_name}() raised {type(exc).__name__}: {exc}") from None
        process = getattr(instance, "process", None)
        if not callable(process):
            raise FunctionCodeError(f"class {class_name!r} has no process(input, context) method")
        return process
    if callable(target):
        return _by_arity(target, class_name)
    raise FunctionCodeError(f"{class_name!r} is neither a class, a module nor a function")


def _by_arity(fn: Callable[..., Any], name: str) -> Invoke:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= 2:
        return fn
    if len(params) == 1:
        return lambda value, _context: fn(value)
    raise FunctionCodeError(f"{name} must take the input as its first argument")


class FastIdentitySerDe(sdk_serde.IdentitySerDe):
    """The SDK's IdentitySerDe, same results, without three raised exceptions per plain string.

    `deserialize` tries int, float, complex and str on the UTF-8 text and keeps the first that
    parses. None of the first three can parse text without a digit, a `j` or the letters of
    `inf` / `nan`, so such text goes straight to str."""

    _MAYBE_NUMBER = re.compile(r"[\djJiInN]")  # a digit, or a letter of `j`, `inf`, `nan`

    def deserialize(self, input_bytes):
        try:
            text = input_bytes.decode("utf-8")
        except UnicodeDecodeError:
            return input_bytes
        if self._MAYBE_NUMBER.search(text) is None:
            return text
        return super().deserialize(input_bytes)


_SDK_SERDES = {"IdentitySerDe": FastIdentitySerDe, "PickleSerDe": sdk_serde.PickleSerDe}


class SchemaSerDe:
    """A serde from a `pulsar.schema.Record` class and a schema type ("avro" or "json"),
    for inputSpecs' `schemaType` and `--schema-type` (Pulsar's Python runtime does the same)."""

    def __init__(self, record_class: type, schema_type: str) -> None:
        from pulsar.schema import AvroSchema, JsonSchema

        self.schema = AvroSchema(record_class) if schema_type == "avro" else JsonSchema(record_class)

    def serialize(self, value: Any) -> bytes:
        return self.schema.encode(value)

    def deserialize(self, data: bytes) -> Any:
        return self.schema.decode(data)


def load_serde(class_name: str | None, schema_type: str | None = None) -> Any:
    """An instance of the serde `class_name` names (None: IdentitySerDe); with a schema type,
    `class_name` names the Record class of an Avro or JSON schema."""
    if schema_type:
        from pulsar.schema import Record

        if schema_type.lower() not in ("avro", "json"):
            raise FunctionCodeError(f"schema type {schema_type!r} is not supported (avro, json)")
        record = resolve(class_name or "")
        if not (inspect.isclass(record) and issubclass(record, Record)):
            raise FunctionCodeError(f"{class_name!r} is not a pulsar.schema.Record class")
        return SchemaSerDe(record, schema_type.lower())
    if not class_name:
        return FastIdentitySerDe()
    short = class_name.removeprefix("pulsar.functions.").removeprefix("serde.")
    if short in _SDK_SERDES:
        return _SDK_SERDES[short]()
    cls = resolve(class_name)
    if not inspect.isclass(cls):
        raise FunctionCodeError(f"serde {class_name!r} is not a class")
    try:
        instance = cls()
    except Exception as exc:
        raise FunctionCodeError(f"{class_name}() raised {type(exc).__name__}: {exc}") from None
    if not (callable(getattr(instance, "serialize", None)) and callable(getattr(instance, "deserialize", None))):
        raise FunctionCodeError(f"serde {class_name!r} needs serialize() and deserialize()")
    return instance
