"""Appends the user-config value of "config-key" (default "!")."""
from pulsar import Function


class ConfigBasedAppendFunction(Function):
    def process(self, input, context):
        suffix = context.get_user_config_value("config-key")
        return input + (suffix if suffix is not None else "!")
