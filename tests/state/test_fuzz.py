"""Structure-aware fuzzing of the state wire protocol against a real controller and memory
server (in a child process, so its memory is measured alone).

Inputs follow the frame grammar of codec.py: control ops with JSON arguments shaped like the
real ones (paths, kinds, block counts, huge integers, wrong types), data ops aimed at real
blocks (keys, values up to a block, offsets), block commands, and broken framing (bad kinds,
lengths that lie, oversized headers, garbage). The fuzzer owns /fuzz; it never names the
well-behaved client's blocks (the protocol lets any client write any block it names, so that
would test nothing). Pass condition, not only "no crash":
- every request of a well-formed stream is answered, never with an internal error, and every
  error carries a known code; a broken stream only closes its own connection, promptly;
- the servers keep serving, and the data a well-behaved client wrote before and during the
  fuzzing reads back intact;
- the server process's RSS stays under a bound.
TAUREAU_STATE_FUZZ_EXAMPLES sets the number of inputs (default: a CI-sized run, ~20 s).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taureau.common import errors
from taureau.state import StateClient, codec
from taureau.state.codec import ERROR, EVENT, OK, REDO, REQUEST, STALE, FrameDecoder, Op, pack_u64
from taureau.state.kinds.counter import INCR, MULTI_INCR, pack_i64
from taureau.state.kinds.sorted_map import RANGE
from taureau.state.limits import controller_limits, memory_server_limits
from taureau.state.notify import NOTIFY_OPS
from tests.state.helpers import ServerProcess, raw_socket

EXAMPLES = int(os.environ.get("TAUREAU_STATE_FUZZ_EXAMPLES", "1500"))
BLOCK = 64 << 10
NUM_BLOCKS = 128
RSS_GROWTH_MB = 32  # pool 8 MiB, good data ~2 MB, one connection at a time (~1 MiB each)
GOOD_OPS = 3000  # the well-behaved client's writes during the fuzzing, at most
REPLY_TIMEOUT = 10.0  # no answer (or no close of a broken stream) by then: the server hung
# the fuzzer's own structures, under /fuzz: one of each kind
BASE = {"ht": "hash_table", "q": "queue", "f": "file", "c": "counter", "sm": "sorted_map"}
KNOWN_CODES = {cls.code for cls in codec._ERROR_CLASSES.values()} | {STALE, REDO}


# -- what the fuzzer sends ------------------------------------------------------------------------


def _weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of the strategies, picked in proportion to its weight (st.one_of picks evenly)."""
    table = [s for w, s in choices for _ in range(w)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_ints = _weighted(
    (4, st.integers(0, 8)),
    (1, st.integers(-2, 300_000)),
    (1, st.sampled_from([4096, 4097, 2**31, 2**40, 2**63, 2**64, -(2**63)])),
    (1, st.integers()),
)
_kinds = _weighted((6, st.sampled_from(sorted(BASE.values()))), (1, st.just("dir")), (1, _junk))
_fuzz_paths = _weighted(
    (3, st.sampled_from(["/fuzz/" + n for n in sorted(BASE)])),  # the fuzzer's structures
    (3, st.sampled_from(["/fuzz/n", "/fuzz/m", "/fuzz/d/n", "/fuzz/d"])),  # new ones
    (1, st.just("/fuzz")),
    (1, st.text(max_size=12).map(lambda t: "/fuzz/" + t)),  # any characters: '/', '..', NUL, emoji...
)
_bad_paths = st.sampled_from(
    ["", "fuzz", "/fuzz/", "//", "/fuzz//x", "/fuzz/..", "/fuzz/./x", "/fuzz/\x00", "/fuzz/" + "a" * 1100]
)
_paths = _weighted((8, _fuzz_paths), (1, _bad_paths), (1, _junk))  # for ops that change what they name
_any_paths = _weighted((6, _paths), (1, st.sampled_from(["/", "/good", "/good/ht"])))  # for read-only ops
_backings = _weighted(
    (3, st.none()),
    (4, st.sampled_from(["local://fuzz/d1", "local://fuzz/d2", "fuzz/d3"])),
    (1, st.text(max_size=8).map(lambda t: "local://fuzz/" + t)),
    (1, st.sampled_from(["local://../x", "/abs", "s3://b/k", "local://", ""])),
    (1, _junk),
)
_flags = _weighted((6, st.booleans()), (1, _junk))
_owner_alloc = st.integers(0, 300)  # may name anyone's block: only its memory server may ask


def _args(**keys: st.SearchStrategy) -> st.SearchStrategy[dict]:
    """Mostly every argument present (so the op does real work), else any subset."""
    return _weighted((4, st.fixed_dictionaries(keys)), (1, st.fixed_dictionaries({}, optional=keys)))


CONTROL_ARGS: dict[int, st.SearchStrategy[dict]] = {
    Op.HELLO: _args(),
    Op.CREATE: _args(
        path=_paths,
        kind=_kinds,
        num_blocks=_ints,
        exist_ok=_flags,
        backing=_backings,
        pinned=_flags,
        mapped=_flags,
    ),
    Op.OPEN: _args(path=_any_paths, kind=_kinds),
    Op.EXISTS_PATH: _args(path=_any_paths),
    Op.REMOVE_PATH: _args(path=_paths, recursive=_flags),
    Op.RENAME: _args(src=_paths, dst=_paths),
    Op.LIST: _args(path=_any_paths),
    Op.STATUS: _args(path=_any_paths),
    Op.BLOCK_MAP: _args(path=_any_paths),
    Op.RENEW: _args(paths=st.one_of(st.lists(_any_paths, max_size=4), _junk)),
    Op.CLOSE: _args(path=_any_paths),
    Op.DUMP: _args(path=_any_paths, dest=_backings),
    Op.LOAD: _args(path=_paths, src=_backings),
    Op.STATS: _args(),
    Op.SUBSCRIBE: _args(
        path=_any_paths,
        ops=st.one_of(st.lists(st.sampled_from([*sorted(NOTIFY_OPS), "x"]), max_size=3), _junk),
    ),
    Op.GROW: _args(path=_paths, until=_ints),
    Op.QUOTA: _args(path=_paths, blocks=st.one_of(_ints, st.none(), _junk)),
    # memory server -> controller: must be refused from anyone else, whatever block they name
    Op.SPLIT_REQUEST: _args(alloc=_owner_alloc, at=_ints),
    Op.MERGE_REQUEST: _args(alloc=_owner_alloc, used=_ints),
    Op.APPEND_REQUEST: _args(alloc=_owner_alloc),
    Op.DRAINED: _args(alloc=_owner_alloc),
    # registration: refused until the connection proves the internal secret, which the
    # fuzzer does not hold (a guessed proof is refused too)
    Op.REGISTER: _args(address=st.sampled_from(["127.0.0.1:1", "x"]), block_size=_ints, num_blocks=_ints),
    Op.CHALLENGE: _args(),
    Op.PROVE: _args(proof=st.one_of(st.text(max_size=70), _junk)),
}

_keys = _weighted((4, st.sampled_from([b"a", b"b", b"k1", b"k2", b""])), (1, st.binary(max_size=16)))
_values = _weighted(
    (4, st.binary(max_size=64)),
    (2, st.integers(0, BLOCK + 64).map(lambda n: b"v" * n)),  # up to and past what a block holds
    (1, st.sampled_from([BLOCK - 49, BLOCK - 48, BLOCK // 2 + 1]).map(lambda n: b"w" * n)),
)
_u64 = _weighted(
    (6, st.integers(0, 4 * BLOCK).map(pack_u64)),
    (1, st.sampled_from([2**63, 2**64 - 1]).map(pack_u64)),
    (1, st.binary(max_size=9)),
)
_deltas = _weighted(
    (6, st.integers(-(2**63), 2**63 - 1).map(pack_i64)),
    (1, st.binary(max_size=9)),  # not a 64-bit value
)
_positions = _weighted(  # a sorted-map block's range bounds, mostly the whole space
    (4, st.sampled_from([b"\x00", (1 << 128).to_bytes(17, "big")])),
    (1, st.binary(max_size=18)),
)
DATA_FIELDS: dict[int, st.SearchStrategy[list[bytes]]] = {
    Op.GET: st.tuples(_keys).map(list),
    Op.PUT: st.tuples(_keys, _values).map(list),
    Op.UPSERT: st.tuples(_keys, _values).map(list),
    Op.UPDATE: st.tuples(_keys, _values).map(list),
    Op.REMOVE: st.tuples(_keys).map(list),
    Op.EXISTS: st.tuples(_keys).map(list),
    Op.MULTI_GET: st.lists(_keys, max_size=60),
    Op.MULTI_PUT: st.lists(st.tuples(_keys, _values), max_size=8).map(lambda kv: [x for p in kv for x in p]),
    Op.COUNT: st.just([]),
    Op.ENQUEUE: st.tuples(_values).map(list),
    Op.DEQUEUE: st.just([]),
    Op.QUEUE_LENGTH: st.just([]),
    Op.MULTI_ENQUEUE: st.lists(_values, max_size=8),
    Op.WRITE: st.tuples(_u64, _values).map(list),
    Op.READ: st.tuples(_u64, _u64).map(list),
    Op.FILE_SIZE: st.just([]),
    INCR: st.tuples(_keys, _deltas).map(list),
    MULTI_INCR: st.lists(st.tuples(_keys, _deltas), max_size=8).map(lambda kd: [x for p in kd for x in p]),
    RANGE: st.tuples(_positions, _positions, _keys, _keys, st.binary(min_size=1, max_size=2), _u64).map(list),
    # from peers in a replica chain; the fuzzer's blocks are in none: refused, never applied
    Op.CHAIN_WRITE: st.tuples(st.binary(max_size=2), _keys, _values).map(list),
    Op.INSTALL: st.tuples(st.binary(max_size=40), _keys, _values).map(list),
}
_KIND_OF = {op: "queue" for op in (Op.ENQUEUE, Op.DEQUEUE, Op.QUEUE_LENGTH, Op.MULTI_ENQUEUE)}
_KIND_OF.update({op: "file" for op in (Op.WRITE, Op.READ, Op.FILE_SIZE)})
_KIND_OF.update({INCR: "counter", MULTI_INCR: "counter", RANGE: "sorted_map"})
# Block commands name any block, the well-behaved client's included: a memory server must
# take them from its controller only.
_any_alloc = st.integers(0, 300)
_addr = st.sampled_from(["127.0.0.1:1", "nohost", ""])
COMMAND_FIELDS: dict[int, st.SearchStrategy[list[bytes]]] = {
    op: args.map(codec.pack_json)
    for op, args in {
        Op.NEW_BLOCK: _args(
            alloc=_any_alloc, struct=_ints, kind=_kinds, lo=_ints, hi=_ints, importing=_flags, watch=_junk
        ),
        Op.FREE_BLOCK: _args(alloc=_any_alloc),
        Op.SPLIT: _args(alloc=_any_alloc, at=_ints, target=_addr, target_alloc=_any_alloc),
        Op.MERGE_OUT: _args(alloc=_any_alloc, target=_addr, target_alloc=_any_alloc),
        Op.EXPECT: _args(alloc=_any_alloc, lo=_ints, hi=_ints, bytes=_ints),
        Op.LINK_NEXT: _args(alloc=_any_alloc),
        Op.CHAIN: _args(alloc=_any_alloc, next=_junk, head=_flags, tail=_flags, frozen=_flags),
        Op.SYNC: _args(alloc=_any_alloc, to=_junk),
        Op.WATCH: _args(
            allocs=st.lists(_any_alloc, max_size=4), ops=st.lists(st.sampled_from(sorted(NOTIFY_OPS)))
        ),
    }.items()
}
COMMAND_FIELDS[Op.EXPORT] = st.tuples(_any_alloc.map(pack_u64)).map(list)
COMMAND_FIELDS[Op.IMPORT] = st.tuples(_any_alloc.map(pack_u64), _keys, _values).map(list)


@dataclass
class Frame:
    data: bytes
    kind: int
    req_id: int
    clean: bool  # well framed and within the receiver's limit: it must be answered


@dataclass
class FuzzState:
    server: ServerProcess
    harness: StateClient  # keeps /fuzz in shape between inputs
    allocs: dict[str, list[bytes]] = field(default_factory=dict)  # the fuzzer's own blocks, by kind
    max_rss: float = 0.0


def _encode(kind: int, op: int, req_id: int, fields: list[bytes], data) -> tuple[bytes, bool]:
    """The frame, possibly broken at the framing level; and whether it is still well framed."""
    good = codec.encode(kind, op, req_id, fields)
    how = data.draw(st.sampled_from(["ok"] * 40 + ["kind", "short", "long", "oversized", "field", "garbage"]))
    if how == "ok":
        return good, True
    if how == "kind":
        return good[:4] + bytes([data.draw(st.integers(4, 255))]) + good[5:], False
    if how in ("short", "long"):
        (n,) = struct.unpack_from(">I", good)
        delta = data.draw(st.integers(1, 64))
        return struct.pack(">I", max(0, n - delta) if how == "short" else n + delta) + good[4:], False
    if how == "oversized":  # a header asking for more than any limit; a little of the body
        return struct.pack(">IBBI", data.draw(st.integers(1 << 20, 2**32 - 1)), kind, op, req_id) + good[
            10:64
        ], False
    if how == "field" and fields:  # a field length that runs past the frame
        return good[:10] + struct.pack(">I", len(good)) + good[14:], False
    return data.draw(st.binary(min_size=1, max_size=64)), False


def _draw_frame(data, target: str, req_id: int, allocs: dict[str, list[bytes]]) -> Frame:
    kind = data.draw(st.sampled_from([REQUEST] * 15 + [EVENT, OK, ERROR]))
    if target == "controller":
        op = data.draw(_weighted((9, st.sampled_from(sorted(CONTROL_ARGS))), (1, st.integers(0, 255))))
        args = CONTROL_ARGS.get(op)
        style = data.draw(st.sampled_from(["json"] * 12 + ["not-object", "not-json", "fields"]))
        if style == "json" and args is not None:
            fields = codec.pack_json(data.draw(args))
        elif style == "not-object":
            fields = codec.pack_json(data.draw(_junk))
        elif style == "not-json":
            fields = [data.draw(st.binary(max_size=32))]
        else:
            fields = data.draw(st.lists(st.binary(max_size=16), max_size=3))
        limits = controller_limits()
    else:
        op = data.draw(
            _weighted(
                (16, st.sampled_from(sorted(DATA_FIELDS))),
                (3, st.sampled_from(sorted(COMMAND_FIELDS))),
                (1, st.integers(0, 255)),
            )
        )
        # Blocks come and go (splits, removes): draw positions, not blocks, so that a replayed
        # input draws the same way whatever the current block lists are.
        own = allocs[_KIND_OF.get(op, "hash_table")]  # mostly a block the op applies to
        every = [a for blocks in allocs.values() for a in blocks]
        alloc = data.draw(
            _weighted(
                (12, st.integers(0, 1 << 16).map(lambda i: own[i % len(own)])),
                (3, st.integers(0, 1 << 16).map(lambda i: every[i % len(every)])),
                (1, st.integers(2**40, 2**64 - 1).map(pack_u64)),  # no such block
                (1, st.binary(max_size=9)),
            )
        )
        if op in DATA_FIELDS:
            fields = [alloc, *data.draw(DATA_FIELDS[op])]
        elif op in COMMAND_FIELDS:
            fields = data.draw(COMMAND_FIELDS[op])
        else:
            fields = [alloc]
        if fields and data.draw(st.integers(0, 19)) == 0:
            fields = fields[:-1]  # one field too few
        limits = memory_server_limits(BLOCK)
    frame, well_framed = _encode(kind, op, req_id, fields, data)
    clean = well_framed and len(frame) - 4 <= limits.limit(kind, op)
    return Frame(frame, kind, req_id, clean)


# -- what the fuzzer checks -----------------------------------------------------------------------


def _check_reply(fr: codec.Frame) -> None:
    if fr.kind != ERROR:
        return
    code = codec.error_code(fr.fields)
    message = fr.fields[1].decode(errors="replace") if len(fr.fields) > 1 else ""
    assert code in KNOWN_CODES, f"unknown error code {code}: {message}"
    assert not message.startswith("internal error"), f"a handler failed on its input: {message}"


def _exchange(address: str, frames: list[Frame]) -> None:
    """Send the frames; a clean stream must get an answer to each request, a broken one must be
    closed (after any answers, all well formed)."""
    s = raw_socket(address, timeout=REPLY_TIMEOUT)
    clean = all(f.clean for f in frames)
    want = {f.req_id for f in frames if f.kind == REQUEST} if clean else set()
    try:
        try:
            s.sendall(b"".join(f.data for f in frames))
            if not clean:
                s.shutdown(socket.SHUT_WR)  # a frame whose length lies would wait for more bytes
        except OSError:
            if clean:
                raise  # a well-formed stream must not be cut off
            # a broken one may be refused and closed before it is all sent
        d = FrameDecoder()
        while want or not clean:
            try:
                data = s.recv(1 << 20)
            except TimeoutError:
                raise AssertionError(
                    f"no {'reply' if clean else 'close'} in {REPLY_TIMEOUT}s (waiting for {sorted(want)})"
                ) from None
            except ConnectionResetError:
                data = b""
            if not data:
                assert not want, f"connection closed before requests {sorted(want)} were answered"
                return
            for fr in d.feed(data):
                if fr.kind == EVENT:
                    continue  # a SUBSCRIBE in this input: notifications about /fuzz or /good
                assert fr.kind in (OK, ERROR), f"server sent frame kind {fr.kind}"
                _check_reply(fr)
                want.discard(fr.req_id)
    finally:
        s.close()


def _reset_fuzz(st_: FuzzState) -> None:
    """Put /fuzz back to its three structures (the fuzzer removes, renames and grows them)."""
    h = st_.harness
    for path in h.stats()["quotas"]:  # a quota the fuzzer set could stop the resets below
        h.set_quota(path, None)
    # Low on blocks: start /fuzz over. An input may have removed /fuzz itself already, its
    # blocks still being given back (a CI run failed here on the missing path).
    if h.stats()["blocks_free"] < NUM_BLOCKS // 2 and h.exists("/fuzz"):
        h.remove("/fuzz")
    if h.exists("/fuzz"):
        for child in h.ls("/fuzz"):
            if child["name"] not in BASE or child["kind"] != BASE[child["name"]]:
                h.remove("/fuzz/" + child["name"])
    for name, kind in BASE.items():
        m = h.control(Op.CREATE, {"path": "/fuzz/" + name, "kind": kind, "exist_ok": True})
        st_.allocs[kind] = [pack_u64(p["chain"][0]["alloc"]) for p in m["partitions"]]


# -- the well-behaved client ----------------------------------------------------------------------


class GoodClient:
    """Writes /good before and during the fuzzing; remembers exactly what was acknowledged."""

    def __init__(self, address: str) -> None:
        self.c = StateClient(address, timeout=REPLY_TIMEOUT)
        self.ht = self.c.open_or_create_hash_table("/good/ht")
        self.q = self.c.open_or_create_queue("/good/q")
        self.f = self.c.open_or_create_file("/good/f")
        self.kv: dict[bytes, bytes] = {}
        self.items: list[bytes] = []
        self.file = bytearray()
        self.refused = 0  # writes refused with OutOfMemory while the fuzzer held the pool
        self.failures: list[BaseException] = []
        self.stop = threading.Event()
        batch = {b"pre%d" % i: bytes([i % 251]) * (100 + 37 * i) for i in range(150)}
        self.ht.multi_put(batch)
        self.kv.update(batch)
        items = [b"item%d" % i * (1 + i % 40) for i in range(60)]
        self.q.multi_enqueue(items)
        self.items += items
        self._append(bytes(range(256)) * 300)

    def _append(self, chunk: bytes) -> None:
        self.f.write(chunk)
        self.file += chunk

    def run(self) -> None:
        i = 0
        while not self.stop.is_set() and i < GOOD_OPS:
            i += 1
            try:
                key, value = b"live%d" % i, bytes([i % 256]) * (50 + i % 1000)
                self.ht.put(key, value)
                self.kv[key] = value
                item = b"q%d" % i
                self.q.enqueue(item)
                self.items.append(item)
                if i % 10 == 0:
                    self._append(b"%08d" % i * 64)
            except errors.OutOfMemoryError:
                self.refused += 1
                self.stop.wait(0.01)
            except BaseException as e:  # noqa: BLE001 - the verdict comes later, in the test thread
                self.failures.append(e)
                return
            self.stop.wait(0.002)

    def verify(self) -> None:
        got = self.ht.multi_get(list(self.kv))
        bad = [k for k, v in zip(self.kv, got, strict=True) if v != self.kv[k]]
        assert not bad, f"{len(bad)} acknowledged keys lost or changed, e.g. {bad[:3]}"
        out = []
        while True:
            try:
                out.append(self.q.dequeue())
            except errors.QueueEmptyError:
                break
        assert out == self.items, "acknowledged queue items lost, changed or reordered"
        self.f.seek(0)
        assert self.f.read(len(self.file)) == bytes(self.file), "acknowledged file bytes changed"


# -- the test -------------------------------------------------------------------------------------


def test_fuzz_state_protocol_keeps_servers_serving_data_intact_and_memory_bounded(tmp_path):
    server = ServerProcess(tmp_path / "state", block_size=BLOCK, num_blocks=NUM_BLOCKS)
    good = GoodClient(server.address)
    state = FuzzState(server, StateClient(server.address, timeout=REPLY_TIMEOUT))
    _reset_fuzz(state)
    base_rss = server.rss_mb()
    writer = threading.Thread(target=good.run, daemon=True)
    writer.start()
    try:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def one_input(data) -> None:
            target = data.draw(st.sampled_from(["controller", "memory server"]))
            n = data.draw(st.integers(1, 6))
            frames = [_draw_frame(data, target, i + 1, state.allocs) for i in range(n)]
            _exchange(server.address if target == "controller" else server.ms_address, frames)
            assert server.alive(), "the state server process died"
            state.max_rss = max(state.max_rss, server.rss_mb())
            _reset_fuzz(state)  # also proves the controller still answers

        one_input()
    finally:
        good.stop.set()
        writer.join(30)
    try:
        assert not good.failures, f"the well-behaved client failed: {good.failures[0]!r}"
        assert len(good.kv) >= 150 + 100, "the well-behaved client made little progress during the fuzzing"
        good.verify()
        grown = max(state.max_rss, server.rss_mb()) - base_rss
        assert grown < RSS_GROWTH_MB, f"server RSS grew {grown:.0f} MB (bound {RSS_GROWTH_MB})"
        # and a fresh client is served as usual
        with StateClient(server.address) as fresh:
            ht = fresh.open_or_create_hash_table("/after/ht")
            ht.put(b"k", b"v")
            assert ht.get(b"k") == b"v"
        json.dumps(state.harness.stats())
    finally:
        good.c.disconnect()
        state.harness.disconnect()
        server.close()


def test_inputs_the_fuzzer_found(cluster):
    c = cluster.client()
    st_root = c.status("/")  # the root's lease is infinite: its remaining time was an OverflowError
    assert st_root["kind"] == "dir" and st_root["lease_remaining_ms"] is None
