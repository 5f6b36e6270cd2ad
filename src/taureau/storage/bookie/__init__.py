"""The bookie: journal, entry log and location index for ledger entries (BookKeeper's model)."""

from taureau.storage.bookie.bookie import Bookie, BookieState
from taureau.storage.bookie.files import FileIO, OSFiles

__all__ = ["Bookie", "BookieState", "FileIO", "OSFiles"]
