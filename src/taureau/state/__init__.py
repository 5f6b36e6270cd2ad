"""Jiffy-style ephemeral state: controller, memory servers, elastic structures and their client."""

from taureau.state.client import Notification, StateClient, Subscription
from taureau.state.structures import Counter, File, HashTable, Queue, SortedMap

__all__ = [
    "Counter",
    "File",
    "HashTable",
    "Notification",
    "Queue",
    "SortedMap",
    "StateClient",
    "Subscription",
]
