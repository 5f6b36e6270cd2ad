"""The headers of a peeked message: whatever a producer stored, they are valid HTTP.

Stored strings need not be header-safe: a property may hold CR/LF (a header injection, and
the server drops the response), characters outside Latin-1, or bytes that are not UTF-8 at
all (entries stored before validation). Values are therefore percent-encoded (RFC 3986, of
their UTF-8 bytes) whenever they hold anything but printable ASCII or `%`, and property
names whenever they hold anything an HTTP header name may not (RFC 9110 `tchar`): ordinary
values read exactly as in Pulsar, the rest decode with any URL decoder. As Pulsar 3.1+ does
(PIP-279) the properties also travel as one JSON object in `X-Pulsar-PROPERTY`, ASCII-escaped.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from taureau.storage.position import Position

_VALUE_SAFE = "".join(c for c in string.printable if c not in string.whitespace and c != "%") + " "
_NAME_SAFE = string.ascii_letters + string.digits + "!#$&'*+-.^_`|~"


def _text(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)


def header_value(value: str | bytes) -> str:
    encoded = quote(_text(value), safe=_VALUE_SAFE)
    if encoded[:1] == " " or encoded[-1:] == " ":  # HTTP strips them: encode every space
        encoded = quote(_text(value), safe=_VALUE_SAFE.replace(" ", ""))
    return encoded


def header_name(value: str | bytes) -> str:
    return quote(_text(value), safe=_NAME_SAFE)


def json_text(value: str | bytes) -> str:
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")


def peek_headers(
    position: Position,
    meta,
    index: int,
    properties: Mapping[Any, Any],
    key: str | bytes | None,
) -> dict[str, str]:
    """Headers for message `index` of the entry at `position` (meta: its MessageMetadata).
    Property names and values are str, or bytes where upb found no valid UTF-8."""
    headers = {
        "X-Pulsar-Message-ID": f"{position.ledger_id}:{position.entry_id}",
        "X-Pulsar-publish-time": str(meta.publish_time),
        "X-Pulsar-producer-name": header_value(meta.producer_name),
        "X-Pulsar-sequence-id": str(meta.sequence_id + index),
    }
    if meta.HasField("num_messages_in_batch"):
        headers["X-Pulsar-batch-index"] = str(index)
    if key is not None:
        headers["X-Pulsar-partition-key"] = header_value(key)
    if meta.replicated_from:  # copied here from another cluster by geo-replication
        headers["X-Pulsar-replicated-from"] = header_value(meta.replicated_from)
    for name, value in properties.items():
        headers[f"X-Pulsar-PROPERTY-{header_name(name)}"] = header_value(value)
    if properties:
        as_text = {json_text(k): json_text(v) for k, v in properties.items()}
        headers["X-Pulsar-PROPERTY"] = json.dumps(as_text, ensure_ascii=True, separators=(",", ":"))
    return headers
