"""Argument types for the CLI: names and URLs are checked while arguments are parsed, before
anything connects, so a typo is one clear line instead of a traceback or a 30 s timeout."""

from __future__ import annotations

import argparse
import re

from taureau.broker.resources import check_actions
from taureau.common.errors import TaureauError
from taureau.common.names import NamespaceName, TopicName, check_name_part

# pulsar://host:port or pulsar+ssl://, a comma-separated host list allowed, as the clients take.
_SERVICE_URL = re.compile(r"pulsar(\+ssl)?://[^/:,\s]+(:\d+)?(,[^/:,\s]+(:\d+)?)*/?")
_LISTENER = re.compile(r"([A-Za-z0-9_.\-]+):(\S+)")
_HTTP_URL = re.compile(r"https?://[^/\s]+(/\S*)?")


def seconds(text: str) -> float:
    """A duration in seconds, 0 or more (0 where a flag says so means off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be 0 or more and finite")
    return value


def true_or_false(text: str) -> bool:
    """A boolean setting as Pulsar's configuration writes it."""
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{text!r}: give true or false")
    return text.lower() == "true"


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def inactive_topic_mode(text: str) -> str:
    from taureau.broker.inactive_topics import DELETE_MODES

    if text not in DELETE_MODES:
        raise argparse.ArgumentTypeError(f"{text!r}: give one of {', '.join(DELETE_MODES)}")
    return text


def topic(text: str) -> str:
    try:
        TopicName.parse(text)
    except TaureauError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def namespace(text: str) -> str:
    try:
        NamespaceName.parse(text)
    except TaureauError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, e.g. public/default") from None
    return text


def tenant(text: str) -> str:
    try:
        check_name_part("tenant", text)
    except TaureauError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def role(text: str) -> str:
    if not text.strip() or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"invalid role {text!r}: a role is a non-empty name without spaces")
    return text


def roles(text: str) -> list[str]:
    """A comma-separated list of roles."""
    return [role(part.strip()) for part in text.split(",")]


def actions(text: str) -> list[str]:
    """A comma-separated list of permission actions, as pulsar-admin's --actions."""
    try:
        return check_actions([part.strip() for part in text.split(",") if part.strip()] or [""])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def service_url(text: str) -> str:
    if not _SERVICE_URL.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid service URL {text!r}: expected pulsar://host:port (or pulsar+ssl://)"
        )
    return text


def listeners(text: str) -> dict[str, str]:
    """Pulsar's advertisedListeners: 'name:pulsar://host:port,...' -> {name: url}."""
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _LISTENER.fullmatch(item)
        if match is None:
            raise argparse.ArgumentTypeError(f"listener {item!r} is not name:pulsar://host:port")
        name, url = match.groups()
        if url.startswith("pulsar+ssl://"):
            raise argparse.ArgumentTypeError(f"listener {name!r}: TLS is not supported yet")
        service_url(url)
        if name in found:
            raise argparse.ArgumentTypeError(f"listener {name!r} is given twice")
        found[name] = url
    return found


def http_url(text: str) -> str:
    if not _HTTP_URL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: expected http://host:port")
    return text


# The ledger quorum flags of every process that writes to bookies: (flag, dest, what it sets).
QUORUM_FLAGS = (
    ("--ensemble-size", "ensemble_size", "bookies each ledger is spread over"),
    ("--write-quorum", "write_quorum", "bookies each entry is written to"),
    ("--ack-quorum", "ack_quorum", "bookies that must store an entry before it is acknowledged"),
)


def add_quorum_flags(p: argparse.ArgumentParser, default: int | None, default_text: str) -> None:
    for flag, dest, text in QUORUM_FLAGS:
        p.add_argument(flag, dest=dest, type=int, default=default, help=f"{text} (default {default_text})")


# 5 s, as BookKeeper's client: above the seconds a loaded bookie's journal may stall on a
# shared disk (a slow bookie is not replaced for nothing: each change adds a segment), far
# below the 30 s request timeout that a silent bookie would otherwise stall publishing for.
DEFAULT_BOOKIE_TIMEOUT_S = 5.0
BOOKIE_TIMEOUT_FLAGS = (
    ("--bookie-add-timeout", "bookie_add_timeout", "an add a bookie has not answered replaces it in the ledger's ensemble"),
    ("--bookie-read-timeout", "bookie_read_timeout", "a read a bookie has not answered goes to the next replica"),
)


def add_bookie_timeout_flags(p: argparse.ArgumentParser) -> None:
    for flag, dest, text in BOOKIE_TIMEOUT_FLAGS:
        p.add_argument(flag, dest=dest, type=float, default=DEFAULT_BOOKIE_TIMEOUT_S, metavar="SECONDS",
                       help=f"seconds after which {text} (default {DEFAULT_BOOKIE_TIMEOUT_S:g})")


def bookie_timeouts(args: argparse.Namespace) -> tuple[float, float]:
    """(add, read) timeouts in seconds; ValueError unless each is a positive finite number."""
    found = []
    for flag, dest, _ in BOOKIE_TIMEOUT_FLAGS:
        value = getattr(args, dest)
        if not 0 < value < float("inf"):  # also refuses nan
            raise ValueError(f"{flag} must be a positive number of seconds, not {value:g}")
        found.append(value)
    return found[0], found[1]


def quorum(args: argparse.Namespace, default: int) -> tuple[int, int, int]:
    """(E, Qw, Qa) from the quorum flags (unset ones `default`); ValueError unless
    1 <= Qa <= Qw <= E."""
    e, w, a = (getattr(args, dest) or default for _, dest, _ in QUORUM_FLAGS)
    if not 1 <= a <= w <= e:
        raise ValueError(f"need 1 <= ack quorum ({a}) <= write quorum ({w}) <= ensemble size ({e})")
    return e, w, a
