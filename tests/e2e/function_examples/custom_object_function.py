"""A custom SerDe: "a,b" text <-> an object with two numbers; the function adds to both."""
from pulsar import Function, SerDe


class CustomObject:
    def __init__(self, a=0, b=0):
        self.a = a
        self.b = b


class CustomSerDe(SerDe):
    def serialize(self, obj):
        return f"{obj.a},{obj.b}".encode()

    def deserialize(self, input_bytes):
        a, b = input_bytes.decode().split(",")
        return CustomObject(int(a), int(b))


class CustomObjectFunction(Function):
    def process(self, input, context):
        return CustomObject(input.a + 100, input.b + 200)
