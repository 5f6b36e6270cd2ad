"""Always raises."""
from pulsar import Function


class UserException(Function):
    def process(self, input, context):
        raise Exception("this will not work")
