"""Jiffy-style ephemeral state: controller, memory servers, elastic structures and their client."""

from taureau.state.client import Notification, StateClient, Subscription
from taureau.state.structures import File, HashTable, Queue

__all__ = ["File", "HashTable", "Notification", "Queue", "StateClient", "Subscription"]
