"""Topic and namespace names: `persistent://tenant/namespace/topic[-partition-N]`.

Short forms are expanded the way the Pulsar client does: `my-topic` becomes
`persistent://public/default/my-topic`, and `t/ns/x` becomes `persistent://t/ns/x`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from taureau.common.errors import InvalidTopicNameError

PARTITION_SUFFIX = "-partition-"
DEFAULT_TENANT = "public"
DEFAULT_NAMESPACE = "default"

# Pulsar allows letters, digits and `-_=:.` in tenant and namespace names; topic local
# names may also hold `%` (URL-encoded characters) and `/` is never allowed. Always
# fullmatch: `$` also matches before a trailing newline. "." and ".." are never names: they
# would be path steps wherever a name becomes a path.
_NAME_PART = re.compile(r"[A-Za-z0-9_=:.\-]+")
_LOCAL_NAME = re.compile(r"[A-Za-z0-9_=:.%\-]+")
_DOT_NAMES = (".", "..")
_DOMAINS = ("persistent", "non-persistent")


def _check(pattern: re.Pattern[str], kind: str, value: object) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidTopicNameError(f"invalid {kind} name: {value!r}")
    if value in _DOT_NAMES:
        raise InvalidTopicNameError(f"invalid {kind} name: {value!r} ('.' and '..' are not names)")
    return value


def check_name_part(kind: str, value: str) -> str:
    """Return `value` if it is a valid tenant or namespace name, else raise."""
    return _check(_NAME_PART, kind, value)


@dataclass(frozen=True, slots=True)
class NamespaceName:
    tenant: str
    namespace: str

    @classmethod
    def parse(cls, text: str) -> NamespaceName:
        parts = text.split("/")
        if len(parts) != 2:
            raise InvalidTopicNameError(f"invalid namespace name: {text!r} (expected tenant/namespace)")
        return cls(check_name_part("tenant", parts[0]), check_name_part("namespace", parts[1]))

    def __str__(self) -> str:
        return f"{self.tenant}/{self.namespace}"


@dataclass(frozen=True, slots=True)
class TopicName:
    """A fully qualified topic name; `partition` is -1 for a non-partitioned topic."""

    domain: str
    tenant: str
    namespace: str
    local_name: str
    partition: int = -1

    @classmethod
    def parse(cls, text: str) -> TopicName:
        """Parse and validate a topic name, expanding short forms.

        >>> TopicName.parse("orders-partition-2").partitioned_name
        'persistent://public/default/orders'
        """
        if not isinstance(text, str) or not text:
            raise InvalidTopicNameError(f"invalid topic name: {text!r}")
        domain = "persistent"
        rest = text
        if "://" in text:
            domain, rest = text.split("://", 1)
            if domain not in _DOMAINS:
                raise InvalidTopicNameError(f"invalid topic domain {domain!r} in {text!r}")
        parts = rest.split("/")
        if len(parts) == 1 and "://" not in text:
            tenant, namespace, local = DEFAULT_TENANT, DEFAULT_NAMESPACE, parts[0]
        elif len(parts) == 3:
            tenant, namespace, local = parts
        else:
            raise InvalidTopicNameError(
                f"invalid topic name: {text!r} (expected persistent://tenant/namespace/topic)"
            )
        check_name_part("tenant", tenant)
        check_name_part("namespace", namespace)
        _check(_LOCAL_NAME, "topic", local)
        partition = -1
        idx = local.rfind(PARTITION_SUFFIX)
        if idx > 0:
            suffix = local[idx + len(PARTITION_SUFFIX) :]
            if suffix.isdigit():
                partition = int(suffix)
                local = local[:idx]
        return cls(domain, tenant, namespace, local, partition)

    @property
    def namespace_name(self) -> NamespaceName:
        return NamespaceName(self.tenant, self.namespace)

    @property
    def partitioned_name(self) -> str:
        """The name without any `-partition-N` suffix."""
        return f"{self.domain}://{self.tenant}/{self.namespace}/{self.local_name}"

    @property
    def is_partition(self) -> bool:
        return self.partition >= 0

    @property
    def persistent(self) -> bool:
        return self.domain == "persistent"

    def partition_name(self, index: int) -> TopicName:
        return TopicName(self.domain, self.tenant, self.namespace, self.local_name, index)

    @property
    def storage_name(self) -> str:
        """The managed ledger name: `tenant/namespace/persistent/topic`, as Pulsar names it."""
        return f"{self.tenant}/{self.namespace}/{self.domain}/{self.local}"

    @property
    def local(self) -> str:
        if self.partition >= 0:
            return f"{self.local_name}{PARTITION_SUFFIX}{self.partition}"
        return self.local_name

    def __str__(self) -> str:
        return f"{self.domain}://{self.tenant}/{self.namespace}/{self.local}"
