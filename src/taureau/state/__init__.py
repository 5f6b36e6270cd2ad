"""Jiffy-style ephemeral state: controller, memory servers, elastic structures and their client."""

from taureau.common.errors import StateAuthenticationError as AuthenticationError
from taureau.common.errors import StateAuthorizationError as AuthorizationError
from taureau.state.client import Notification, StateClient, Subscription
from taureau.state.structures import Counter, File, HashTable, Queue, SortedMap

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "Counter",
    "File",
    "HashTable",
    "Notification",
    "Queue",
    "SortedMap",
    "StateClient",
    "Subscription",
]
