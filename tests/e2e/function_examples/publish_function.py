"""Publishes input + "!" to the topic named by user config "publish-topic"; returns nothing."""
from pulsar import Function


class PublishFunction(Function):
    def process(self, input, context):
        topic = context.get_user_config_value("publish-topic") or "publishtopic"
        context.publish(topic, input + "!")
