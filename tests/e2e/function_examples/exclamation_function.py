"""A Function subclass that adds an exclamation mark (Pulsar's exclamation_function example)."""
from pulsar import Function


class ExclamationFunction(Function):
    def process(self, input, context):
        return input + "!"
