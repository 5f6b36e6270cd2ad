"""Returns the secret "username" + "!"."""
from pulsar import Function


class SecretsFunction(Function):
    def process(self, input, context):
        return context.get_secret("username") + "!"
