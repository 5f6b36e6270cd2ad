"""Logs the input, and prints it (print() output goes to the log topic too)."""
from pulsar import Function


class LogFunction(Function):
    def process(self, input, context):
        context.get_logger().info("got %s", input)
        print(f"printed {input}")
        return input + "!"
