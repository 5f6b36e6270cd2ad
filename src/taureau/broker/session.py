"""Session: the Pulsar session of one connection, apart from the socket that carries it.

It owns the handshake state (one enum, changed only by `_set_state`) and the maps from the
client's producer and consumer ids to broker objects; only its own methods change them, the
command handlers (control.py) and the connection (connection.py) call those methods. It is
the `ConsumerSink` the dispatchers write to, and reaches its socket only through `Link`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from enum import Enum
from typing import NamedTuple, Protocol

from taureau.auth.providers import Credentials
from taureau.broker.client_topic import AnyClientTopic, ClientSubscription
from taureau.broker.consumer import Consumer
from taureau.broker.error_codes import ServerError
from taureau.broker.producer import Producer
from taureau.broker.service import BrokerService
from taureau.broker.session_auth import REFRESH_DATA, Refresher, identify
from taureau.common.errors import AuthenticationError, ConsumerNotFoundError
from taureau.protocol import pb, replies
from taureau.storage.position import Position

log = logging.getLogger("taureau.broker.auth")

SERVER_VERSION = "Taureau-0.1.0"
MAX_PROTOCOL_VERSION = 20


class SessionState(Enum):
    AWAITING_CONNECT = "awaiting_connect"
    AUTHENTICATING = "authenticating"  # CONNECT came; its credentials are being checked
    CONNECTED = "connected"
    CLOSED = "closed"


_TRANSITIONS = {
    SessionState.AWAITING_CONNECT: {SessionState.AUTHENTICATING, SessionState.CONNECTED, SessionState.CLOSED},
    SessionState.AUTHENTICATING: {SessionState.CONNECTED, SessionState.CLOSED},
    SessionState.CONNECTED: {SessionState.CLOSED},
    SessionState.CLOSED: set(),
}


class Link(Protocol):
    """What a session needs of the connection that carries it."""

    remote_address: str
    writable: bool  # False while the socket's send buffer is over its high-water mark
    peer_common_name: str | None  # the CN of a verified TLS client certificate

    def write(self, frame: bytes) -> None: ...

    def close(self) -> None: ...

    def session_connected(self) -> None:
        """CONNECTED was sent: the peer is known, its frames may be as large as messages."""

    def write_message(
        self,
        consumer_id: int,
        position: Position,
        partition: int,
        redelivery_count: int,
        data: bytes,
        ack_set: tuple[int, ...] = (),
    ) -> None: ...


class ProducerBinding(NamedTuple):
    producer: Producer
    topic: AnyClientTopic


class ConsumerBinding(NamedTuple):
    consumer: Consumer
    subscription: ClientSubscription
    topic: AnyClientTopic


class Session:
    def __init__(self, service: BrokerService, link: Link) -> None:
        self.service = service
        self.link = link
        self.state = SessionState.AWAITING_CONNECT
        self.protocol_version = 0
        self.role: str | None = None  # who the peer proved to be (None: authentication is off)
        self._auth_task: asyncio.Task[None] | None = None
        self._refresher: Refresher | None = None
        self._producers: dict[int, ProducerBinding] = {}  # by the client's producer_id
        self._consumers: dict[int, ConsumerBinding] = {}  # by the client's consumer_id
        # ConsumerSink.send_message, the dispatch hot path: straight to the connection's writer.
        self.send_message = link.write_message

    # -- handshake ---------------------------------------------------------------------------

    def _set_state(self, new: SessionState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"session cannot go from {self.state.value} to {new.value}")
        self.state = new

    @property
    def connected(self) -> bool:
        return self.state is SessionState.CONNECTED

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    def connect(self, connect: pb.CommandConnect) -> bool:
        """Answer CONNECT (at once, or once its credentials are checked); False if this
        session had a CONNECT already (a protocol breach)."""
        if self.state is not SessionState.AWAITING_CONNECT:
            return False
        self.protocol_version = min(connect.protocol_version, MAX_PROTOCOL_VERSION)
        auth = self.service.authentication
        if auth is None:
            self._accept()
            return True
        self._set_state(SessionState.AUTHENTICATING)
        credentials = Credentials(connect.auth_method_name, connect.auth_data, self.link.peer_common_name)
        can_refresh = connect.feature_flags.supports_auth_refresh
        self._auth_task = asyncio.get_running_loop().create_task(self._authenticate(credentials, can_refresh))
        return True

    async def _authenticate(self, credentials: Credentials, can_refresh: bool) -> None:
        auth = self.service.authentication
        assert auth is not None
        try:
            identity = await identify(auth, credentials)
        except AuthenticationError as exc:
            self._refuse_credentials(f"CONNECT refused: {exc}", exc)
            return
        if self.state is not SessionState.AUTHENTICATING:
            return  # the peer left meanwhile
        self.role = identity.role
        self._refresher = Refresher(auth, self.service.config.auth.refresh_check_s, self.remote_address,
                                    self._challenge, self.link.close)
        self._refresher.watch(credentials.method, identity, can_refresh)
        self._accept()

    def _accept(self) -> None:
        self._set_state(SessionState.CONNECTED)
        self.write(
            replies.connected(SERVER_VERSION, self.protocol_version, self.service.config.max_message_size)
        )
        self.link.session_connected()

    def _refuse_credentials(self, reason: str, exc: AuthenticationError) -> None:
        """Pulsar answers ERROR(AuthenticationError) with no request id, then closes."""
        log.warning("%s: %s", self.remote_address, reason)
        if not self.closed:
            self.write(replies.error(-1, ServerError.AuthenticationError, str(exc)))
            self.link.close()

    def _challenge(self, method: str) -> None:
        if self.connected:
            self.write(replies.auth_challenge(SERVER_VERSION, self.protocol_version, method, REFRESH_DATA))

    async def auth_response(self, response: pb.CommandAuthResponse) -> None:
        """The client's answer to AUTH_CHALLENGE: the same role, freshly proven, or closed."""
        if self._refresher is None:
            return
        data = response.response
        credentials = Credentials(data.auth_method_name, data.auth_data, self.link.peer_common_name)
        refused = await self._refresher.answer(credentials)
        if refused is not None and not self.closed:
            self.write(replies.error(-1, ServerError.AuthenticationError, str(refused)))
            self.link.close()

    def end(self) -> None:
        """The connection is gone: nothing more is handled; `cleanup` detaches what is left."""
        if self._refresher is not None:
            self._refresher.cancel()
        if self._auth_task is not None and not self._auth_task.done():
            self._auth_task.cancel()
        if self.state is not SessionState.CLOSED:
            self._set_state(SessionState.CLOSED)

    # -- producers ---------------------------------------------------------------------------

    def producer(self, producer_id: int) -> ProducerBinding | None:
        return self._producers.get(producer_id)

    def add_producer(self, producer_id: int, producer: Producer, topic: AnyClientTopic) -> None:
        self._producers[producer_id] = ProducerBinding(producer, topic)

    def remove_producer(self, producer_id: int) -> ProducerBinding | None:
        return self._producers.pop(producer_id, None)

    def disconnect_producer(self, producer_id: int) -> None:
        """The broker drops this producer (its topic is going away): the client re-creates it."""
        self._producers.pop(producer_id, None)
        self.write(replies.close_producer(producer_id))

    # -- consumers ---------------------------------------------------------------------------

    def find_consumer(self, consumer_id: int) -> ConsumerBinding | None:
        return self._consumers.get(consumer_id)

    def consumer(self, consumer_id: int) -> ConsumerBinding:
        found = self._consumers.get(consumer_id)
        if found is None:
            raise ConsumerNotFoundError(f"consumer {consumer_id} is not connected")
        return found

    def has_consumer(self, consumer_id: int) -> bool:
        return consumer_id in self._consumers

    def add_consumer(self, consumer_id: int, binding: ConsumerBinding) -> None:
        self._consumers[consumer_id] = binding

    def remove_consumer(self, consumer_id: int) -> ConsumerBinding | None:
        return self._consumers.pop(consumer_id, None)

    def subscriptions(self) -> Iterator[ClientSubscription]:
        return (binding.subscription for binding in self._consumers.values())

    # -- ConsumerSink ------------------------------------------------------------------------

    @property
    def remote_address(self) -> str:
        return self.link.remote_address

    @property
    def writable(self) -> bool:
        return self.link.writable

    def write(self, frame: bytes) -> None:
        self.link.write(frame)

    def send_close_consumer(self, consumer_id: int) -> None:
        self._consumers.pop(consumer_id, None)
        self.write(replies.close_consumer(consumer_id))

    def send_active_consumer_change(self, consumer_id: int, is_active: bool) -> None:
        self.write(replies.active_consumer_change(consumer_id, is_active))

    # -- teardown ----------------------------------------------------------------------------

    async def cleanup(self) -> None:
        """Detach every producer and consumer of this session from its topic."""
        producers, self._producers = self._producers, {}
        for producer, topic in producers.values():
            topic.remove_producer(producer)
        consumers, self._consumers = self._consumers, {}
        for consumer, sub, topic in consumers.values():
            await topic.remove_consumer(sub, consumer)
