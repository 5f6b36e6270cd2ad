"""Counts words in durable counters; returns the input + "!"."""
from pulsar import Function


class WordCountFunction(Function):
    def process(self, item, context):
        for word in item.split():
            context.incr_counter(word, 1)
            context.get_logger().info("%s: %d", word, context.get_counter(word))
        return item + "!"
