import pytest

from taureau.common.errors import InvalidTopicNameError
from taureau.common.names import NamespaceName, TopicName
from taureau.common.sizes import parse_size


@pytest.mark.parametrize(
    "text,expected",
    [
        ("my-topic", "persistent://public/default/my-topic"),
        ("t/ns/x", "persistent://t/ns/x"),
        ("persistent://t/ns/x-partition-3", "persistent://t/ns/x-partition-3"),
        ("non-persistent://t/ns/x", "non-persistent://t/ns/x"),
    ],
)
def test_topic_names_expand_like_the_client(text, expected):
    assert str(TopicName.parse(text)) == expected


def test_partition_suffix_is_split():
    name = TopicName.parse("persistent://t/ns/orders-partition-12")
    assert name.partition == 12
    assert name.partitioned_name == "persistent://t/ns/orders"
    assert name.storage_name == "t/ns/persistent/orders-partition-12"
    assert name.partition_name(2).local == "orders-partition-2"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a/b",
        "persistent://t/ns",
        "kafka://t/ns/x",
        "persistent://t/n s/x",
        "t/ns/x y",
        "a/b/c/d",
        "t/ns/.",
        "t/ns/..",
        "../ns/x",
        "t/./x",
        "t/ns/x\n",
        "t\n/ns/x",
        "t/ns/a\x00b",
    ],
)
def test_invalid_topic_names_are_rejected(bad):
    with pytest.raises(InvalidTopicNameError):
        TopicName.parse(bad)


def test_namespace_names():
    assert str(NamespaceName.parse("public/default")) == "public/default"
    with pytest.raises(InvalidTopicNameError):
        NamespaceName.parse("public")


@pytest.mark.parametrize("text,n", [("4096", 4096), ("32MiB", 32 * 2**20), ("1g", 10**9), (7, 7)])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["", "12 parsecs", "-1", "MiB"])
def test_parse_size_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_size(bad)
