"""ContextImpl: the `pulsar.Context` a function's `process(input, context)` receives.

Every method of the SDK's abstract Context is here with Pulsar's semantics; Taureau adds
`delete_state`, `list_state_keys` and `ephemeral_state()` (far memory under the function's
own namespace in the state store).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pulsar

from taureau.functions.config import FunctionConfig
from taureau.functions.loader import load_serde
from taureau.functions.publisher import Publisher, compression_named
from taureau.functions.secrets import SecretsProvider
from taureau.functions.state_ops import FunctionState


@dataclass(slots=True)
class FunctionIdentity:
    tenant: str
    namespace: str
    name: str
    function_id: str
    version: str
    instance_id: int

    @property
    def fqfn(self) -> str:
        return f"{self.tenant}/{self.namespace}/{self.name}"


@dataclass(slots=True)
class UserMetrics:
    """record_metric observations: name -> [count, sum, last]; read by the status reporter."""

    values: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, name: str, value: float) -> None:
        with self.lock:
            entry = self.values.setdefault(name, [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += value
            entry[2] = value

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self.lock:
            return {k: {"count": v[0], "sum": v[1], "last": v[2]} for k, v in self.values.items()}


class ContextImpl(pulsar.Context):
    def __init__(
        self,
        identity: FunctionIdentity,
        config: FunctionConfig,
        logger: logging.Logger,
        publisher: Publisher,
        state: FunctionState,
        metrics: UserMetrics,
        acker: Callable[[Any, str], None],
        secrets: SecretsProvider,
        ephemeral: Callable[[str | None], Any] | None = None,
    ) -> None:
        self._identity = identity
        self._config = config
        self._logger = logger
        self._publisher = publisher
        self._state = state
        self._metrics = metrics
        self._acker = acker
        self._secrets = secrets
        self._ephemeral = ephemeral
        self._serdes: dict[str, Any] = {}
        self.message: Any = None  # the pulsar.Message being processed (None for invocations)
        self.topic: str | None = None

    def set_current(self, message: Any, topic: str | None) -> None:
        self.message = message
        self.topic = topic

    # -- the current message ----------------------------------------------------------------

    def get_message_id(self):
        return self.message.message_id() if self.message is not None else None

    def get_message_key(self):
        return self.message.partition_key() if self.message is not None else None

    def get_message_eventtime(self):
        return self.message.event_timestamp() if self.message is not None else None

    def get_message_properties(self):
        return self.message.properties() if self.message is not None else {}

    def get_current_message_topic_name(self):
        return self.topic

    def get_partition_key(self):
        return self.message.partition_key() if self.message is not None else None

    def get_ordering_key(self):
        return self.message.ordering_key() if self.message is not None else None

    # -- the function -----------------------------------------------------------------------

    def get_function_tenant(self):
        return self._identity.tenant

    def get_function_namespace(self):
        return self._identity.namespace

    def get_function_name(self):
        return self._identity.name

    def get_function_id(self):
        return self._identity.function_id

    def get_instance_id(self):
        return self._identity.instance_id

    def get_function_version(self):
        return self._identity.version

    def get_logger(self):
        return self._logger

    def get_user_config_value(self, key):
        return self._config.user_config.get(key)

    def get_user_config_map(self):
        return dict(self._config.user_config)

    def get_secret(self, secret_name):
        if secret_name not in self._config.secrets:
            return None
        return self._secrets.provide_secret(secret_name, self._config.secrets[secret_name])

    def record_metric(self, metric_name, metric_value):
        self._metrics.observe(str(metric_name), float(metric_value))

    def get_input_topics(self):
        return list(self._config.input_serdes())

    def get_output_topic(self):
        return self._config.output

    def get_output_serde_class_name(self):
        return self._config.output_serde_class_name

    # -- publishing and acking --------------------------------------------------------------

    def publish(self, topic_name, message, serde_class_name="serde.IdentitySerDe", properties=None,
                compression_type=None, callback=None, message_conf=None):
        serde = self._serdes.get(serde_class_name)
        if serde is None:
            serde = self._serdes[serde_class_name] = load_serde(serde_class_name)
        payload = bytes(serde.serialize(message))
        producer = self._publisher.producer(topic_name, compression=compression_named(compression_type))
        conf = dict(message_conf or {})
        if properties and "properties" not in conf:
            conf["properties"] = properties
        done = partial(_publish_done, callback, self.get_message_id())
        producer.send_async(payload, done, **conf)

    def ack(self, msgid, topic):
        self._acker(msgid, topic)

    def get_pulsar_client(self):
        """The instance's `pulsar.Client` (Java's Context.getPulsarClient): for producers a
        function manages itself, e.g. one with a fixed name and its own sequence ids."""
        return self._publisher.client

    # -- durable state ----------------------------------------------------------------------

    def incr_counter(self, key, amount):
        return self._state.incr(key, amount)

    def get_counter(self, key):
        return self._state.get_counter(key)

    def del_counter(self, key):
        self._state.delete(key)

    def put_state(self, key, value):
        self._state.put(key, value)

    def get_state(self, key):
        return self._state.get(key)

    def delete_state(self, key):
        """Taureau: remove a key (counter or value)."""
        self._state.delete(key)

    def list_state_keys(self, prefix=""):
        """Taureau: the function's state keys starting with `prefix`, sorted."""
        return self._state.keys(prefix)

    # -- ephemeral state --------------------------------------------------------------------

    def ephemeral_state(self, of: str | None = None):
        """Taureau: far memory under `/functions/<tenant>/<namespace>/<name>` in the state
        store, leased for as long as the function exists; `of="tenant/ns/other"` opens
        another function's space (to read what an upstream function left there)."""
        if self._ephemeral is None:
            raise RuntimeError("this worker runs without a state store (standalone --no-state)")
        return self._ephemeral(of)


def _publish_done(callback, input_message_id, result, message_id) -> None:
    if callback is not None:
        callback(result, message_id)
