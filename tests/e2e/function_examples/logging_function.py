"""Logs the input with a "-log" suffix through the context's logger; returns input + "!"."""
from pulsar import Function


class LoggingFunction(Function):
    def process(self, input, context):
        context.get_logger().info(input + "-log")
        return input + "!"
