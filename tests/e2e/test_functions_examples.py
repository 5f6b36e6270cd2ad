"""Every official Python example of Pulsar Functions, deployed with `taureau functions create`
into a real standalone and driven through the official client."""

from __future__ import annotations

import io
import json
import zipfile

import pulsar
import pytest
from pulsar.schema import AvroSchema

from tests.e2e.function_examples.avro_schema_test_function import AvroTestObject
from tests.e2e.functions_helpers import (
    EXAMPLES,
    assert_nothing_more,
    create,
    receive_all,
    status,
    taureau,
    wait_for,
    wait_running,
)

STANDALONE = {"state": True, "env": {"username": "bob"}}


def _roundtrip(client, name: str, inputs: list[bytes], n_out: int | None = None, **send) -> list:
    """Subscribe to the output, publish the inputs, return the outputs."""
    out = client.subscribe(f"{name}-out", "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(f"{name}-in")
    for value in inputs:
        producer.send(value, **send)
    messages = receive_all(out, len(inputs) if n_out is None else n_out)
    assert_nothing_more(out, 300)
    return messages


def _deploy(standalone, name: str, py, classname: str, *flags: str) -> None:
    create(standalone, name, py, classname, "--inputs", f"{name}-in", "--output", f"{name}-out", *flags)
    wait_running(standalone, name)


@pytest.mark.parametrize("module,classname", [
    ("exclamation_function", "exclamation_function.ExclamationFunction"),
    ("exclamation", "exclamation.Exclamation"),
    ("native_exclamation_function", "native_exclamation_function"),
    ("pure_python_function_exclamation", "pure_python_function_exclamation"),
])
def test_exclamation_variants(standalone, client, module, classname):
    name = module.replace("_", "-")
    _deploy(standalone, name, EXAMPLES / f"{module}.py", classname)
    out = _roundtrip(client, name, [b"hello", b"world"])
    assert [m.data() for m in out] == [b"hello!", b"world!"]
    props = out[0].properties()
    assert props["__pfn_input_topic__"] == f"persistent://public/default/{name}-in"
    assert "__pfn_input_msg_id__" in props


def test_exclamation_zip_in_pulsars_layout(standalone, client, tmp_path):
    package = tmp_path / "exclamation.zip"
    with zipfile.ZipFile(package, "w") as z:
        z.write(EXAMPLES / "exclamation.py", "exclamation/src/exclamation.py")
    _deploy(standalone, "excl-zip", package, "exclamation.Exclamation")
    assert [m.data() for m in _roundtrip(client, "excl-zip", [b"zipped"])] == [b"zipped!"]


def test_config_based_append(standalone, client):
    _deploy(standalone, "append", EXAMPLES / "config_based_append_function.py",
            "config_based_append_function.ConfigBasedAppendFunction", "--user-config", '{"config-key": "?!"}')
    assert [m.data() for m in _roundtrip(client, "append", [b"what"])] == [b"what?!"]


def test_custom_object_serde(standalone, client):
    serde = "custom_object_function.CustomSerDe"
    _deploy(standalone, "custom", EXAMPLES / "custom_object_function.py",
            "custom_object_function.CustomObjectFunction",
            "--custom-serde-inputs", json.dumps({"custom-in": serde}), "--output-serde-classname", serde)
    assert [m.data() for m in _roundtrip(client, "custom", [b"1,2"])] == [b"101,202"]


def test_logging_function_logs_to_the_log_topic(standalone, client):
    logs = client.subscribe("logging-logs", "check", initial_position=pulsar.InitialPosition.Earliest)
    _deploy(standalone, "logging", EXAMPLES / "logging_function.py", "logging_function.LoggingFunction",
            "--log-topic", "logging-logs")
    assert [m.data() for m in _roundtrip(client, "logging", [b"x"])] == [b"x!"]
    line = logs.receive(10_000).data().decode()
    assert line.endswith("x-log") and "INFO" in line


def test_logfunction_logs_and_print_land_in_the_log_topic(standalone, client):
    logs = client.subscribe("logfn-logs", "check", initial_position=pulsar.InitialPosition.Earliest)
    _deploy(standalone, "logfn", EXAMPLES / "logfunction.py", "logfunction.LogFunction", "--log-topic", "logfn-logs")
    assert [m.data() for m in _roundtrip(client, "logfn", [b"y"])] == [b"y!"]
    lines = sorted(logs.receive(10_000).data().decode() for _ in range(2))
    assert lines[0].endswith("got y")
    assert lines[1] == "printed y"


@pytest.mark.parametrize("module,cls", [
    ("publish_function", "PublishFunction"),
    ("publish_function_with_message_conf", "PublishFunctionWithMessageConf"),
    ("typed_message_builder_publish", "TypedMessageBuilderPublish"),
])
def test_publish_through_context(standalone, client, module, cls):
    name = module.replace("_", "-")
    target = f"{name}-published"
    published = client.subscribe(target, "check", initial_position=pulsar.InitialPosition.Earliest)
    _deploy(standalone, name, EXAMPLES / f"{module}.py", f"{module}.{cls}",
            "--user-config", json.dumps({"publish-topic": target}))
    out = client.subscribe(f"{name}-out", "check", initial_position=pulsar.InitialPosition.Earliest)
    client.create_producer(f"{name}-in").send(b"pub", properties={"origin": "test"})
    message = published.receive(10_000)
    assert message.data() == b"pub!"
    assert_nothing_more(out)  # the function returns nothing
    if module != "publish_function":
        assert message.properties()["input_topic"] == f"persistent://public/default/{name}-in"
        assert message.properties()["origin"] == "test"
        assert message.partition_key() in ("key-pub", "pub")
    if module == "publish_function_with_message_conf":
        assert message.event_timestamp() == 1_600_000_000_000


def test_secrets_from_the_environment(standalone, client):
    _deploy(standalone, "secrets", EXAMPLES / "secrets_function.py", "secrets_function.SecretsFunction",
            "--secrets", '{"username": "username"}')
    assert [m.data() for m in _roundtrip(client, "secrets", [b"anything"])] == [b"bob!"]


def test_wordcount_counters_and_querystate(standalone, client):
    _deploy(standalone, "wordcount", EXAMPLES / "wordcount_function.py", "wordcount_function.WordCountFunction")
    out = _roundtrip(client, "wordcount", [b"the cat", b"the dog the end"])
    assert [m.data() for m in out] == [b"the cat!", b"the dog the end!"]
    code, text, err = taureau(standalone, "querystate", "--name", "wordcount", "--key", "the")
    assert code == 0, err
    assert json.loads(text) == {"key": "the", "numberValue": 3, "version": 2}


def test_void_function_acks_without_output(standalone, client):
    _deploy(standalone, "void", EXAMPLES / "void_function.py", "void_function.VoidFunction")
    out = client.subscribe("void-out", "check", initial_position=pulsar.InitialPosition.Earliest)
    client.create_producer("void-in").send(b"nothing")
    assert_nothing_more(out, 1000)
    wait_for(lambda: status(standalone, "void")["instances"][0]["status"]["numSuccessfullyProcessed"] == 1,
             what="the void function to process its input")
    stats = json.loads(taureau(standalone, "stats", "--name", "void")[1])
    assert stats["processedSuccessfullyTotal"] == 1 and stats["userExceptionsTotal"] == 0


def test_user_exception_shows_in_status_with_its_traceback(standalone, client):
    _deploy(standalone, "raiser", EXAMPLES / "user_exception.py", "user_exception.UserException")
    client.create_producer("raiser-in").send(b"boom")

    def failed():
        instance = status(standalone, "raiser")["instances"][0]["status"]
        return instance["numUserExceptions"] >= 1 and instance

    instance = wait_for(failed, what="the exception to show in status")
    latest = instance["latestUserExceptions"][-1]
    assert latest["exceptionString"] == "Exception: this will not work"
    assert 'raise Exception("this will not work")' in latest["stackTrace"]
    assert instance["running"]  # a raising function keeps running


def test_thumbnailer(standalone, client):
    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 30, 30)).save(picture, format="PNG")
    _deploy(standalone, "thumbs", EXAMPLES / "thumbnailer.py", "thumbnailer.Thumbnailer")
    out = _roundtrip(client, "thumbs", [picture.getvalue()])
    thumb = Image.open(io.BytesIO(out[0].data()))
    assert thumb.size == (64, 48) and thumb.format == "PNG"


def test_avro_schema_function(standalone, client):
    record = "avro_schema_test_function.AvroTestObject"
    _deploy(standalone, "avro", EXAMPLES / "avro_schema_test_function.py",
            "avro_schema_test_function.AvroSchemaTestFunction",
            "--input-specs", json.dumps({"avro-in": {"schemaType": "AVRO", "serdeClassName": record}}),
            "--schema-type", "avro", "--output-serde-classname", record)
    schema = AvroSchema(AvroTestObject)
    out = _roundtrip(client, "avro", [schema.encode(AvroTestObject(baseValue=5))])
    assert schema.decode(out[0].data()).baseValue == 15
