"""Returns nothing: no output, the input is still acknowledged."""
from pulsar import Function


class VoidFunction(Function):
    def process(self, input, context):
        return None
