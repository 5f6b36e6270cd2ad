"""FunctionInstance: consume -> deserialize -> process -> publish -> acknowledge.

Theory of operation (Pulsar's Python instance, plus windows, invocations and timeouts):
- One consumer takes every input topic (a list, or a regex for `topicsPattern`) on the
  subscription `--subs-name` (default `tenant/namespace/name`): Shared, or Failover when
  ordering is retained or the guarantee is EFFECTIVELY_ONCE, or Key_Shared for key order.
  The processing thread calls `receive` itself (no listener thread: handing each message from
  the client's thread to this one cost a GIL switch per message), so a slow function holds
  back the consumer (its receiver queue is bounded) rather than buffering the backlog.
- Acknowledgement by guarantee: ATMOST_ONCE acks on receipt; ATLEAST_ONCE acks once the
  output is stored (or at once when there is none); EFFECTIVELY_ONCE does the same through a
  producer per input topic whose sequence ids are the input's positions, so a replay after a
  crash is dropped by the broker's de-duplication; MANUAL leaves it to `context.ack`.
- A raise (or a run past `--timeout-ms`) counts as a user exception and negatively acks the
  input, so the broker redelivers it; after `--max-message-retries` the client moves it to
  the dead-letter topic.
- Invocations (HTTP, cron, trigger) come from the worker over the channel onto a control
  queue, checked between messages (every POLL_MS while the consumer is idle), and run on the
  same thread.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulsar

from taureau.common.names import TopicName
from taureau.functions.channel import InstanceChannel, Message
from taureau.functions.config import FunctionConfig, ProcessingGuarantees, SubscriptionPosition
from taureau.functions.context import ContextImpl, FunctionIdentity, UserMetrics
from taureau.functions.deadline import Deadline
from taureau.functions.errors import FunctionCodeError
from taureau.functions.loader import add_code_paths, load_function, load_serde, resolve
from taureau.functions.logs import LogTopicHandler, StdoutRouter
from taureau.functions.publisher import Publisher, send_fast
from taureau.functions.secrets import SecretsProvider
from taureau.functions.state_ops import FunctionState
from taureau.functions.stats import InstanceStats
from taureau.functions.windows import Fired, Record, Windower

log = logging.getLogger("taureau.functions.instance")

RECEIVER_QUEUE = 1000  # messages the client prefetches for an instance
POLL_MS = 5  # an idle instance with inputs looks at its control queue this often
STATUS_INTERVAL_S = 0.2  # a changed status is reported this often
STATUS_HEARTBEAT_S = 5.0  # an unchanged one this often
RETRY_DELAY_MS = 1000  # negative-ack redelivery delay (the client's default is a minute)


@dataclass(slots=True)
class InstanceSpec:
    """Everything an instance needs to run, as the worker sends it (JSON)."""

    config: FunctionConfig
    instance_id: int
    function_id: str
    version: str
    service_url: str
    code_paths: list[str] = field(default_factory=list)
    state_address: str | None = None
    secrets_provider: str = "env"
    secrets_dir: str | None = None  # the function's own directory, for the file provider
    limits: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold secret env values
    # With authentication on: a token for the function's own role, minted by the worker.
    # Sent over the worker's private channel only, never logged (repr=False).
    auth_token: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "instanceId": self.instance_id,
            "functionId": self.function_id,
            "version": self.version,
            "serviceUrl": self.service_url,
            "codePaths": self.code_paths,
            "stateAddress": self.state_address,
            "secretsProvider": self.secrets_provider,
            "secretsDir": self.secrets_dir,
            "limits": self.limits,
            "authToken": self.auth_token,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceSpec:
        return cls(
            config=FunctionConfig.from_dict(data["config"]),
            instance_id=int(data["instanceId"]),
            function_id=data["functionId"],
            version=str(data["version"]),
            service_url=data["serviceUrl"],
            code_paths=list(data.get("codePaths", [])),
            state_address=data.get("stateAddress"),
            secrets_provider=data.get("secretsProvider", "env"),
            secrets_dir=data.get("secretsDir"),
            limits=dict(data.get("limits", {})),
            auth_token=data.get("authToken"),
        )

    @property
    def identity(self) -> FunctionIdentity:
        c = self.config
        return FunctionIdentity(c.tenant, c.namespace, c.name, self.function_id, self.version, self.instance_id)


def load_code(spec: InstanceSpec) -> None:
    """Import the function, its serdes and its timestamp extractor (raises FunctionCodeError)."""
    add_code_paths(spec.code_paths)
    c = spec.config
    load_function(c.class_name)
    for topic, serde in c.input_serdes().items():
        load_serde(serde, c.input_schema_type(topic))
    load_serde(c.output_serde_class_name, c.output_schema_type)
    if c.window_config is not None and c.window_config.timestamp_extractor_class_name:
        _timestamp_extractor(c.window_config.timestamp_extractor_class_name)


def _timestamp_extractor(name: str) -> Any:
    if name in ("event_time", "taureau.functions.windows.MessageEventTime"):
        return None  # the message's own event time (publish time when unset)
    extractor = resolve(name)
    extractor = extractor() if inspect.isclass(extractor) else extractor
    fn = getattr(extractor, "extract_timestamp", extractor)
    if not callable(fn):
        raise FunctionCodeError(f"timestamp extractor {name!r} has no extract_timestamp(value)")
    return fn


def _sequence_id(message_id: Any) -> int:
    """A producer sequence id that grows with the input's position (ledger, entry, batch)."""
    ledger, entry, index = message_id.ledger_id(), message_id.entry_id(), message_id.batch_index()
    return (ledger << 40) | (entry << 12) | (index + 1)


class FunctionInstance:
    """One running instance; `run()` blocks on the calling thread until `stop()`."""

    def __init__(self, spec: InstanceSpec, state: FunctionState, channel: InstanceChannel | None = None,
                 ephemeral_factory: Any = None, token: Callable[[], str] | None = None) -> None:
        self.spec = spec
        # The current token of the function's role (renewed by the worker), else spec's own.
        self._token = token if token is not None else (lambda: spec.auth_token or "")
        self.config = spec.config
        self.channel = channel
        self.state = state
        self.stats = InstanceStats()
        self.metrics = UserMetrics()
        self._control: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()  # invokes, stop
        self._stopping = threading.Event()
        self._ephemeral_factory = ephemeral_factory
        g = self.config.processing_guarantees
        self._ack_on_receipt = g is ProcessingGuarantees.ATMOST_ONCE
        self._auto_ack = self.config.auto_ack and g is not ProcessingGuarantees.MANUAL and not self._ack_on_receipt
        self._effectively_once = g is ProcessingGuarantees.EFFECTIVELY_ONCE
        self.client: pulsar.Client | None = None
        self.consumer: Any = None

    # -- setup ------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the code, connect, subscribe (raises FunctionCodeError / pulsar errors)."""
        spec, c = self.spec, self.config
        add_code_paths(spec.code_paths)
        self._invoke = load_function(c.class_name)
        # Keyed by full topic name; partitions and pattern matches are added as they show up.
        self._serdes_by_topic = {TopicName.parse(topic).partitioned_name: load_serde(name, c.input_schema_type(topic))
                                 for topic, name in c.input_serdes().items()}
        self._default_serde = load_serde(None)
        self._output_serde = load_serde(c.output_serde_class_name, c.output_schema_type)
        self._deadline = Deadline()
        self._timeout_s = c.timeout_ms / 1000 if c.timeout_ms else None
        self._loop: asyncio.AbstractEventLoop | None = None
        # A supplier: the client asks it again when the broker challenges an expired token.
        auth = pulsar.AuthenticationToken(self._token) if spec.auth_token else None
        self.client = pulsar.Client(spec.service_url, authentication=auth, operation_timeout_seconds=30,
                                    logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        properties = {"function": c.fqfn, "instance_id": str(spec.instance_id)}
        self.publisher = Publisher(self.client, c.producer_config, properties)
        self.logger = self._make_logger()
        self.context = ContextImpl(
            spec.identity, c, self.logger, self.publisher, self.state, self.metrics, self._ack,
            SecretsProvider(spec.secrets_provider, spec.secrets_dir), self._ephemeral,
        )
        self._windower: Windower | None = None
        self._extract_time: Any = None
        if c.window_config is not None:
            self._windower = Windower(c.window_config)
            if c.window_config.event_time:
                self._extract_time = _timestamp_extractor(c.window_config.timestamp_extractor_class_name or "")
        if self._output_topic_producer_needed():
            self._output_producer = self.publisher.producer(c.output or "")
        if c.inputs or c.topics_pattern or c.custom_serde_inputs or c.input_specs:
            self.consumer = self._subscribe(properties)

    def _output_topic_producer_needed(self) -> bool:
        return bool(self.config.output) and not self._effectively_once

    def _subscribe(self, properties: dict[str, str]) -> Any:
        c = self.config
        if c.retain_key_ordering:
            consumer_type = pulsar.ConsumerType.KeyShared
        elif c.retain_ordering or self._effectively_once:
            consumer_type = pulsar.ConsumerType.Failover
        else:
            consumer_type = pulsar.ConsumerType.Shared
        topics: Any = list(c.input_serdes())
        if c.topics_pattern:
            topics = re.compile(c.topics_pattern)
        kwargs: dict[str, Any] = {}
        if c.max_message_retries is not None:
            kwargs["dead_letter_policy"] = pulsar.ConsumerDeadLetterPolicy(
                c.max_message_retries, c.dead_letter_topic
            )
        if c.timeout_ms and c.window_config is None:
            kwargs["unacked_messages_timeout_ms"] = max(c.timeout_ms, 10_000)
        position = (pulsar.InitialPosition.Earliest if c.subscription_position is SubscriptionPosition.EARLIEST
                    else pulsar.InitialPosition.Latest)
        assert self.client is not None
        consumer = self.client.subscribe(
            topics,
            c.subscription_name,
            consumer_type=consumer_type,
            receiver_queue_size=RECEIVER_QUEUE,
            consumer_name=f"{c.fqfn}:{self.spec.instance_id}",
            initial_position=position,
            negative_ack_redelivery_delay_ms=RETRY_DELAY_MS,
            properties=properties,
            **kwargs,
        )
        if c.skip_to_latest:
            consumer.seek(pulsar.MessageId.latest)
        return consumer

    def _make_logger(self) -> logging.Logger:
        c = self.config
        logger = logging.getLogger(f"taureau.function.{c.tenant}.{c.namespace}.{c.name}.{self.spec.instance_id}")
        logger.setLevel(logging.INFO)
        self._log_sink = None
        if c.log_topic:
            log_producer = self.publisher.producer(c.log_topic)
            fqfn = c.fqfn.encode()

            def sink(line: str) -> None:
                log_producer.send_async(line.encode(), None, properties={"function": fqfn.decode()})

            self._log_sink = sink
            logger.addHandler(LogTopicHandler(sink))
        return logger

    def _ephemeral(self, of: str | None) -> Any:
        if self._ephemeral_factory is None:
            raise RuntimeError("this worker runs without a state store")
        return self._ephemeral_factory(of or self.config.fqfn)

    # -- the processing thread --------------------------------------------------------------

    def submit(self, kind: str, item: Any) -> None:
        """From the channel thread: an invocation, or a stop."""
        self._control.put((kind, item))

    def stop(self) -> None:
        self._stopping.set()
        self._control.put(("stop", None))

    def _next(self) -> tuple[str, Any] | None:
        """The next thing to do: a control item first, else a message; None on a timeout."""
        timeout = self._next_timeout()
        if self.consumer is None:
            try:
                return self._control.get(timeout=timeout)
            except queue.Empty:
                return None
        if not self._control.empty():
            return self._control.get_nowait()
        try:
            return "msg", self.consumer.receive(max(1, min(POLL_MS, int(timeout * 1000))))
        except pulsar.Timeout:
            return None

    def run(self) -> None:
        router = self._router = StdoutRouter.install()
        router.route_current_thread(self._log_sink)
        reporter = threading.Thread(target=self._report_loop, name="taureau-status", daemon=True)
        reporter.start()
        try:
            while not self._stopping.is_set():
                item = self._next()
                if item is None:
                    self._on_tick()
                    continue
                kind, value = item
                if kind == "msg":
                    self._handle_message(value)
                elif kind == "invoke":
                    self._handle_invoke(value)
                elif kind == "stop":
                    break
                if self._windower is not None:
                    self._on_tick()
        finally:
            router.route_current_thread(None)
            self._stopping.set()
            self._shutdown()

    def _next_timeout(self) -> float:
        """Seconds until a window may be due (at most half a second)."""
        if self._windower is None:
            return 0.5
        deadline = self._windower.next_deadline_ms()
        if deadline is None:
            return 0.5
        return min(max((deadline - time.time() * 1000) / 1000, 0.0), 0.5)

    def _on_tick(self) -> None:
        if self._windower is not None:
            for fired in self._windower.tick(int(time.time() * 1000)):
                self._emit_window(fired)

    def _serde_for(self, topic: str) -> Any:
        """The serde of the input topic a message came from (a partition: its topic's)."""
        serde = self._serdes_by_topic.get(topic)
        if serde is None:
            name = TopicName.parse(topic).partitioned_name
            serde = self._serdes_by_topic[topic] = self._serdes_by_topic.get(name, self._default_serde)
        return serde

    def _handle_message(self, message: Any) -> None:
        topic = message.topic_name()
        self.stats.on_received()
        consumer = self.consumer
        if self._ack_on_receipt:
            consumer.acknowledge(message)
        try:
            value = self._serde_for(topic).deserialize(message.data())
        except Exception as exc:
            self.stats.on_exception(exc, user=False)
            self._nack(message)
            return
        if self._windower is not None:
            self._window_add(message, topic, value)
            return
        self.context.set_current(message, topic)
        ok, result = self._call(value, self.context)
        if not ok:
            self._nack(message)
            return
        self._emit(result, [message], message)

    def _call(self, value: Any, context: Any) -> tuple[bool, Any]:
        """Run the user's function under the deadline; (False, None) if it raised."""
        started = time.perf_counter()
        self.stats.on_start()
        try:
            if self._timeout_s:
                with self._deadline.limit(self._timeout_s):
                    result = self._run_user(value, context)
            else:
                result = self._run_user(value, context)
        except Exception as exc:
            self.stats.on_done((time.perf_counter() - started) * 1000, ok=False)
            self.stats.on_exception(exc, user=True)
            self.logger.warning("process raised %s: %s", type(exc).__name__, exc)
            return False, None
        finally:
            if self._log_sink is not None:
                self._router.flush_current_thread()
        self.stats.on_done((time.perf_counter() - started) * 1000, ok=True)
        return True, result

    def _run_user(self, value: Any, context: Any) -> Any:
        result = self._invoke(value, context)
        if inspect.isawaitable(result):
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            result = self._loop.run_until_complete(result)
        return result

    def _emit(self, result: Any, inputs: list[Any], last: Any) -> None:
        """Publish a result to the output topic, then ack `inputs` as the guarantee says."""
        c = self.config
        if result is None or not c.output:
            if self._auto_ack:
                for message in inputs:
                    self.consumer.acknowledge(message)
            return
        try:
            payload = bytes(self._output_serde.serialize(result))
        except Exception as exc:
            self.stats.on_exception(exc, user=True)
            for message in inputs:
                self._nack(message)
            return
        properties: dict[str, str] = {}
        key = sequence_id = producer = None
        if last is not None:
            topic, message_id, key = last.topic_name(), last.message_id(), last.partition_key()
            if c.forward_source_message_property:
                properties = dict(last.properties())
            properties["__pfn_input_topic__"] = topic
            properties["__pfn_input_msg_id__"] = base64.urlsafe_b64encode(message_id.serialize()).decode()
            if self._effectively_once:
                producer = self.publisher.producer(c.output or "", name=f"{c.fqfn}@{topic}", batching=False)
                sequence_id = _sequence_id(message_id)
        if producer is None:
            producer = self._output_producer if self._output_topic_producer_needed() else \
                self.publisher.producer(c.output or "")

        def done(res: Any, _message_id: Any) -> None:
            if res == pulsar.Result.Ok:
                if self._auto_ack:
                    for message in inputs:
                        self.consumer.acknowledge(message)
            else:
                self.stats.on_exception(RuntimeError(f"publish to {c.output} failed: {res}"), user=False)
                for message in inputs:
                    self._nack(message)

        send_fast(producer, payload, done, properties, key, sequence_id)

    def _nack(self, message: Any) -> None:
        if not self._ack_on_receipt and self.consumer is not None:
            self.consumer.negative_acknowledge(message)

    def _ack(self, message_id: Any, topic: str | None) -> None:
        """context.ack: the SDK passes a message id (and its topic)."""
        self.consumer.acknowledge(message_id)

    # -- windows ----------------------------------------------------------------------------

    def _window_add(self, message: Any, topic: str, value: Any) -> None:
        assert self._windower is not None
        record = Record(value, topic, message.partition_key() or None, None, message.properties(), message)
        if self._windower.event_time:
            try:
                record.event_time = (int(self._extract_time(value)) if self._extract_time is not None
                                     else message.event_timestamp() or message.publish_timestamp())
            except Exception as exc:
                self.stats.on_exception(exc, user=True)
                self._nack(message)
                return
            if self._windower.is_late(record):
                self._late(record)
                return
        for fired in self._windower.add(record, int(time.time() * 1000)):
            self._emit_window(fired)

    def _late(self, record: Record) -> None:
        late_topic = self.config.window_config.late_data_topic if self.config.window_config else None
        message = record.message
        if not late_topic:
            if self._auto_ack:
                self.consumer.acknowledge(message)
            return

        def done(res: Any, _mid: Any) -> None:
            if res == pulsar.Result.Ok and self._auto_ack:
                self.consumer.acknowledge(message)
            elif res != pulsar.Result.Ok:
                self._nack(message)

        self.publisher.producer(late_topic).send_async(message.data(), done, properties=message.properties())

    def _emit_window(self, fired: Fired) -> None:
        if not fired.records:
            if self._auto_ack:
                for record in fired.evicted:
                    self.consumer.acknowledge(record.message)
            return
        last = fired.records[-1].message
        self.context.set_current(last, fired.records[-1].topic_name)
        ok, result = self._call(list(fired.records), self.context)
        evicted = [r.message for r in fired.evicted]
        if not ok:
            for message in evicted:
                self._nack(message)
            return
        self._emit(result, evicted, last)

    # -- invocations ------------------------------------------------------------------------

    def _handle_invoke(self, message: Message) -> None:
        header = message.header
        self.stats.on_received()
        self.context.set_current(None, None)
        if header.get("cron"):
            value: Any = header["cron"]
        else:
            try:
                value = self._default_serde.deserialize(message.blob) if header.get("deserialize", True) \
                    else message.blob
            except Exception as exc:
                self._answer_invoke(header, False, error=f"cannot deserialize the input: {exc}")
                return
        ok, result = self._call(value, self.context)
        if not ok:
            last = self.stats.latest_user[-1] if self.stats.latest_user else {}
            self._answer_invoke(header, False, error=last.get("exceptionString", "function raised"),
                                trace=last.get("stackTrace", ""))
            return
        if header.get("publish") and self.config.output:
            self._emit(result, [], None)
        try:
            payload = b"" if result is None else bytes(self._output_serde.serialize(result))
        except Exception as exc:
            self._answer_invoke(header, False, error=f"cannot serialize the result: {exc}")
            return
        self._answer_invoke(header, True, payload, has_value=result is not None)

    def _answer_invoke(self, header: dict[str, Any], ok: bool, payload: bytes = b"", **fields: Any) -> None:
        if self.channel is None or "req" not in header:
            return
        self.channel.send({"t": "result", "req": header["req"], "ok": ok, **fields}, payload)

    # -- status and shutdown ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        snapshot = self.stats.snapshot()
        snapshot["userMetrics"] = self.metrics.snapshot()
        return snapshot

    def _report_loop(self) -> None:
        last: dict[str, Any] = {}
        last_sent = 0.0
        while not self._stopping.wait(STATUS_INTERVAL_S):
            if self.channel is None:
                continue
            status = self.status()
            now = time.monotonic()
            if status == last and now - last_sent < STATUS_HEARTBEAT_S:
                continue
            try:
                self.channel.send({"t": "status", "status": status})
            except Exception:
                return
            last, last_sent = status, now

    def _shutdown(self) -> None:
        if self.channel is not None:
            try:
                self.channel.send({"t": "status", "status": self.status()})
            except Exception:
                pass
        try:
            if self.consumer is not None:
                self.consumer.close()
            self.publisher.flush()
            self.publisher.close()
        except Exception as exc:
            log.warning("error while closing instance: %s", exc)
        finally:
            if self.client is not None:
                self.client.close()
            if self._loop is not None:
                self._loop.close()
