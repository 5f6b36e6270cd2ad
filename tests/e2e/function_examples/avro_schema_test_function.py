"""An Avro Record in, the same record with baseValue + 10 out."""
from pulsar import Function
from pulsar.schema import Integer, Record


class AvroTestObject(Record):
    baseValue = Integer()


class AvroSchemaTestFunction(Function):
    def process(self, input, context):
        input.baseValue = input.baseValue + 10
        return input
