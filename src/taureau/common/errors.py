"""The exception tree shared by every layer.

Each broker-facing error carries the Pulsar `ServerError` it maps to on the wire, so the
session can turn any exception into a typed ERROR reply without a lookup table of its own.
"""

from __future__ import annotations


class TaureauError(Exception):
    """Base of every error Taureau raises on purpose."""

    # Pulsar ServerError enum value sent to clients (UnknownError = 0).
    server_error: int = 0


# -- metadata store -------------------------------------------------------------------------


class MetadataError(TaureauError):
    server_error = 1


class NotFoundError(MetadataError):
    """A metadata path does not exist."""


class NodeExistsError(MetadataError):
    """A metadata path exists already (create with expected_version=-1)."""


class BadVersionError(MetadataError):
    """A compare-and-set saw another version than the one expected."""


class NotEmptyError(MetadataError):
    """A metadata node with children cannot be deleted."""


class SessionExpiredError(MetadataError):
    """The session that owned an ephemeral node is gone."""


# -- storage --------------------------------------------------------------------------------


class StorageError(TaureauError):
    server_error = 2  # PersistenceError


class LedgerFencedError(StorageError):
    """A writer was fenced: another client opened the ledger for recovery."""


class LedgerClosedError(StorageError):
    """An add was attempted on a closed (read-only) ledger."""


class NoSuchLedgerError(StorageError):
    """The ledger does not exist or was deleted."""


class NoSuchEntryError(StorageError):
    """The entry is beyond the last-add-confirmed or was trimmed."""


class NotEnoughBookiesError(StorageError):
    """Fewer bookies are available than the ensemble needs."""


class CorruptedDataError(StorageError):
    """A stored record failed its checksum."""


class ManagedLedgerClosedError(StorageError):
    """The managed ledger or cursor was closed."""


class DiskFullError(StorageError):
    """The data directory has no space left (ENOSPC) or is unwritable."""


# -- broker ---------------------------------------------------------------------------------


class BrokerError(TaureauError):
    server_error = 0


class InvalidTopicNameError(BrokerError):
    server_error = 17


class TopicNotFoundError(BrokerError):
    server_error = 11


class ConsumerBusyError(BrokerError):
    server_error = 5


class ProducerBusyError(BrokerError):
    server_error = 16


class SubscriptionNotFoundError(BrokerError):
    server_error = 12


class ConsumerNotFoundError(BrokerError):
    server_error = 13


class ServiceNotReadyError(BrokerError):
    server_error = 6


class NotAllowedError(BrokerError):
    server_error = 22


class TopicTerminatedError(BrokerError):
    server_error = 15


class ChecksumError(BrokerError):
    server_error = 9


# -- metadata store (appended) --------------------------------------------------------------


class InvalidMetadataPathError(MetadataError, ValueError):
    """A metadata path is malformed (must be absolute, `/a/b`, no empty or dot parts)."""


class MetadataStoreClosedError(MetadataError):
    """The metadata store was closed or failed to write its log."""
