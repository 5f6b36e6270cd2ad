"""Serialize any BaseCommand into a frame, with or without a payload section."""

from __future__ import annotations

import struct

from google.protobuf.message import EncodeError

from taureau.protocol import pulsar_api_pb2 as pb
from taureau.protocol.errors import ProtocolError

# Frame layout written here (see framing.py for the full grammar):
#   simple frame  := total:u32 cmd_size:u32 BaseCommand          total = 4 + cmd_size
#   payload frame := total:u32 cmd_size:u32 BaseCommand payload  total = 4 + cmd_size + len(payload)

_SIZES = struct.Struct(">II")


def _serialize(command: pb.BaseCommand) -> bytes:
    try:
        return command.SerializeToString()
    except EncodeError as exc:
        # A builder bug, not peer input: surface it loudly with the missing field names.
        raise ProtocolError(f"cannot encode {pb.BaseCommand.Type.Name(command.type)}: {exc}") from None


def encode_command(command: pb.BaseCommand) -> bytes:
    """Frame a simple command. Raises ProtocolError if a required field is unset."""
    body = _serialize(command)
    return _SIZES.pack(4 + len(body), len(body)) + body


def encode_payload_command(command: pb.BaseCommand, payload: bytes) -> bytes:
    """Frame a SEND or MESSAGE command followed by its payload section, verbatim."""
    body = _serialize(command)
    return _SIZES.pack(4 + len(body) + len(payload), len(body)) + body + payload
