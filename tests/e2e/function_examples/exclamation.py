"""The same as exclamation_function, with the class named Exclamation (packaged as a zip too)."""
from pulsar import Function


class Exclamation(Function):
    def process(self, input, context):
        return input + "!"
