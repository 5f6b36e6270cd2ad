"""A plain module-level process(input): no class, no context."""


def process(input):
    return input + "!"
