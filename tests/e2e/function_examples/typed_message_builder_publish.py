"""The message_conf publish pattern again, under the name of Pulsar's typed-builder example."""
from pulsar import Function


class TypedMessageBuilderPublish(Function):
    def process(self, input, context):
        topic = context.get_user_config_value("publish-topic") or "publishtopic"
        properties = dict(context.get_message_properties())
        properties["input_topic"] = context.get_current_message_topic_name()
        context.publish(topic, input + "!", message_conf={"properties": properties, "partition_key": input})
