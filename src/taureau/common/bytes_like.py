"""BYTES_LIKE: the types a stored value may have, as a tuple for isinstance.

`isinstance(x, bytes | bytearray | memoryview)` builds a union object on every call (~0.4 us,
eight times a plain tuple); the publish path checks each entry three or four times.
"""

BYTES_LIKE = (bytes, bytearray, memoryview)

Bytes = bytes | bytearray | memoryview
# A value in pieces to be written one after another (pwritev): a 16-byte header is not
# prepended to a 1 MiB payload by copying the payload.
Parts = tuple[Bytes, ...]
