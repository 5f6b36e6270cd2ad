"""How large a frame each kind of peer may send a state server: bounded by block size and op."""

from __future__ import annotations

from taureau.state.codec import EVENT, OK, REQUEST, FrameLimits, Op

# Why these numbers:
# - A control request is one JSON object naming a path or two (namespace.MAX_PATH is 1024
#   characters; \uXXXX escapes make that at most 12 KiB), so 64 KiB is generous. The client
#   cuts a RENEW of many paths into requests under CONTROL_MAX.
# - A data request carries at most what one block can hold: a block accepts an entry only if
#   key + value + 48 bytes fit, and the client cuts batches (MULTI_*) to fit one block, so
#   block size plus FRAME_SLACK (header, alloc id, offset, field lengths) bounds every good one.
# - A controller command to its memory server is JSON too, but WATCH lists every block of a
#   structure (tens of thousands at most), hence COMMAND_MAX; IMPORT carries a block.
# What one connection can make a server hold is then: one frame being received, the frames of
# one read waiting to be served, and the replies rpc.Peer lets queue before it stops reading.

CONTROL_MAX = 64 << 10
COMMAND_MAX = 16 << 20
FRAME_SLACK = 1 << 10
MAX_BLOCK_SIZE = 1 << 30  # a memory server offering larger blocks is refused at registration

_DATA_OPS = range(1, Op.NEW_BLOCK)  # kinds may claim numbers here (codec.data_op)
_COMMANDS = [op for op in Op if Op.NEW_BLOCK <= op < Op.HELLO]


def data_max(block_size: int) -> int:
    """The longest data frame a block of `block_size` bytes gives a reason to send."""
    return block_size + FRAME_SLACK


def controller_limits() -> FrameLimits:
    """Anyone connected to the controller, until it registers as a memory server: control
    requests only (the controller sends them no requests, so any reply is small garbage)."""
    return FrameLimits(CONTROL_MAX)


def registered_server_limits(block_size: int) -> FrameLimits:
    """A registered memory server's link to the controller: EXPORT replies and NOTIFY events
    (a key or an item) carry block data; a DESCRIBE reply lists up to every block it has;
    everything else is JSON (a REPORT is cut to fit CONTROL_MAX)."""
    n = data_max(block_size)
    return FrameLimits(
        CONTROL_MAX, {(OK, Op.EXPORT): n, (EVENT, Op.NOTIFY): n, (OK, Op.DESCRIBE): COMMAND_MAX}
    )


def memory_server_limits(block_size: int) -> FrameLimits:
    """Clients and peer memory servers connected to a memory server: data requests and IMPORT
    (a split or merge moving part of a block) carry at most a block."""
    n = data_max(block_size)
    over: dict[tuple[int, int], int] = {(REQUEST, op): n for op in _DATA_OPS}
    for op in (Op.IMPORT, Op.INSTALL, Op.CHAIN_WRITE):  # from peers: a block's worth at most
        over[(REQUEST, op)] = n
    return FrameLimits(CONTROL_MAX, over)


def controller_link_limits(block_size: int) -> FrameLimits:
    """A memory server's own link to its controller: block commands, IMPORT of loaded data."""
    over: dict[tuple[int, int], int] = {(REQUEST, op): COMMAND_MAX for op in _COMMANDS}
    over[(REQUEST, Op.IMPORT)] = max(COMMAND_MAX, data_max(block_size))
    return FrameLimits(CONTROL_MAX, over)
