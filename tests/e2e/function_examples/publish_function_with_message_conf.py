"""Publishes with a message_conf: properties (the input topic and the input's own), a key
and an event time."""
from pulsar import Function


class PublishFunctionWithMessageConf(Function):
    def process(self, input, context):
        topic = context.get_user_config_value("publish-topic") or "publishtopic"
        properties = {"input_topic": context.get_current_message_topic_name()}
        properties.update(context.get_message_properties())
        context.publish(topic, input + "!", message_conf={
            "properties": properties,
            "partition_key": "key-" + input,
            "event_timestamp": 1_600_000_000_000,
        })
