"""FunctionConfig: what `functions create` registers, in Pulsar's field names, validated.

The JSON / YAML form uses the camelCase names of Pulsar's FunctionConfig (`className`,
`processingGuarantees`, `windowConfig`...), so a `--function-config-file` written for
`pulsar-admin` loads here unchanged. Fields Pulsar has but a Python runtime has no use for
(`jar`, `go`, `runtimeFlags`...) are accepted and ignored; a name neither knows is refused, so
a typo never silently drops a setting. Taureau's own fields: `schedule` (cron), `minInstances`,
`maxInstances`, `idleTimeoutMs`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from taureau.common.errors import InvalidTopicNameError
from taureau.common.names import TopicName, check_name_part
from taureau.functions.errors import FunctionConfigError

MAX_PARALLELISM = 64  # instances of one function on one worker
MAX_INPUT_TOPICS = 64
MAX_CONFIG_BYTES = 256 * 1024  # the config as JSON (user config and secrets included)
DEFAULT_IDLE_TIMEOUT_MS = 60_000


class ProcessingGuarantees(StrEnum):
    ATLEAST_ONCE = "ATLEAST_ONCE"
    ATMOST_ONCE = "ATMOST_ONCE"
    EFFECTIVELY_ONCE = "EFFECTIVELY_ONCE"
    MANUAL = "MANUAL"


class SubscriptionPosition(StrEnum):
    LATEST = "Latest"
    EARLIEST = "Earliest"


@dataclass(slots=True)
class Resources:
    """Per instance. Pulsar's defaults: one core, 1 GiB of memory, 10 GiB of disk."""

    cpu: float = 1.0
    ram: int = 1024**3
    disk: int = 10 * 1024**3


@dataclass(slots=True)
class WindowConfig:
    window_length_count: int | None = None
    window_length_duration_ms: int | None = None
    sliding_interval_count: int | None = None
    sliding_interval_duration_ms: int | None = None
    late_data_topic: str | None = None
    max_lag_ms: int | None = None
    watermark_emit_interval_ms: int | None = None
    timestamp_extractor_class_name: str | None = None

    @property
    def event_time(self) -> bool:
        return self.timestamp_extractor_class_name is not None


@dataclass(slots=True)
class FunctionConfig:
    tenant: str = "public"
    namespace: str = "default"
    name: str = ""
    class_name: str = ""
    py: str | None = None  # the file name the code was uploaded as (.py, .zip or .whl)
    inputs: list[str] = field(default_factory=list)
    topics_pattern: str | None = None
    custom_serde_inputs: dict[str, str] = field(default_factory=dict)
    input_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    output: str | None = None
    output_serde_class_name: str | None = None
    output_schema_type: str | None = None  # "avro" / "json": the output serde names a pulsar.schema.Record
    log_topic: str | None = None
    processing_guarantees: ProcessingGuarantees = ProcessingGuarantees.ATLEAST_ONCE
    retain_ordering: bool = False
    retain_key_ordering: bool = False
    forward_source_message_property: bool = True
    user_config: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)
    auto_ack: bool = True
    max_message_retries: int | None = None
    dead_letter_topic: str | None = None
    sub_name: str | None = None
    subscription_position: SubscriptionPosition = SubscriptionPosition.LATEST
    skip_to_latest: bool = False
    parallelism: int = 1
    resources: Resources = field(default_factory=Resources)
    timeout_ms: int | None = None
    window_config: WindowConfig | None = None
    cleanup_subscription: bool = True
    custom_runtime_options: str | None = None
    producer_config: dict[str, Any] = field(default_factory=dict)
    # Taureau's own
    schedule: str | None = None
    min_instances: int | None = None
    max_instances: int | None = None
    idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS

    # -- derived ----------------------------------------------------------------------------

    @property
    def fqfn(self) -> str:
        return f"{self.tenant}/{self.namespace}/{self.name}"

    @property
    def subscription_name(self) -> str:
        return self.sub_name or self.fqfn

    @property
    def autoscaled(self) -> bool:
        return self.max_instances is not None

    @property
    def initial_instances(self) -> int:
        """Instances to start with: the parallelism, or the floor of an autoscaled range."""
        if self.autoscaled:
            return self.min_instances or 0
        return self.parallelism

    @property
    def runtime_kind(self) -> str | None:
        """'process' or 'thread' from customRuntimeOptions {"runtime": ...}; None = worker default."""
        return runtime_options(self.custom_runtime_options).get("runtime")

    def input_serdes(self) -> dict[str, str | None]:
        """Input topic -> serde class name (None: the default IdentitySerDe)."""
        serdes: dict[str, str | None] = {t: None for t in self.inputs}
        serdes.update(self.custom_serde_inputs)
        for topic, spec in self.input_specs.items():
            serdes[topic] = spec.get("serdeClassName") or serdes.get(topic)
        return serdes

    def input_schema_type(self, topic: str) -> str | None:
        """inputSpecs' schemaType for a topic ("avro", "json"), if any."""
        schema = self.input_specs.get(topic, {}).get("schemaType")
        return str(schema).lower() if schema else None

    # -- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Resources | WindowConfig):
                value = {_camel(k): v for k, v in dataclasses.asdict(value).items() if v is not None}
            elif isinstance(value, StrEnum):
                value = value.value
            if value is None:
                continue
            out[_JSON_NAMES.get(f.name, _camel(f.name))] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FunctionConfig:
        """Build and validate a config from its JSON/YAML form (raises FunctionConfigError)."""
        config = cls()
        config.update_from(data)
        config.validate()
        return config

    def update_from(self, data: dict[str, Any]) -> None:
        """Set the fields present in `data` (Pulsar's camelCase names); no validation."""
        if not isinstance(data, dict):
            raise FunctionConfigError("a function config must be a JSON/YAML object")
        for key, value in data.items():
            if key in _IGNORED:
                continue
            attr = _ATTR_FOR.get(key)
            if attr is None:
                raise FunctionConfigError(f"unknown function config field {key!r}")
            if value is None:
                continue
            setattr(self, attr, _coerce(attr, value))

    # -- validation -------------------------------------------------------------------------

    def validate(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise FunctionConfigError("; ".join(problems))
        if len(self.to_json()) > MAX_CONFIG_BYTES:
            raise FunctionConfigError(f"function config is over {MAX_CONFIG_BYTES} bytes")

    def check_update(self, new: FunctionConfig) -> None:
        """What an update may not change (Pulsar refuses the same)."""
        fixed = ("tenant", "namespace", "name", "processing_guarantees", "retain_ordering",
                 "retain_key_ordering", "subscription_name", "auto_ack")
        for attr in fixed:
            if getattr(self, attr) != getattr(new, attr):
                label = "subName" if attr == "subscription_name" else _JSON_NAMES.get(attr, _camel(attr))
                raise FunctionConfigError(f"{label} cannot be altered")
        dropped = set(self.inputs) - set(new.inputs)
        if dropped:
            raise FunctionConfigError(f"input topics cannot be removed: {sorted(dropped)}")


def runtime_options(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        options = json.loads(text)
    except ValueError:
        raise FunctionConfigError("customRuntimeOptions must be a JSON object") from None
    if not isinstance(options, dict):
        raise FunctionConfigError("customRuntimeOptions must be a JSON object")
    return options


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.capitalize() for p in rest)


_JSON_NAMES = {"class_name": "className", "sub_name": "subName"}
_ATTR_FOR = {_JSON_NAMES.get(f.name, _camel(f.name)): f.name for f in dataclasses.fields(FunctionConfig)}
_ATTR_FOR["subscriptionName"] = "sub_name"  # an alias some YAML files use
# Pulsar fields that do not apply to a Python runtime, or that it derives itself.
_IGNORED = {"jar", "go", "runtime", "fqfn", "functionType", "runtimeFlags", "customSchemaInputs",
            "customSchemaOutputs", "maxPendingAsyncRequests",
            "exposePulsarAdminClientEnabled", "batchBuilder"}
_INT_FIELDS = {"parallelism", "max_message_retries", "timeout_ms", "min_instances", "max_instances",
               "idle_timeout_ms"}
_BOOL_FIELDS = {"retain_ordering", "retain_key_ordering", "forward_source_message_property", "auto_ack",
                "skip_to_latest", "cleanup_subscription"}
_DICT_FIELDS = {"custom_serde_inputs", "input_specs", "user_config", "secrets", "producer_config"}


def _coerce(attr: str, value: Any) -> Any:
    """Turn a JSON/YAML value into the field's type, or raise FunctionConfigError."""
    name = _JSON_NAMES.get(attr, _camel(attr))
    try:
        if attr in _INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError
            return int(value)
        if attr in _BOOL_FIELDS:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise ValueError
            return value
        if attr in _DICT_FIELDS:
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError
            return value
        if attr == "inputs":
            if isinstance(value, str):
                value = [t for t in value.split(",") if t]
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise ValueError
            return value
        if attr == "processing_guarantees":
            return ProcessingGuarantees(str(value).upper())
        if attr == "subscription_position":
            return SubscriptionPosition(str(value).capitalize())
        if attr == "resources":
            return _sub_config(Resources, value)
        if attr == "window_config":
            return _sub_config(WindowConfig, value)
        if not isinstance(value, str):
            raise ValueError
        return value
    except (ValueError, TypeError):
        raise FunctionConfigError(f"bad value for {name}: {value!r}") from None


def _sub_config(cls: type, value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError
    attrs = {_camel(f.name): f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, item in value.items():
        if key == "actualWindowFunctionClassName":
            continue  # Pulsar's internal name for the wrapped class
        if key not in attrs:
            raise FunctionConfigError(f"unknown field {key!r} in {cls.__name__}")
        kwargs[attrs[key]] = item
    return cls(**kwargs)


_CLASS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _check_topic(what: str, topic: str) -> str | None:
    try:
        TopicName.parse(topic)
    except InvalidTopicNameError as exc:
        return f"{what}: {exc}"
    return None


def _problems(c: FunctionConfig):
    for kind, value in (("tenant", c.tenant), ("namespace", c.namespace), ("function", c.name)):
        try:
            check_name_part(kind, value)
        except InvalidTopicNameError:
            yield f"invalid {kind} name {value!r}" if value else f"{kind} name is required"
    if not c.class_name:
        yield "className is required (--classname MODULE.CLASS, or MODULE for a plain process())"
    elif not _CLASS_NAME.fullmatch(c.class_name):
        yield f"className {c.class_name!r} is not a dotted Python name"
    for serde in [*c.custom_serde_inputs.values(), c.output_serde_class_name]:
        if serde is not None and not _CLASS_NAME.fullmatch(serde):
            yield f"serde class name {serde!r} is not a dotted Python name"
    if c.topics_pattern and c.inputs:
        yield "inputs and topicsPattern are exclusive (use one or the other)"
    if c.topics_pattern:
        try:
            re.compile(c.topics_pattern.split("://", 1)[-1])
        except re.error as exc:
            yield f"topicsPattern is not a regular expression: {exc}"
    inputs = [*c.inputs, *(t for t in c.custom_serde_inputs if t not in c.inputs),
              *(t for t in c.input_specs if t not in c.inputs)]
    if len(inputs) > MAX_INPUT_TOPICS:
        yield f"at most {MAX_INPUT_TOPICS} input topics"
    for topic in inputs:
        yield from filter(None, [_check_topic("input topic", topic)])
    for what, optional in (("output topic", c.output), ("log topic", c.log_topic),
                           ("dead letter topic", c.dead_letter_topic)):
        if optional is not None:
            yield from filter(None, [_check_topic(what, optional)])
    if c.output and c.output in inputs:
        yield f"output topic {c.output} is also an input topic (a function would feed itself)"
    if c.retain_ordering and c.retain_key_ordering:
        yield "retainOrdering and retainKeyOrdering are exclusive"
    if c.processing_guarantees is ProcessingGuarantees.EFFECTIVELY_ONCE and c.retain_key_ordering:
        yield "EFFECTIVELY_ONCE needs a failover subscription; it cannot retain key ordering"
    if c.max_message_retries is not None and c.max_message_retries < 1:
        yield "maxMessageRetries must be at least 1"
    if c.dead_letter_topic and c.max_message_retries is None:
        yield "deadLetterTopic needs maxMessageRetries"
    if not 1 <= c.parallelism <= MAX_PARALLELISM:
        yield f"parallelism must be between 1 and {MAX_PARALLELISM}"
    if c.min_instances is not None and c.max_instances is None:
        yield "minInstances needs maxInstances (autoscaling between the two)"
    if c.max_instances is not None:
        low = c.min_instances or 0
        if not 0 <= low <= c.max_instances <= MAX_PARALLELISM or c.max_instances < 1:
            yield f"need 0 <= minInstances <= maxInstances <= {MAX_PARALLELISM} and maxInstances >= 1"
    if c.idle_timeout_ms < 100:
        yield "idleTimeoutMs must be at least 100"
    r = c.resources
    if not (r.cpu > 0 and r.ram > 0 and r.disk >= 0):
        yield "resources need cpu > 0, ram > 0 and disk >= 0"
    if c.timeout_ms is not None and c.timeout_ms <= 0:
        yield "timeoutMs must be positive"
    if c.schedule is not None:
        yield from _cron_problems(c.schedule)
    if c.window_config is not None:
        yield from _window_problems(c.window_config)
    yield from _json_problems(c)


def _cron_problems(expression: str):
    from croniter import croniter

    # Five fields (minute hour day month weekday), an @alias, or a sixth field for seconds.
    if not croniter.is_valid(expression) or len(expression.split()) not in (1, 5, 6):
        yield f"schedule {expression!r} is not a cron expression (e.g. '*/5 * * * *')"


def _window_problems(w: WindowConfig):
    if (w.window_length_count is None) == (w.window_length_duration_ms is None):
        yield "a window needs exactly one of windowLengthCount and windowLengthDurationMs"
    if w.sliding_interval_count is not None and w.sliding_interval_duration_ms is not None:
        yield "slidingIntervalCount and slidingIntervalDurationMs are exclusive"
    for name in ("window_length_count", "window_length_duration_ms", "sliding_interval_count",
                 "sliding_interval_duration_ms", "watermark_emit_interval_ms"):
        value = getattr(w, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            yield f"{_camel(name)} must be a positive integer"
    if w.max_lag_ms is not None and (not isinstance(w.max_lag_ms, int) or w.max_lag_ms < 0):
        yield "maxLagMs must be a non-negative integer"
    if w.window_length_count is not None and w.sliding_interval_duration_ms is not None:
        yield "a count window slides by count (slidingIntervalCount), not by time"
    if w.window_length_duration_ms is not None and w.sliding_interval_count is not None:
        yield "a time window slides by time (slidingIntervalDurationMs), not by count"
    if w.window_length_count is not None and w.sliding_interval_count is not None and (
        isinstance(w.window_length_count, int) and isinstance(w.sliding_interval_count, int)
        and w.sliding_interval_count > w.window_length_count
    ):
        yield "slidingIntervalCount cannot exceed windowLengthCount"
    if w.event_time and w.window_length_count is not None:
        yield "event-time windows are measured in time: use windowLengthDurationMs"
    if not w.event_time and (w.late_data_topic or w.max_lag_ms is not None):
        yield "lateDataTopic and maxLagMs need event time (timestampExtractorClassName)"
    if w.late_data_topic:
        yield from filter(None, [_check_topic("late data topic", w.late_data_topic)])
    if w.event_time and not _CLASS_NAME.fullmatch(w.timestamp_extractor_class_name or ""):
        yield "timestampExtractorClassName is not a dotted Python name"


def _json_problems(c: FunctionConfig):
    try:
        json.dumps(c.user_config)
        json.dumps(c.secrets)
    except (TypeError, ValueError):
        yield "userConfig and secrets must be JSON objects"
    if c.custom_runtime_options:
        try:
            options = runtime_options(c.custom_runtime_options)
        except FunctionConfigError as exc:
            yield str(exc)
            return
        runtime = options.get("runtime")
        if runtime is not None and runtime not in ("process", "thread"):
            yield "customRuntimeOptions runtime must be 'process' or 'thread'"
