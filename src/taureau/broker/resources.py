"""Tenants, namespaces, their policies and partitioned-topic metadata, kept in the metadata store.

Layout in the metadata store (values are JSON):
    /admin/tenants/<tenant>                               {"adminRoles": [...], "allowedClusters": [...]}
    /admin/policies/<tenant>/<namespace>                  NamespacePolicies
    /admin/partitioned-topics/<tenant>/<namespace>/<domain>/<topic>   {"partitions": N}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from taureau.broker.dispatch.rate import DispatchRate
from taureau.broker.inactive_topics import InactiveTopicPolicies
from taureau.broker.persistence import PersistencePolicies
from taureau.broker.policy_json import json_object
from taureau.broker.schemas.compatibility import Strategy
from taureau.broker.subscription_expiration import check_expiration_minutes
from taureau.common.errors import (
    BadVersionError,
    BrokerError,
    NodeExistsError,
    NotAllowedError,
    NotFoundError,
)
from taureau.common.names import NamespaceName, TopicName, check_name_part
from taureau.metadata.store import MetadataStore

TENANTS = "/admin/tenants"
POLICIES = "/admin/policies"
PARTITIONED = "/admin/partitioned-topics"
TOPIC_POLICIES = "/admin/topic-policies"
TOPIC_DEDUPLICATION = "deduplicationEnabled"  # a topic's own de-duplication switch in its policies
TOPIC_REPLICATION = "replicationClusters"  # a topic's own replication clusters (geo-replication)


class ConflictError(BrokerError):
    """The resource exists already (REST 409)."""


class ResourceNotFoundError(BrokerError):
    """The tenant, namespace or topic does not exist (REST 404)."""


class PreconditionFailedError(BrokerError):
    """The resource is in a state that forbids the change, e.g. not empty (REST 412)."""


class PartitionLimitError(BrokerError):
    """More partitions than maxNumPartitionsPerPartitionedTopic allows (REST 406, as Pulsar)."""


def check_partition_count(partitions: int, limit: int) -> int:
    """Return `partitions` if a partitioned topic may have that many (limit 0: no limit)."""
    if limit > 0 and partitions > limit:
        raise PartitionLimitError(f"Number of partitions should be less than or equal to {limit}")
    return partitions


@dataclass(slots=True)
class TenantInfo:
    adminRoles: list[str] = field(default_factory=list)  # noqa: N815 - Pulsar's JSON field names
    allowedClusters: list[str] = field(default_factory=lambda: ["standalone"])  # noqa: N815


@dataclass(slots=True)
class AutoTopicCreation:
    allowAutoTopicCreation: bool = True  # noqa: N815
    topicType: str = "non-partitioned"  # noqa: N815 - or "partitioned"
    defaultNumPartitions: int = 1  # noqa: N815


@dataclass(slots=True)
class RetentionPolicies:
    retentionTimeInMinutes: int = 0  # noqa: N815 - -1 keeps forever
    retentionSizeInMB: int = 0  # noqa: N815 - -1 keeps forever


# Pulsar's AuthAction values: what a namespace or topic permission may grant.
AUTH_ACTIONS = ("produce", "consume", "functions", "sources", "sinks", "packages")


@dataclass(slots=True)
class AuthPolicies:
    """Pulsar's `auth_policies` of a namespace: role -> actions on the namespace, topic ->
    role -> actions, subscription -> the only roles that may use it."""

    namespace_auth: dict[str, list[str]] = field(default_factory=dict)
    destination_auth: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    subscription_auth_roles: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> AuthPolicies:
        if not isinstance(data, dict):
            raise ValueError("auth_policies must be a JSON object")
        unknown = set(data) - {"namespace_auth", "destination_auth", "subscription_auth_roles"}
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} for auth_policies")
        topics = data.get("destination_auth") or {}
        if not isinstance(topics, dict):
            raise ValueError("auth_policies.destination_auth must be a JSON object")
        return cls(
            namespace_auth=check_grants(data.get("namespace_auth") or {}, actions=True),
            destination_auth={str(t): check_grants(g, actions=True) for t, g in topics.items()},
            subscription_auth_roles=check_grants(data.get("subscription_auth_roles") or {}, actions=False),
        )


def check_actions(actions: Any) -> list[str]:
    """A permission's actions: a list of Pulsar's AuthAction names, deduplicated, sorted."""
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise ValueError(f"actions must be a list of {', '.join(AUTH_ACTIONS)}")
    unknown = sorted(set(actions) - set(AUTH_ACTIONS))
    if unknown:
        raise ValueError(f"unknown action(s) {unknown}; known: {', '.join(AUTH_ACTIONS)}")
    return sorted(set(actions))


def check_grants(grants: Any, actions: bool) -> dict[str, list[str]]:
    """name -> list of actions (or of roles), checked."""
    if not isinstance(grants, dict):
        raise ValueError("grants must be a JSON object")
    out = {}
    for name, values in grants.items():
        if actions:
            out[str(name)] = check_actions(values)
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            out[str(name)] = sorted(set(values))
        else:
            raise ValueError("subscription roles must be a list of strings")
    return out


@dataclass(slots=True)
class PublishRate:
    """Pulsar's PublishRate: what each topic of a namespace may take per second (-1: no limit)."""

    publishThrottlingRateInMsg: int = -1  # noqa: N815
    publishThrottlingRateInByte: int = -1  # noqa: N815

    @classmethod
    def from_json(cls, data: Any) -> PublishRate:
        if not isinstance(data, dict):
            raise ValueError("publish rate must be a JSON object")
        rate = _build(cls, data)
        if rate.publishThrottlingRateInMsg < -1 or rate.publishThrottlingRateInByte < -1:
            raise ValueError("publish rates must be >= -1 (-1: no limit)")
        return rate

    @property
    def limited(self) -> bool:
        return self.publishThrottlingRateInMsg > 0 or self.publishThrottlingRateInByte > 0


# The namespace limits one tenant sets so as not to starve the others (Pulsar's names).
LIMIT_FIELDS = ("max_producers_per_topic", "max_consumers_per_topic", "max_subscriptions_per_topic",
                "max_topics_per_namespace")


def check_limit(value: Any, what: str) -> int | None:
    """A count limit: a non-negative int (0: no limit), or None to fall back to none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0 (0: no limit), got {value!r}")
    return value


@dataclass(slots=True)
class NamespacePolicies:
    retention_policies: RetentionPolicies = field(default_factory=RetentionPolicies)
    autoTopicCreationOverride: AutoTopicCreation = field(default_factory=AutoTopicCreation)  # noqa: N815
    deduplicationEnabled: bool = False  # noqa: N815
    # Schema policies, under Pulsar's JSON names: how a topic's schema may change (a
    # compatibility strategy name; UNDEFINED means FULL), whether producers without a schema
    # are refused on a topic that has one, and whether producers may register new versions.
    schema_compatibility_strategy: str = "UNDEFINED"
    schema_validation_enforced: bool = False
    is_allow_auto_update_schema: bool = True
    compaction_threshold: int = 0  # bytes added since the last compaction that start one; 0: never
    message_ttl_in_seconds: int = 0  # unacknowledged messages older than this are acknowledged; 0: never
    # Pulsar's backlogQuotaMap: {"destination_storage" | "message_age": {"limitSize", "limitTime", "policy"}}.
    backlog_quota_map: dict[str, dict[str, Any]] = field(default_factory=dict)
    auth_policies: AuthPolicies = field(default_factory=AuthPolicies)
    max_producers_per_topic: int | None = None
    max_consumers_per_topic: int | None = None
    max_subscriptions_per_topic: int | None = None
    max_topics_per_namespace: int | None = None
    publishMaxMessageRate: PublishRate | None = None  # noqa: N815
    # Dispatch throttling (dispatch/rate.py): each topic as a whole, each subscription alone.
    # Pulsar keys these by cluster; one cluster here, so the rate itself.
    topicDispatchRate: DispatchRate | None = None  # noqa: N815
    subscriptionDispatchRate: DispatchRate | None = None  # noqa: N815
    # Durable subscriptions without a consumer for this long are deleted (0: never).
    subscription_expiration_time_minutes: int | float = 0
    inactive_topic_policies: InactiveTopicPolicies | None = None  # None: the broker's defaults
    # Clusters the namespace's persistent topics are replicated among (broker/replication);
    # empty: this cluster alone. Checked against the registered clusters when set over REST.
    replication_clusters: list[str] = field(default_factory=list)
    # E/Qw/Qa of the namespace's next ledgers (broker/persistence.py); None: the broker's flags.
    persistence: PersistencePolicies | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NamespacePolicies:
        policies = cls()
        if isinstance(data.get("retention_policies"), dict):
            policies.retention_policies = _build(RetentionPolicies, data["retention_policies"])
        if isinstance(data.get("autoTopicCreationOverride"), dict):
            policies.autoTopicCreationOverride = _build(AutoTopicCreation, data["autoTopicCreationOverride"])
        if "deduplicationEnabled" in data:
            policies.deduplicationEnabled = bool(data["deduplicationEnabled"])
        if data.get("schema_compatibility_strategy") is not None:
            policies.schema_compatibility_strategy = Strategy.parse(data["schema_compatibility_strategy"]).value
        if data.get("compaction_threshold") is not None:
            policies.compaction_threshold = _non_negative_int(data["compaction_threshold"], "compaction_threshold")
        if data.get("message_ttl_in_seconds") is not None:
            policies.message_ttl_in_seconds = _non_negative_int(data["message_ttl_in_seconds"], "message_ttl_in_seconds")
        if isinstance(data.get("backlog_quota_map"), dict):
            policies.backlog_quota_map = {
                kind: parse_backlog_quota(quota, kind) for kind, quota in data["backlog_quota_map"].items()
            }
        for flag in ("schema_validation_enforced", "is_allow_auto_update_schema"):
            if data.get(flag) is not None:
                if not isinstance(data[flag], bool):
                    raise ValueError(f"{flag} must be true or false")
                setattr(policies, flag, data[flag])
        if "auth_policies" in data:
            policies.auth_policies = AuthPolicies.from_json(data["auth_policies"])
        for name in LIMIT_FIELDS:
            setattr(policies, name, check_limit(data.get(name), name))
        if data.get("publishMaxMessageRate") is not None:
            policies.publishMaxMessageRate = PublishRate.from_json(data["publishMaxMessageRate"])
        for rate in ("topicDispatchRate", "subscriptionDispatchRate"):
            if data.get(rate) is not None:
                setattr(policies, rate, DispatchRate.from_json(data[rate]))
        if data.get("subscription_expiration_time_minutes") is not None:
            policies.subscription_expiration_time_minutes = check_expiration_minutes(
                data["subscription_expiration_time_minutes"])
        if data.get("inactive_topic_policies") is not None:
            policies.inactive_topic_policies = InactiveTopicPolicies.from_json(data["inactive_topic_policies"])
        if data.get("replication_clusters") is not None:
            policies.replication_clusters = check_cluster_list(data["replication_clusters"])
        if data.get("persistence") is not None:
            policies.persistence = PersistencePolicies.from_json(data["persistence"])
        return policies


BACKLOG_QUOTA_POLICIES = ("producer_request_hold", "producer_exception", "consumer_backlog_eviction")


BACKLOG_QUOTA_TYPES = ("destination_storage", "message_age")


def parse_backlog_quota(data: Any, kind: str = "destination_storage") -> dict[str, Any]:
    """A BacklogQuota as Pulsar's JSON has it, for its type: a destination_storage quota sets
    limitSize bytes, a message_age one limitTime seconds (the other stays -1), and what
    happens past the limit."""
    if kind not in BACKLOG_QUOTA_TYPES:
        raise ValueError(f"backlogQuotaType must be one of {', '.join(BACKLOG_QUOTA_TYPES)}, got {kind!r}")
    json_object(data, {"limitSize", "limitTime", "policy", "limit"}, "backlog quota")
    size = data.get("limitSize", data.get("limit", -1))
    if isinstance(size, bool) or not isinstance(size, int) or size < -1:
        raise ValueError("limitSize must be a number of bytes, or -1")
    limit_time = data.get("limitTime", -1)
    if isinstance(limit_time, bool) or not isinstance(limit_time, int) or limit_time < -1 or limit_time == 0:
        raise ValueError("limitTime must be a number of seconds >= 1, or -1")
    if kind == "destination_storage" and limit_time != -1:
        raise ValueError("a destination_storage quota limits the size: give limitTime -1, or use the "
                         "message_age type for a time limit")
    if kind == "message_age" and (limit_time == -1 or size != -1):
        raise ValueError("a message_age quota limits the age: give limitTime in seconds and limitSize -1")
    policy = data.get("policy", "producer_request_hold")
    if policy not in BACKLOG_QUOTA_POLICIES:
        raise ValueError(f"policy must be one of {', '.join(BACKLOG_QUOTA_POLICIES)}")
    return {"limitSize": size, "limitTime": limit_time, "policy": policy}


def check_cluster_list(value: Any) -> list[str]:
    """A list of cluster names (the syntax only; whether they exist is the caller's check)."""
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError("replication clusters must be a list of cluster names")
    return sorted({check_name_part("cluster", c) for c in value})


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any]) -> Any:
    """Build a policy dataclass from JSON, rejecting unknown fields and wrong types."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for {cls.__name__}")
    defaults = cls()
    for name, value in data.items():
        expected = type(getattr(defaults, name))
        if expected is int and isinstance(value, bool) or not isinstance(value, expected):
            raise ValueError(f"{cls.__name__}.{name} must be {expected.__name__}, got {value!r}")
    return cls(**data)


def parse_tenant_info(data: Any) -> TenantInfo:
    if data is None:
        return TenantInfo()
    if not isinstance(data, dict):
        raise ValueError("tenant info must be a JSON object")
    info = _build(TenantInfo, data)
    for role in info.adminRoles + info.allowedClusters:
        if not isinstance(role, str):
            raise ValueError("adminRoles and allowedClusters must be lists of strings")
    return info


def topic_policies_path(topic: TopicName) -> str:
    """Where a topic's own policies are stored (a partition's are its topic's)."""
    return f"{TOPIC_POLICIES}/{topic.tenant}/{topic.namespace}/{topic.domain}/{topic.local_name}"


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Resources:
    """Reads and writes tenants, namespaces, policies and partition counts. Owns no state
    itself: the metadata store is the single source of truth, so several brokers agree."""

    def __init__(self, store: MetadataStore, max_partitions: int = 0) -> None:
        self.store = store
        self.max_partitions = max_partitions  # maxNumPartitionsPerPartitionedTopic; 0: none

    async def bootstrap(self, cluster: str = "standalone") -> None:
        """Create the `public` tenant (allowed on this cluster) and `public/default`
        namespace on first start."""
        if not await self.store.exists(f"{TENANTS}/public"):
            await self.create_tenant("public", TenantInfo(allowedClusters=[cluster]))
        if not await self.store.exists(f"{POLICIES}/public/default"):
            await self.create_namespace(NamespaceName("public", "default"))

    # -- tenants ---------------------------------------------------------------------------

    async def list_tenants(self) -> list[str]:
        return await self.store.children(TENANTS)

    async def get_tenant(self, tenant: str) -> TenantInfo:
        found = await self.store.get(f"{TENANTS}/{check_name_part('tenant', tenant)}")
        if found is None:
            raise ResourceNotFoundError(f"tenant {tenant} does not exist")
        return TenantInfo(**json.loads(found[0]))

    async def create_tenant(self, tenant: str, info: TenantInfo) -> None:
        check_name_part("tenant", tenant)
        try:
            await self.store.put(f"{TENANTS}/{tenant}", _dump(asdict(info)), expected_version=-1)
        except NodeExistsError:
            raise ConflictError(f"tenant {tenant} already exists") from None

    async def update_tenant(self, tenant: str, info: TenantInfo) -> None:
        await self.get_tenant(tenant)
        await self.store.put(f"{TENANTS}/{tenant}", _dump(asdict(info)))

    async def delete_tenant(self, tenant: str) -> None:
        await self.get_tenant(tenant)
        if await self.store.children(f"{POLICIES}/{tenant}"):
            raise PreconditionFailedError(f"tenant {tenant} still has namespaces")
        await self.store.delete(f"{TENANTS}/{tenant}")
        await self.store.delete_recursive(f"{POLICIES}/{tenant}")

    # -- namespaces ------------------------------------------------------------------------

    async def list_namespaces(self, tenant: str) -> list[str]:
        await self.get_tenant(tenant)
        return [f"{tenant}/{ns}" for ns in await self.store.children(f"{POLICIES}/{tenant}")]

    async def namespace_exists(self, ns: NamespaceName) -> bool:
        return await self.store.exists(f"{POLICIES}/{ns}") is not None

    async def get_policies(self, ns: NamespaceName) -> NamespacePolicies:
        found = await self.store.get(f"{POLICIES}/{ns}")
        if found is None:
            raise ResourceNotFoundError(f"namespace {ns} does not exist")
        return NamespacePolicies.from_json(json.loads(found[0]))

    async def create_namespace(self, ns: NamespaceName, policies: NamespacePolicies | None = None) -> None:
        await self.get_tenant(ns.tenant)
        body = _dump((policies or NamespacePolicies()).to_json())
        try:
            await self.store.put(f"{POLICIES}/{ns}", body, expected_version=-1)
        except NodeExistsError:
            raise ConflictError(f"namespace {ns} already exists") from None

    async def update_policies(self, ns: NamespaceName, change: Any) -> NamespacePolicies:
        """Apply `change(policies)` with compare-and-set, retrying on concurrent updates."""
        for _ in range(10):
            found = await self.store.get(f"{POLICIES}/{ns}")
            if found is None:
                raise ResourceNotFoundError(f"namespace {ns} does not exist")
            policies = NamespacePolicies.from_json(json.loads(found[0]))
            change(policies)
            try:
                await self.store.put(f"{POLICIES}/{ns}", _dump(policies.to_json()), found[1].version)
                return policies
            except BadVersionError:
                continue
        raise BrokerError(f"namespace {ns} policies changed concurrently, try again")

    async def delete_namespace(self, ns: NamespaceName) -> None:
        if not await self.namespace_exists(ns):
            raise ResourceNotFoundError(f"namespace {ns} does not exist")
        if ns == NamespaceName("public", "default"):
            raise NotAllowedError("the public/default namespace cannot be deleted")
        await self.store.delete_recursive(f"{POLICIES}/{ns}")
        await self.store.delete_recursive(f"{PARTITIONED}/{ns}")
        await self.store.delete_recursive(f"{TOPIC_POLICIES}/{ns}")

    # -- partitioned topics ----------------------------------------------------------------

    @staticmethod
    def _partitioned_path(topic: TopicName) -> str:
        return f"{PARTITIONED}/{topic.tenant}/{topic.namespace}/{topic.domain}/{topic.local_name}"

    async def get_partitions(self, topic: TopicName) -> int:
        """Partition count of a partitioned topic, 0 if it is not partitioned."""
        found = await self.store.get(self._partitioned_path(topic))
        return int(json.loads(found[0])["partitions"]) if found else 0

    async def create_partitioned_topic(self, topic: TopicName, partitions: int) -> None:
        if partitions < 1:
            raise ValueError("a partitioned topic needs at least 1 partition")
        check_partition_count(partitions, self.max_partitions)
        try:
            await self.store.put(
                self._partitioned_path(topic), _dump({"partitions": partitions}), expected_version=-1
            )
        except NodeExistsError:
            raise ConflictError(f"partitioned topic {topic.partitioned_name} already exists") from None

    async def update_partitions(self, topic: TopicName, partitions: int) -> None:
        check_partition_count(partitions, self.max_partitions)
        current = await self.get_partitions(topic)
        if current == 0:
            raise ResourceNotFoundError(f"partitioned topic {topic.partitioned_name} does not exist")
        if partitions <= current:
            raise PreconditionFailedError(
                f"partitions can only grow: {topic.partitioned_name} has {current}, asked {partitions}"
            )
        await self.store.put(self._partitioned_path(topic), _dump({"partitions": partitions}))

    async def delete_partitioned_topic(self, topic: TopicName) -> None:
        try:
            await self.store.delete(self._partitioned_path(topic))
        except NotFoundError:
            raise ResourceNotFoundError(
                f"partitioned topic {topic.partitioned_name} does not exist"
            ) from None

    # -- topic policies (override the namespace's) ------------------------------------------

    @staticmethod
    def _topic_policies_path(topic: TopicName) -> str:
        return topic_policies_path(topic)

    async def get_topic_policy(self, topic: TopicName, name: str) -> Any:
        """One of the topic's own policies (a partition: its topic's); None if unset."""
        return (await self.get_topic_policies(topic)).get(name)

    async def get_topic_policies(self, topic: TopicName) -> dict[str, Any]:
        """All of the topic's own policies (a partition: its topic's), in one read."""
        found = await self.store.get(self._topic_policies_path(topic))
        return json.loads(found[0]) if found else {}

    async def set_topic_policy(self, topic: TopicName, name: str, value: Any) -> None:
        """Set (None: remove) one of the topic's own policies, keeping the others."""
        path = self._topic_policies_path(topic)
        for _ in range(10):
            found = await self.store.get(path)
            policies = json.loads(found[0]) if found else {}
            if value is None:
                policies.pop(name, None)
            else:
                policies[name] = value
            try:
                if not policies:
                    if found:
                        await self.store.delete(path, found[1].version)
                    return
                await self.store.put(path, _dump(policies), found[1].version if found else -1)
                return
            except (BadVersionError, NodeExistsError, NotFoundError):
                continue
        raise BrokerError(f"topic {topic} policies changed concurrently, try again")

    async def get_topic_deduplication(self, topic: TopicName) -> bool | None:
        value = await self.get_topic_policy(topic, TOPIC_DEDUPLICATION)
        return bool(value) if value is not None else None

    async def set_topic_deduplication(self, topic: TopicName, enabled: bool | None) -> None:
        await self.set_topic_policy(topic, TOPIC_DEDUPLICATION, enabled)

    async def list_partitioned_topics(self, ns: NamespaceName, domain: str = "persistent") -> list[str]:
        names = await self.store.children(f"{PARTITIONED}/{ns}/{domain}")
        return [f"{domain}://{ns}/{name}" for name in names]
