"""ServerConnection: the asyncio glue between one client TCP connection and its Session.

Theory of operation:
- The Pulsar session (handshake state, producer and consumer ids) is a `Session`
  (broker/session.py); this object owns the socket side: the frame decoder, what is in
  flight to storage, read pausing, the keep-alive and the coalesced writes.
  Before CONNECT any other command closes the connection (the client does the same).
- The transport reads into the decoder's buffers (asyncio.BufferedProtocol: `get_buffer`,
  `buffer_updated`): the service's shared read buffer, or the rest of a large frame straight
  into a buffer of that frame's exact size. `data_received` takes a chunk as a plain
  Protocol would (tests, benches). Either decodes frames (taureau.protocol, sans-IO). SEND, FLOW and PING are
  handled inline: they are the hot path and need no await before their effect. Every
  other command is queued to one control task per connection and handled in arrival
  order, see broker/control.py. An ACK (outside a transaction) is applied inline too when
  the control task has nothing queued or running, so it still never overtakes the
  SUBSCRIBE before it; with 1,000 topics a queued job per ACK was 13% of the broker.
- A malformed frame closes this connection only; the frame's bytes are never stored.
- Everything the connection sends during one event-loop turn (receipts, messages,
  replies) is coalesced into one socket write (net.server.CoalescingWriter).
- What one peer can make the broker hold is bounded (docs/architecture.md, "Bounds"):
  frames are at most MAX_FRAME_BEFORE_CONNECT bytes until CONNECT, which must come within
  connect_timeout_s; past MAX_INFLIGHT_PUBLISHES SENDs or max_pending_publish_bytes in
  flight, or while the peer does not read what we send (asyncio's pause_writing), the
  connection stops reading (`_pause`) until that is over; a peer that leaves a keep-alive
  ping unanswered for a whole interval is closed; on close every buffer is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple, cast

from taureau.broker.client_topic import AnyClientTopic
from taureau.broker.control import apply_ack, can_ack_inline, handler_for
from taureau.broker.error_codes import ServerError, server_error
from taureau.broker.service import BrokerService
from taureau.broker.session import Session
from taureau.broker.topic import PublishItem
from taureau.broker.transactions.model import TxnId
from taureau.broker.transactions.sends import TxnRefused, TxnSend, store
from taureau.common.errors import TaureauError
from taureau.net.server import CoalescingWriter, tune_socket
from taureau.net.tls import peer_common_name
from taureau.protocol import (
    Frame,
    FrameDecoder,
    ProtocolError,
    append_message,
    append_send_receipt,
    message_head,
    pb,
    ping,
    pong,
    replies,
)
from taureau.protocol.validate import check_entry
from taureau.storage.position import Position

log = logging.getLogger(__name__)

T = pb.BaseCommand.Type
# Plain ints: protobuf enum attribute lookups cost ~1 us each on the hot path.
_SEND, _FLOW, _PING, _PONG, _CONNECT, _ACK = T.SEND, T.FLOW, T.PING, T.PONG, T.CONNECT, T.ACK
MAX_INFLIGHT_PUBLISHES = 10_000
# CONNECT carries a client version and perhaps an auth token: a few KiB. Until it arrives a
# peer is unknown, so it may not make the broker buffer a 5 MiB frame.
MAX_FRAME_BEFORE_CONNECT = 64 * 1024
# After CONNECT a frame may exceed the largest message by this much (command and metadata), as
# Pulsar's MESSAGE_SIZE_FRAME_PADDING: 10 KiB.
FRAME_SLACK = 10 * 1024
# Why reading is paused (bits): SENDs in flight over their bounds / replies not read by the peer.
_PAUSE_PUBLISHES = 1
_PAUSE_REPLIES = 2
_PAUSE_RATE = 4  # a topic it publishes to is over its namespace's publish rate this second
# Dispatch to a consumer stops while this many bytes wait in its socket's send buffer.
WRITE_BUFFER_HIGH = 4 * 1024 * 1024
# An entry this large goes to the transport by reference (CoalescingWriter.write_large), not
# copied into the connection's write buffer: a copy of 64 KiB costs more than one more part.
LARGE_PAYLOAD = 64 * 1024


class Refusal(NamedTuple):
    """A SEND answered with SEND_ERROR instead of being stored."""

    producer_id: int
    sequence_id: int
    code: int
    reason: str


class ServerConnection(asyncio.BufferedProtocol):
    def __init__(self, service: BrokerService) -> None:
        self.service = service
        self.session = Session(service, self)
        self.decoder = FrameDecoder(MAX_FRAME_BEFORE_CONNECT, service.read_buffer)
        self.remote_address = "?"
        self.peer_common_name: str | None = None  # the CN of a verified TLS client certificate
        self._transport: asyncio.Transport | None = None
        self._writer: CoalescingWriter  # set by connection_made, before anything is written
        self._control: asyncio.Queue[Callable[[], Awaitable[None]] | None] = asyncio.Queue()
        self._control_task: asyncio.Task[None] | None = None
        self._control_busy = False  # a control job is running (the queue may be empty)
        self._loop: asyncio.AbstractEventLoop  # set by connection_made
        self._inflight = 0  # SENDs handed to storage and not answered yet
        self._inflight_bytes = 0  # their bytes
        self._paused = 0  # _PAUSE_* bits; reading is paused while any is set
        self._throttled_until = 0.0  # loop time: reading stays paused for a publish rate until then
        self._admitted_ip: str | None = None  # counted in service.connections while set
        self._awaiting_pong = False  # a keep-alive ping went out and nothing came back since
        self._timer: asyncio.TimerHandle | None = None  # CONNECT deadline, then keep-alive
        self.writable = True  # False while the transport's send buffer is over the high mark
        self._closing = False  # close() was called: handle nothing more from this peer
        # SENDs decoded from the current read, by topic: published as one batch per topic
        # when the read is done (see _flush_sends).
        self._sends: dict[AnyClientTopic, list[PublishItem | TxnSend | Refusal]] = {}
        # The newest publish task per topic: the next one writes its replies after it.
        self._publish_tails: dict[AnyClientTopic, asyncio.Task[None]] = {}

    @property
    def closed(self) -> bool:
        return self.session.closed

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's is no subclass)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.remote_address = f"{peer[0]}:{peer[1]}" if peer else "?"
        ip = peer[0] if peer else "?"
        if not self.service.connections.admit(ip):
            self._closing = True
            transport.close()
            return
        self._admitted_ip = ip
        self.peer_common_name = peer_common_name(transport)
        tune_socket(transport)
        self._writer = CoalescingWriter(transport)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        loop = self._loop = asyncio.get_running_loop()  # once: each lookup is a getpid call
        self._control_task = loop.create_task(self._run_control())
        self._timer = loop.call_later(self.service.config.connect_timeout_s, self._connect_timed_out)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            frames, bad = self.decoder.buffer_updated(nbytes), None
        except ProtocolError as exc:
            frames, bad = getattr(exc, "frames", []), exc  # the good frames before the bad one
        self._received(frames, bad)

    def data_received(self, data: bytes) -> None:
        """A chunk as a plain Protocol gets it (tests and benches call this)."""
        try:
            frames, bad = self.decoder.feed(data), None
        except ProtocolError as exc:
            frames, bad = getattr(exc, "frames", []), exc
        self._received(frames, bad)

    def _received(self, frames: list[Frame], bad: ProtocolError | None) -> None:
        self._awaiting_pong = False  # any frame from the peer answers a keep-alive ping
        for frame in frames:
            if self._closing:
                break
            self._handle(frame)
        if bad is not None:
            log.warning("closing %s: malformed frame: %s", self.remote_address, bad)
            self.close()
        if self._sends:
            if self._closing:
                self._drop_sends()
            else:
                self._flush_sends()

    def pause_writing(self) -> None:
        # The peer does not read what we send: stop dispatching to it (Consumer.ready) and
        # stop reading from it, so its requests cannot pile up replies without end.
        self.writable = False
        self._pause(_PAUSE_REPLIES)

    def resume_writing(self) -> None:
        self.writable = True
        self._resume(_PAUSE_REPLIES)
        for sub in self.session.subscriptions():
            sub.notify_new_entries()  # wakes its dispatcher: consumers here are ready again

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.end()
        if self._admitted_ip is None:
            return  # refused at connection_made: nothing was set up
        self.service.connections.release(self._admitted_ip)
        self._admitted_ip = None
        if self._timer is not None:
            self._timer.cancel()
        # Free what this peer made us buffer now, not whenever the last task lets go of us.
        self.decoder.clear()
        self._drop_sends()
        self._writer.clear()
        self.service.heap_trimmer.request()  # what it made us allocate may sit in the heap
        self._control.put_nowait(self.session.cleanup)
        self._control.put_nowait(None)

    def _drop_sends(self) -> None:
        """Forget SENDs decoded but not handed to storage: nothing of them was acknowledged,
        so the client resends them on its next connection."""
        for items in self._sends.values():
            for item in items:
                if not isinstance(item, Refusal):
                    self._inflight -= 1
                    self._inflight_bytes -= len(item.data)
        self._sends.clear()

    def _pause(self, reason: int) -> None:
        if not self._paused and self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()

    def _connect_timed_out(self) -> None:
        if not self.session.connected and not self.session.closed and not self._closing:
            log.warning(
                "closing %s: no CONNECT within %ss",
                self.remote_address,
                self.service.config.connect_timeout_s,
            )
            self.close()

    def _keep_alive(self) -> None:
        """Every keep_alive_interval_s: close the peer if the last ping is unanswered, else
        ping it. Not while we stopped reading for our own storage or a publish rate (its PONG
        may be waiting in the socket); when it stopped reading what we send, it counts as
        unanswered."""
        if self._closing or self.closed:
            return
        interval = self.service.config.keep_alive_interval_s
        if self._awaiting_pong and not self._paused & (_PAUSE_PUBLISHES | _PAUSE_RATE):
            log.warning("closing %s: keep-alive ping unanswered for %ss", self.remote_address, interval)
            self.close()
            return
        self.write(ping())
        self._awaiting_pong = True
        self._timer = asyncio.get_running_loop().call_later(interval, self._keep_alive)

    def close(self) -> None:
        self._closing = True
        self._writer.flush()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def write(self, frame: bytes) -> None:
        self._writer.write(frame)

    def write_message(
        self,
        consumer_id: int,
        position: Position,
        partition: int,
        redelivery_count: int,
        data: bytes,
        ack_set: tuple[int, ...] = (),
    ) -> None:
        writer = self._writer
        if len(data) >= LARGE_PAYLOAD:
            head = message_head(consumer_id, position[0], position[1], partition, redelivery_count, len(data), ack_set)
            writer.write_large(head, data)
            return
        append_message(
            writer.buffer, consumer_id, position[0], position[1], partition, redelivery_count, data, ack_set
        )
        writer.schedule()

    # -- frame dispatch ----------------------------------------------------------------------

    def _handle(self, frame: Frame) -> None:
        cmd = frame.command
        kind = cmd.type
        if kind == _SEND:
            self._on_send(cmd.send, frame.payload, frame.checksum_ok)
        elif kind == _FLOW:
            found = self.session.find_consumer(cmd.flow.consumer_id)
            if found is not None:
                found.subscription.flow(found.consumer, cmd.flow.messagePermits)
        elif kind == _PING:
            self.write(pong())
        elif kind == _PONG:
            pass
        elif kind == _CONNECT:
            self._on_connect(cmd.connect)
        elif not self.session.connected:
            log.warning("closing %s: %s before CONNECT", self.remote_address, T.Name(kind))
            self.close()
        elif kind == _ACK and not self._control_busy and self._control.empty() and can_ack_inline(cmd.ack):
            apply_ack(self.session, cmd.ack)
        else:
            handler = handler_for(kind)
            if handler is None:
                self._unsupported(cmd)
            else:
                session = self.session
                self._control.put_nowait(lambda: handler(session, cmd))

    def _on_connect(self, connect: pb.CommandConnect) -> None:
        if not self.session.connect(connect):
            log.warning("closing %s: second CONNECT", self.remote_address)
            self.close()

    def session_connected(self) -> None:
        """The session sent CONNECTED (its credentials held): lift the pre-CONNECT frame
        limit and start the keep-alive instead of the CONNECT deadline."""
        config = self.service.config
        self.decoder.max_frame_size = config.max_message_size + FRAME_SLACK
        if self._timer is not None:
            self._timer.cancel()
        if config.keep_alive_interval_s > 0:
            self._timer = asyncio.get_running_loop().call_later(
                config.keep_alive_interval_s, self._keep_alive
            )

    def _unsupported(self, cmd: pb.BaseCommand) -> None:
        name = T.Name(cmd.type)
        log.info("%s sent unsupported command %s", self.remote_address, name)
        body = getattr(cmd, cmd.DESCRIPTOR.fields_by_number[cmd.type].name, None)
        request_id = getattr(body, "request_id", None)
        if body is not None and request_id is not None and body.HasField("request_id"):
            self.write(
                replies.error(
                    request_id, ServerError.NotAllowedError, f"{name} is not supported by this broker"
                )
            )

    async def _run_control(self) -> None:
        while True:
            job = await self._control.get()
            if job is None:
                return
            self._control_busy = True
            try:
                await job()
            except Exception:
                log.exception("control command on %s failed", self.remote_address)
            finally:
                self._control_busy = False

    # -- publish hot path --------------------------------------------------------------------

    def _on_send(self, send: pb.CommandSend, payload: bytes | None, checksum_ok: bool) -> None:
        found = self.session.producer(send.producer_id)
        sequence_id = send.sequence_id
        if found is None or payload is None or not found.producer.ready:
            self.write(
                replies.send_error(
                    send.producer_id, sequence_id, ServerError.NotAllowedError, "producer is not ready"
                )
            )
            return
        producer, topic = found
        if not checksum_ok:
            self._refuse(topic, send, "checksum mismatch")
            return
        max_size = self.service.config.max_message_size
        # A chunk is not size-checked, as Pulsar: the C++ client sizes chunks a few dozen bytes
        # over the limit (it measures the metadata before adding the chunk fields); the frame
        # limit (max_message_size + FRAME_SLACK) still bounds it.
        if len(payload) > max_size and not send.is_chunk:
            self._refuse(topic, send, f"message of {len(payload)} bytes exceeds the maximum {max_size}")
            return
        try:
            # A stored entry goes to every consumer from then on: refuse what they cannot read.
            messages = check_entry(payload, max_size)
        except ProtocolError as exc:
            log.warning(
                "%s: refusing SEND %d of %s: %s", self.remote_address, sequence_id, producer.name, exc
            )
            self._refuse(topic, send, f"invalid message: {exc}")
            return
        if send.HasField("highest_sequence_id") and send.highest_sequence_id >= sequence_id:
            highest = send.highest_sequence_id
        else:
            highest = sequence_id + messages - 1
        self._inflight += 1
        self._inflight_bytes += len(payload)
        if (
            self._inflight >= MAX_INFLIGHT_PUBLISHES
            or self._inflight_bytes >= self.service.config.max_pending_publish_bytes_per_connection
        ):
            self._pause(_PAUSE_PUBLISHES)
        if send.HasField("txnid_most_bits") or send.HasField("txnid_least_bits"):
            txn = TxnId(send.txnid_most_bits, send.txnid_least_bits)
            self._queue_send(topic, TxnSend(producer, payload, sequence_id, highest, messages, txn))
        else:
            self._queue_send(topic, PublishItem(producer, payload, sequence_id, highest, messages))
        if topic.publish_limiter is not None:
            self._throttle(topic.publish_limiter.record(messages, len(payload)))

    def _throttle(self, wait_s: float) -> None:
        """Stop reading until the topic's publish debt is paid (what was read is still stored);
        a later SEND of the same read may push the end further."""
        if wait_s <= 0:
            return
        loop = asyncio.get_running_loop()
        self._throttled_until = max(self._throttled_until, loop.time() + wait_s)
        if not self._paused & _PAUSE_RATE:
            self._pause(_PAUSE_RATE)
            loop.call_at(self._throttled_until, self._end_throttle)

    def _end_throttle(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._throttled_until:
            loop.call_at(self._throttled_until, self._end_throttle)
        else:
            self._resume(_PAUSE_RATE)

    def _refuse(self, topic: AnyClientTopic, send: pb.CommandSend, reason: str) -> None:
        """Answer SEND_ERROR for one message, in order with the receipts of the SENDs before it.

        ChecksumError is the one send error Pulsar clients take as "this message is bad": they
        fail that message alone and keep the producer (any other code makes them drop the
        connection and resend it, forever). Nothing of the message is stored.
        """
        self._queue_send(
            topic, Refusal(send.producer_id, send.sequence_id, ServerError.ChecksumError, reason)
        )

    def _queue_send(self, topic: AnyClientTopic, item: PublishItem | TxnSend | Refusal) -> None:
        group = self._sends.get(topic)
        if group is None:
            self._sends[topic] = [item]
        else:
            group.append(item)

    def _flush_sends(self) -> None:
        """One publish task per topic for everything this read carried: the entries travel
        to the bookie as one batch, and receipts go back in one write."""
        sends, self._sends = self._sends, {}
        loop = self._loop
        tails = self._publish_tails
        for topic, items in sends.items():
            tails[topic] = loop.create_task(self._publish(topic, items, tails.get(topic)))

    def _forget_tail(self, topic: AnyClientTopic) -> None:
        """Called by a publish task as it ends (not as a done callback: that is one more loop
        handle per publish); a task that ended otherwise is replaced by the next one."""
        tails = self._publish_tails
        if tails.get(topic) is asyncio.current_task(self._loop):
            del tails[topic]

    async def _publish(
        self,
        topic: AnyClientTopic,
        items: list[PublishItem | TxnSend | Refusal],
        previous: asyncio.Task[None] | None,
    ) -> None:
        stored = [item for item in items if not isinstance(item, Refusal)]
        try:
            # Transactional SENDs go to the transaction buffer (broker.transactions.sends).
            positions = await store(topic, stored, self.service.transactions) if stored else []
        except Exception as exc:
            # The client treats any SEND_ERROR but ChecksumError as fatal for the connection
            # and resends everything pending on a new one: exactly what a failed add needs.
            if isinstance(exc, TaureauError):
                log.warning("publish to %s failed: %s", topic.name, exc)
            else:
                log.exception("publish to %s failed", topic.name)
            code = server_error(exc, default=ServerError.PersistenceError)
            first = items[0]
            producer_id = first.producer_id if isinstance(first, Refusal) else first.producer.producer_id
            self.write(replies.send_error(producer_id, first.sequence_id, code, str(exc)))
            self.close()
            self._forget_tail(topic)
            return
        finally:
            self._inflight -= len(stored)
            self._inflight_bytes -= sum(len(item.data) for item in stored)
            if (
                self._paused & _PAUSE_PUBLISHES
                and self._inflight < MAX_INFLIGHT_PUBLISHES // 2
                and self._inflight_bytes < self.service.config.max_pending_publish_bytes_per_connection // 2
            ):
                self._resume(_PAUSE_PUBLISHES)
        if previous is not None and not previous.done():
            # Replies of one producer must leave in SEND order: a refusal awaits nothing, and
            # adds of later reads may complete in the same loop turn as earlier ones.
            await asyncio.wait((previous,))
        writer = self._writer
        buffer = writer.buffer
        done = iter(positions)
        for item in items:
            if isinstance(item, Refusal):
                buffer += replies.send_error(item.producer_id, item.sequence_id, item.code, item.reason)
                continue
            position = next(done)
            if isinstance(position, TxnRefused):
                buffer += replies.send_error(
                    item.producer.producer_id, item.sequence_id, position.code, position.reason
                )
                continue
            ledger_id, entry_id = position if position is not None else (-1, -1)
            append_send_receipt(
                buffer,
                item.producer.producer_id,
                item.sequence_id,
                item.highest_sequence_id,
                ledger_id,
                entry_id,
            )
        writer.schedule()
        self._forget_tail(topic)
