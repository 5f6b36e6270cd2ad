"""The structure handles clients use, one per kind (each defined in taureau.state.kinds.<kind>)."""

from taureau.state.handles import Structure
from taureau.state.kinds.counter import Counter
from taureau.state.kinds.file import File
from taureau.state.kinds.hash_table import HashTable
from taureau.state.kinds.queue import Queue
from taureau.state.kinds.sorted_map import SortedMap

__all__ = ["Counter", "File", "HashTable", "Queue", "SortedMap", "Structure"]
