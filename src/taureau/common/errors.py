"""The exception tree shared by every layer.

The Pulsar `ServerError` each one is answered with on the wire is listed in one table,
taureau.broker.error_codes.
"""

from __future__ import annotations


class TaureauError(Exception):
    """Base of every error Taureau raises on purpose."""


# -- metadata store -------------------------------------------------------------------------


class MetadataError(TaureauError):
    """Base of the metadata store's errors."""


class NotFoundError(MetadataError):
    """A metadata path does not exist."""


class NodeExistsError(MetadataError):
    """A metadata path exists already (create with expected_version=-1)."""


class BadVersionError(MetadataError):
    """A compare-and-set saw another version than the one expected."""


class NotEmptyError(MetadataError):
    """A metadata node with children cannot be deleted."""


class SessionExpiredError(MetadataError):
    """The store's coordination session expired (ZooKeeper): its ephemeral nodes are gone and
    the store answers nothing more; the process must open a new one (and re-register)."""


class MetadataConnectionError(MetadataError):
    """The metadata store could not be reached in time. A change may or may not have been
    applied: read before retrying it."""


# -- storage --------------------------------------------------------------------------------


class StorageError(TaureauError):
    """Base of the storage layers' errors (bookie, ledger, managed ledger)."""


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
    """Base of the broker's errors."""


class AuthenticationError(BrokerError):
    """Credentials missing, malformed, expired or not matching (Pulsar's AuthenticationError)."""


class AuthorizationError(BrokerError):
    """An authenticated role without the permission asked for (Pulsar's AuthorizationError)."""


class InvalidTopicNameError(BrokerError):
    """A topic name that does not parse or breaks the naming rules."""


class TopicNotFoundError(BrokerError):
    """No such topic (and it may not be created here)."""


class ConsumerBusyError(BrokerError):
    """The subscription or consumer id is taken, or of another type."""


class ProducerBusyError(BrokerError):
    """A producer of that name, or an exclusive one, is connected already."""


class SubscriptionNotFoundError(BrokerError):
    """No such subscription on the topic."""


class ConsumerNotFoundError(BrokerError):
    """No consumer of that id on this connection."""


class ServiceNotReadyError(BrokerError):
    """The topic cannot take this now; the client should retry."""


class NotAllowedError(BrokerError):
    """A request the broker will never accept as sent."""


class TopicTerminatedError(BrokerError):
    """The topic was terminated: it takes no more messages."""


class ChecksumError(BrokerError):
    """A message whose checksum does not match its bytes."""


# -- metadata store (appended) --------------------------------------------------------------


class InvalidMetadataPathError(MetadataError, ValueError):
    """A metadata path is malformed (must be absolute, `/a/b`, no empty or dot parts)."""


class MetadataStoreClosedError(MetadataError):
    """The metadata store was closed or failed to write its log."""


class MetadataValueTooLargeError(MetadataError):
    """A metadata record larger than the store accepts (ZooKeeper's jute.maxbuffer, 1 MiB)."""


# -- ephemeral state (taureau.state) --------------------------------------------------------
# `code` is the number sent on the state wire protocol (taureau.state.codec) so a reply
# turns back into the same class on the client.


class StateError(TaureauError):
    """Base of every ephemeral-state error; `code` travels on the state wire."""

    code: int = 1


class StateProtocolError(StateError):
    """A malformed frame or an argument of the wrong shape on the state wire."""

    code = 2


class PathNotFoundError(StateError):
    """No node at that path in the state namespace."""

    code = 3


class PathExistsError(StateError):
    """A node already exists at that path."""

    code = 4


class InvalidPathError(StateError):
    """The path is not absolute, has empty or dot components, or is too long."""

    code = 5


class WrongTypeError(StateError):
    """The path names another kind of node (a queue opened as a hash table, a directory...)."""

    code = 6


class KeyNotFoundError(StateError):
    """The hash table has no such key."""

    code = 7


class DuplicateKeyError(StateError):
    """put() of a key the hash table already holds (use upsert to overwrite)."""

    code = 8


class QueueEmptyError(StateError):
    """dequeue() on an empty queue."""

    code = 9


class OutOfMemoryError(StateError):
    """The memory pool has no free block for this structure to grow into."""

    code = 10


class ValueTooLargeError(StateError):
    """A key, value or item larger than one block can hold."""

    code = 11


class BlockLostError(StateError):
    """A memory server holding some of this structure's blocks is gone; that data is lost."""

    code = 12


class StateNotEmptyError(StateError):
    """A non-recursive remove of a directory that still has children."""

    code = 13


class BackingStoreError(StateError):
    """A dump/load/flush target is unreadable, unwritable, unknown or corrupt."""

    code = 14


class StateUnavailableError(StateError):
    """The controller or a memory server cannot be reached or kept redirecting too long."""

    code = 15


class FrameTooLargeError(StateProtocolError):
    """A state frame longer than its kind of request may be (refused from its header, unread);
    the server answers with this error and closes that connection."""

    code = 16


class StateAuthError(StateProtocolError):
    """An internal operation (a controller's block command, a memory server's registration,
    import or chain write) from a connection that has not proved the internal secret, or a
    proof that does not match it."""

    code = 17


class StateAuthenticationError(StateError, AuthenticationError):
    """With authentication on: a state client that presented no credentials, or a wrong,
    forged or expired one (also a `taureau.common.errors.AuthenticationError`)."""

    code = 18


class StateAuthorizationError(StateError, AuthorizationError):
    """With authentication on: the client's role may not use that state path, or a memory
    server was asked about a structure the connection holds no valid ticket for (also a
    `taureau.common.errors.AuthorizationError`)."""

    code = 19


# -- managed ledger (appended) --------------------------------------------------------------


class ManagedLedgerFencedError(StorageError):
    """Another owner opened this managed ledger: its ledger was fenced or its metadata moved on."""


class ManagedLedgerNotFoundError(StorageError):
    """No managed ledger of that name exists."""


class CursorNotFoundError(StorageError):
    """The managed ledger has no cursor of that name."""


class StorageArgumentError(StorageError, ValueError):
    """A storage call got a bad argument (a count below 1, an empty name, a name taken...)."""
