"""SketchSpec: what `taureau sketches create` asks for, checked, and the function it becomes.

A sketch function is an ordinary Taureau function: this module turns a spec into Pulsar's
FunctionConfig fields (the spec itself travels in userConfig under SPEC_KEY, so the instance
and the query side read the same thing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from taureau.common.errors import InvalidTopicNameError
from taureau.common.names import TopicName, check_name_part
from taureau.sketches import registry
from taureau.sketches.base import MAX_SKETCH_BYTES
from taureau.sketches.errors import SketchParamError

SPEC_KEY = "taureau.sketch"
CLASS_NAME = "taureau_sketch_function.SketchFunction"
SHIM_FILE = "taureau_sketch_function.py"
# The code uploaded for every sketch function: the class lives in the installed package.
SHIM = b"from taureau.sketches.function import SketchFunction  # noqa: F401\n"
FINALIZE_SCHEDULE = "* * * * * *"  # every second: seal and publish the windows that are due

MIN_WINDOW_MS, MAX_WINDOW_MS = 100, 24 * 3600 * 1000
MAX_PARALLELISM = 64
MAX_RETAINED = 1000
# The durable table of a function holds at most 64 MiB; retained windows must fit half of it.
STATE_BUDGET_BYTES = 32 * 1024 * 1024
MAX_FIELD_CHARS = 256


@dataclass(slots=True)
class SketchSpec:
    name: str
    kind: str
    inputs: list[str]
    tenant: str = "public"
    namespace: str = "default"
    params: dict[str, Any] = field(default_factory=dict)
    key_field: str | None = None  # JSON field holding the item (item kinds)
    value_field: str | None = None  # JSON field holding the number (quantile kinds)
    weight_field: str | None = None  # JSON field holding the weight (weighted kinds)
    window_ms: int = 60_000
    parallelism: int = 1
    output: str | None = None  # merged sketches, one message per window
    retained: int = 30  # windows kept queryable
    grace_ms: int = 2_000  # how long after its end a window waits for late partials

    @property
    def fqfn(self) -> str:
        return f"{self.tenant}/{self.namespace}/{self.name}"

    @property
    def output_topic(self) -> str:
        return self.output or f"persistent://{self.tenant}/{self.namespace}/{self.name}-sketches"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SketchSpec:
        if not isinstance(data, dict):
            raise SketchParamError("a sketch spec is a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise SketchParamError(f"unknown sketch fields: {', '.join(sorted(unknown))}")
        missing = {"name", "kind", "inputs"} - set(data)
        if missing:
            raise SketchParamError(f"a sketch needs {', '.join(sorted(missing))}")
        spec = cls(**data)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Every check, before anything is created (raises SketchParamError)."""
        check_names(self.tenant, self.namespace, self.name)
        cls = registry.kind(self.kind)
        if not isinstance(self.params, dict):
            raise SketchParamError("params is a JSON object")
        cls.from_params(self.params)  # checks names and bounds of the parameters
        if isinstance(self.inputs, str):
            self.inputs = [t for t in self.inputs.split(",") if t]
        if not isinstance(self.inputs, list) or not self.inputs or not all(isinstance(t, str) for t in self.inputs):
            raise SketchParamError("a sketch needs at least one input topic")
        for topic in [*self.inputs, self.output_topic]:
            try:
                TopicName.parse(topic)
            except InvalidTopicNameError as exc:
                raise SketchParamError(str(exc)) from None
        for name in ("key_field", "value_field", "weight_field"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD_CHARS):
                raise SketchParamError(f"{name} is a JSON field name of 1..{MAX_FIELD_CHARS} characters")
        if self.value_field is not None and cls.input != "number":
            raise SketchParamError(f"a {self.kind} sketch takes items: give --key-field, not --value-field")
        if self.key_field is not None and cls.input == "number":
            raise SketchParamError(f"a {self.kind} sketch takes numbers: give --value-field, not --key-field")
        if self.weight_field is not None and not cls.weighted:
            raise SketchParamError(f"a {self.kind} sketch takes no weights")
        _bounded("window_ms", self.window_ms, MIN_WINDOW_MS, MAX_WINDOW_MS)
        _bounded("parallelism", self.parallelism, 1, MAX_PARALLELISM)
        _bounded("grace_ms", self.grace_ms, 0, max(self.window_ms, 60_000))
        # Any kind's sketch may take MAX_SKETCH_BYTES: that many windows fit the state budget.
        _bounded("retained", self.retained, 1, min(MAX_RETAINED, STATE_BUDGET_BYTES // MAX_SKETCH_BYTES))

    def function_config(self) -> dict[str, Any]:
        """Pulsar's FunctionConfig fields of the function that runs this sketch."""
        return {
            "tenant": self.tenant,
            "namespace": self.namespace,
            "name": self.name,
            "className": CLASS_NAME,
            "py": SHIM_FILE,
            "inputs": list(self.inputs),
            "parallelism": self.parallelism,
            "windowConfig": {"windowLengthDurationMs": self.window_ms},
            "schedule": FINALIZE_SCHEDULE,
            "userConfig": {SPEC_KEY: self.to_dict()},
        }


def check_names(tenant: str, namespace: str, name: str | None = None) -> str:
    """tenant/namespace[/name], or SketchParamError naming the bad part."""
    try:
        check_name_part("tenant", tenant)
        check_name_part("namespace", namespace)
        if name is not None:
            check_name_part("sketch", name)
    except InvalidTopicNameError as exc:
        raise SketchParamError(str(exc)) from None
    return f"{tenant}/{namespace}" + (f"/{name}" if name is not None else "")


def _bounded(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SketchParamError(f"{name} must be an integer in {low}..{high}, not {value!r}")


def spec_of(user_config: dict[str, Any]) -> SketchSpec | None:
    """The spec of a function created as a sketch (None for any other function)."""
    data = user_config.get(SPEC_KEY)
    return SketchSpec.from_dict(dict(data)) if isinstance(data, dict) else None
