"""Which Pulsar `ServerError` a failure is answered with: the one table of it.

Exceptions stay free of wire numbers; a session looks the class up here (its nearest listed
ancestor wins). Clients act on the code: ChecksumError fails one message and keeps the
producer, ServiceNotReady and PersistenceError make them retry, TopicNotFound makes a lookup
fail, ProducerFenced makes a producer give up, so each entry below is a promise to clients.
"""

from __future__ import annotations

from enum import IntEnum

from taureau.broker.access import ProducerFencedError
from taureau.broker.dispatch.key_shared import ConsumerAssignError
from taureau.broker.policies import ProducerBlockedQuotaExceededError, ProducerBlockedQuotaExceededException
from taureau.broker.resources import PartitionLimitError, ResourceNotFoundError
from taureau.broker.schemas.model import IncompatibleSchemaError, SchemaNotFoundError
from taureau.broker.topic import SubscriptionBusyError
from taureau.broker.transactions import model as txn
from taureau.common import errors as e


class ServerError(IntEnum):
    """Pulsar's ServerError enum (PulsarApi.proto)."""

    UnknownError = 0
    MetadataError = 1
    PersistenceError = 2
    AuthenticationError = 3
    AuthorizationError = 4
    ConsumerBusy = 5
    ServiceNotReady = 6
    ProducerBlockedQuotaExceededError = 7
    ProducerBlockedQuotaExceededException = 8
    ChecksumError = 9
    UnsupportedVersionError = 10
    TopicNotFound = 11
    SubscriptionNotFound = 12
    ConsumerNotFound = 13
    TooManyRequests = 14
    TopicTerminatedError = 15
    ProducerBusy = 16
    InvalidTopicName = 17
    IncompatibleSchema = 18
    ConsumerAssignError = 19
    TransactionCoordinatorNotFound = 20
    InvalidTxnStatus = 21
    NotAllowedError = 22
    TransactionConflict = 23
    TransactionNotFound = 24
    ProducerFenced = 25


# Exception class -> code; a class not listed takes its nearest listed ancestor's.
_TABLE: dict[type[BaseException], ServerError] = {
    e.MetadataError: ServerError.MetadataError,
    e.StorageError: ServerError.PersistenceError,
    e.ManagedLedgerNotFoundError: ServerError.TopicNotFound,
    e.CursorNotFoundError: ServerError.SubscriptionNotFound,
    e.InvalidTopicNameError: ServerError.InvalidTopicName,
    e.TopicNotFoundError: ServerError.TopicNotFound,
    e.ConsumerBusyError: ServerError.ConsumerBusy,
    e.ProducerBusyError: ServerError.ProducerBusy,
    e.SubscriptionNotFoundError: ServerError.SubscriptionNotFound,
    e.ConsumerNotFoundError: ServerError.ConsumerNotFound,
    e.ServiceNotReadyError: ServerError.ServiceNotReady,
    e.NotAllowedError: ServerError.NotAllowedError,
    e.TopicTerminatedError: ServerError.TopicTerminatedError,
    e.ChecksumError: ServerError.ChecksumError,
    e.AuthenticationError: ServerError.AuthenticationError,
    e.AuthorizationError: ServerError.AuthorizationError,
    ResourceNotFoundError: ServerError.TopicNotFound,
    PartitionLimitError: ServerError.NotAllowedError,
    SubscriptionBusyError: ServerError.ConsumerBusy,  # Pulsar refuses to drop a subscription with consumers
    ConsumerAssignError: ServerError.ConsumerAssignError,
    ProducerFencedError: ServerError.ProducerFenced,
    IncompatibleSchemaError: ServerError.IncompatibleSchema,
    ProducerBlockedQuotaExceededError: ServerError.ProducerBlockedQuotaExceededError,
    ProducerBlockedQuotaExceededException: ServerError.ProducerBlockedQuotaExceededException,
    SchemaNotFoundError: ServerError.TopicNotFound,
    txn.TransactionNotFoundError: ServerError.TransactionNotFound,
    txn.InvalidTxnStatusError: ServerError.InvalidTxnStatus,
    txn.TransactionConflictError: ServerError.TransactionConflict,
    txn.CoordinatorNotFoundError: ServerError.TransactionCoordinatorNotFound,
    txn.TransactionsDisabledError: ServerError.NotAllowedError,
    txn.TxnLimitError: ServerError.NotAllowedError,
}


def server_error(exc: BaseException, default: ServerError = ServerError.UnknownError) -> ServerError:
    """The code for `exc`: its nearest ancestor in the table, else `default`."""
    for cls in type(exc).__mro__:
        code = _TABLE.get(cls)
        if code is not None:
            return code
    return default
