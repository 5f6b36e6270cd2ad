"""Persistent watches from ZooKeeper's one-shot ones: re-arm on every fire, report the difference.

ZooKeeper (through kazoo, which has no persistent watches) tells a client once that a node
changed and then forgets the watch. So every fire re-reads the node with fresh watches set
and compares what it sees with what was seen last: creation id, data version and child
version. Events are derived from that difference, so no change is ever missed, but several
changes that land between a fire and its re-read arrive as one event per kind (two puts may
be one MODIFIED). Events of one path are reported in order; across paths there is no order.
"""

from __future__ import annotations

from dataclasses import dataclass

from taureau.metadata.store import WatchEvent


@dataclass(frozen=True, slots=True)
class NodeState:
    czxid: int  # the zxid that created the node: differs when it was deleted and made again
    version: int  # data version
    cversion: int  # child version: +1 per child created or deleted


def diff(old: NodeState | None, new: NodeState | None) -> list[WatchEvent]:
    """The events that take a watcher from `old` to `new` (None: the node does not exist).

    >>> diff(None, NodeState(5, 0, 1))
    [<WatchEvent.CREATED: 'created'>, <WatchEvent.CHILDREN_CHANGED: 'children_changed'>]
    """
    if old is None and new is None:
        return []
    if new is None:
        return [WatchEvent.DELETED]
    if old is None or old.czxid != new.czxid:
        events = [] if old is None else [WatchEvent.DELETED]
        events.append(WatchEvent.CREATED)
        if new.version > 0:
            events.append(WatchEvent.MODIFIED)
        if new.cversion > 0:
            events.append(WatchEvent.CHILDREN_CHANGED)
        return events
    events = []
    if new.version != old.version:
        events.append(WatchEvent.MODIFIED)
    if new.cversion != old.cversion:
        events.append(WatchEvent.CHILDREN_CHANGED)
    return events
