"""What `context.incr_counter / put_state / get_state ...` call: the function's durable table.

A counter is a value of 8 bytes, a big-endian signed integer (as BookKeeper's table service
stores them), so `get_state` on a counter returns those bytes and a counter op on any other
value is an error. Keys are UTF-8 strings of at most MAX_KEY_BYTES; values at most
MAX_VALUE_BYTES.
"""

from __future__ import annotations

import struct
import threading
from typing import Protocol

from taureau.functions import errors
from taureau.functions.channel import ChannelError, InstanceChannel

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1024 * 1024
_COUNTER = struct.Struct(">q")
STATE_TIMEOUT_S = 30.0


def encode_counter(value: int) -> bytes:
    return _COUNTER.pack(value)


def decode_counter(key: str, value: bytes) -> int:
    if len(value) != _COUNTER.size:
        raise errors.FunctionStateError(f"state {key!r} is not a counter ({len(value)} bytes)")
    return _COUNTER.unpack(value)[0]


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise errors.FunctionStateError("a state key is a non-empty string")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise errors.FunctionStateError(f"state key over {MAX_KEY_BYTES} bytes")
    return key


def check_value(value: object) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes | bytearray | memoryview):
        raise errors.FunctionStateError(f"state values are bytes or str, not {type(value).__name__}")
    value = bytes(value)
    if len(value) > MAX_VALUE_BYTES:
        raise errors.FunctionStateError(f"state value over {MAX_VALUE_BYTES} bytes")
    return value


class FunctionState(Protocol):
    def incr(self, key: str, amount: int) -> int: ...
    def get_counter(self, key: str) -> int: ...
    def put(self, key: str, value: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def delete(self, key: str) -> None: ...
    def keys(self, prefix: str = "") -> list[str]: ...


# Errors that cross the channel by class name.
ERROR_KINDS: dict[str, type[errors.FunctionError]] = {
    cls.__name__: cls
    for cls in (errors.FunctionStateError, errors.StateKeyNotFoundError, errors.FunctionNotFoundError,
                errors.FunctionError)
}


class ChannelState:
    """The instance's view of its function's table, kept by the worker (one round trip an op)."""

    def __init__(self, channel: InstanceChannel) -> None:
        self._channel = channel

    def _call(self, op: str, key: str, blob: bytes = b"", **fields: object) -> tuple[dict, bytes]:
        try:
            answer = self._channel.request({"t": "state", "op": op, "key": key, **fields}, blob)
            message = answer.result(STATE_TIMEOUT_S)
        except ChannelError as exc:
            raise errors.FunctionError(f"state store unreachable: {exc}") from None
        except TimeoutError:
            raise errors.FunctionError(f"state op {op} timed out after {STATE_TIMEOUT_S}s") from None
        header = message.header
        if not header.get("ok"):
            cls = ERROR_KINDS.get(header.get("kind", ""), errors.FunctionError)
            raise cls(header.get("error", "state op failed"))
        return header, message.blob

    def incr(self, key: str, amount: int) -> int:
        return int(self._call("incr", check_key(key), amount=int(amount))[0]["value"])

    def get_counter(self, key: str) -> int:
        return int(self._call("get_counter", check_key(key))[0]["value"])

    def put(self, key: str, value: bytes) -> None:
        self._call("put", check_key(key), check_value(value))

    def get(self, key: str) -> bytes | None:
        header, blob = self._call("get", check_key(key))
        return blob if header.get("found") else None

    def delete(self, key: str) -> None:
        self._call("delete", check_key(key))

    def keys(self, prefix: str = "") -> list[str]:
        return list(self._call("keys", prefix)[0]["keys"])


class LocalState:
    """An in-memory table for `functions localrun` (nothing is kept after it exits)."""

    def __init__(self) -> None:
        self._table: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def incr(self, key: str, amount: int) -> int:
        with self._lock:
            old = self._table.get(check_key(key))
            value = (decode_counter(key, old) if old is not None else 0) + int(amount)
            self._table[key] = encode_counter(value)
            return value

    def get_counter(self, key: str) -> int:
        value = self._table.get(check_key(key))
        return decode_counter(key, value) if value is not None else 0

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._table[check_key(key)] = check_value(value)

    def get(self, key: str) -> bytes | None:
        return self._table.get(check_key(key))

    def delete(self, key: str) -> None:
        with self._lock:
            self._table.pop(check_key(key), None)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._table if k.startswith(prefix))
