"""RangeSet: table-driven adds, removals, flat form and its corruption checks."""

from __future__ import annotations

import pytest

from taureau.common.errors import CorruptedDataError
from taureau.storage.managed_ledger.ranges import RangeSet
from taureau.storage.position import Position as P


def _set(*adds: tuple[int, int]) -> RangeSet:
    r = RangeSet()
    for a in adds:
        r.add(P(*a))
    return r


def _flat(r: RangeSet) -> list[tuple[int, int, int]]:
    return [(s.ledger_id, s.entry_id, e.entry_id) for s, e in r.ranges()]


@pytest.mark.parametrize(
    "adds,expected",
    [
        ([], []),
        ([(1, 5)], [(1, 5, 5)]),
        ([(1, 5), (1, 6)], [(1, 5, 6)]),  # joins left
        ([(1, 6), (1, 5)], [(1, 5, 6)]),  # joins right
        ([(1, 5), (1, 7), (1, 6)], [(1, 5, 7)]),  # bridges two
        ([(1, 5), (1, 7)], [(1, 5, 5), (1, 7, 7)]),
        ([(1, 9), (2, 0)], [(1, 9, 9), (2, 0, 0)]),  # never merged across ledgers
        ([(2, 0), (1, 3), (1, 4), (3, 1)], [(1, 3, 4), (2, 0, 0), (3, 1, 1)]),
        ([(1, 5), (1, 5)], [(1, 5, 5)]),  # duplicate
    ],
)
def test_add(adds, expected):
    r = _set(*adds)
    assert _flat(r) == expected
    assert r.entry_count == sum(e - s + 1 for _, s, e in expected)
    assert len(r) == len(expected)


def test_add_reports_duplicates():
    r = _set((1, 1), (1, 2), (1, 3))
    assert r.add(P(1, 2)) is False
    assert r.add(P(1, 4)) is True
    assert r.entry_count == 4


@pytest.mark.parametrize(
    "adds,new,expected",
    [
        ([], ((1, 2), (1, 4)), [(1, 2, 4)]),
        ([(1, 5)], ((1, 2), (1, 4)), [(1, 2, 5)]),
        ([(1, 0), (1, 9)], ((1, 2), (1, 4)), [(1, 0, 0), (1, 2, 4), (1, 9, 9)]),
        ([(1, 1), (1, 3), (1, 8)], ((1, 2), (1, 7)), [(1, 1, 8)]),
        ([(1, 3), (2, 0)], ((1, 4), (1, 9)), [(1, 3, 9), (2, 0, 0)]),
    ],
)
def test_add_range(adds, new, expected):
    r = _set(*adds)
    r.add_range(P(*new[0]), P(*new[1]))
    assert _flat(r) == expected
    assert r.entry_count == sum(e - s + 1 for _, s, e in expected)


@pytest.mark.parametrize("bad", [((1, 3), (2, 3)), ((1, 5), (1, 4)), ((1, -1), (1, 2))])
def test_add_range_rejects_bad_ranges(bad):
    r = _set((1, 9))
    with pytest.raises(ValueError):
        r.add_range(P(*bad[0]), P(*bad[1]))
    assert _flat(r) == [(1, 9, 9)]


@pytest.mark.parametrize(
    "cut,expected,dropped",
    [
        ((1, 0), [(1, 2, 4), (2, 0, 1)], 0),
        ((1, 2), [(1, 3, 4), (2, 0, 1)], 1),  # straddling range loses its head
        ((1, 4), [(2, 0, 1)], 3),
        ((1, 99), [(2, 0, 1)], 3),
        ((2, 0), [(2, 1, 1)], 4),
        ((3, 0), [], 5),
    ],
)
def test_remove_up_to(cut, expected, dropped):
    r = _set((1, 2), (1, 3), (1, 4), (2, 0), (2, 1))
    assert r.remove_up_to(P(*cut)) == dropped
    assert _flat(r) == expected
    assert r.entry_count == 5 - dropped


def test_queries():
    r = _set((1, 2), (1, 3), (2, 5))
    assert P(1, 3) in r and P(1, 4) not in r and P(2, 5) in r
    assert r.range_containing(P(1, 3)) == (P(1, 2), P(1, 3))
    assert r.range_containing(P(1, 1)) is None
    assert r.next_start_after(P(1, 2)) == P(2, 5)
    assert r.next_start_after(P(0, 0)) == P(1, 2)
    assert r.next_start_after(P(2, 5)) is None
    assert r.first() == (P(1, 2), P(1, 3))
    assert r.pop_first() == (P(1, 2), P(1, 3))
    assert r.entry_count == 1
    r.clear()
    assert not r and r.first() is None and r.entry_count == 0


def test_flat_round_trip():
    r = _set((1, 2), (1, 3), (2, 5), (7, 0))
    back = RangeSet.from_flat(r.to_flat())
    assert back.ranges() == r.ranges() and back.entry_count == r.entry_count


@pytest.mark.parametrize(
    "flat",
    [
        "nope",
        [1, 2],
        [1, 2, "3"],
        [1, 5, 4],  # last < first
        [1, -1, 2],
        [1, 5, 6, 1, 3, 4],  # not sorted
        [1, 5, 6, 1, 6, 8],  # overlapping
        [1, 5, 6, 1, 7, 8],  # touching: should have been merged
        [1, 2, True],
    ],
)
def test_from_flat_rejects_corruption(flat):
    with pytest.raises(CorruptedDataError):
        RangeSet.from_flat(flat)


def test_a_cursor_record_keeps_the_first_ranges_and_fits_a_metadata_value():
    from taureau.metadata.embedded import MAX_VALUE_BYTES
    from taureau.storage.managed_ledger.meta import (
        MAX_PERSISTED_RANGES,
        decode_cursor_info,
        encode_cursor_info,
    )

    ranges = RangeSet()
    for entry in range(0, 6 * MAX_PERSISTED_RANGES, 2):  # every other entry acked: 3x too many ranges
        ranges.add(P(2**40, 10**12 + entry))
    # And a batch-index ack set for many entries, each of a 1,000-message batch (16 words).
    batches = {P(2**40, 10**13 + entry): (-(2**63),) * 16 for entry in range(100_000)}
    data = encode_cursor_info(P(2**40, 10**12 - 1), ranges, batches)
    assert len(data) < MAX_VALUE_BYTES
    _, kept, kept_batches = decode_cursor_info(data)
    assert kept.ranges() == ranges.ranges()[:MAX_PERSISTED_RANGES]
    assert 0 < len(kept_batches) < len(batches)
    assert all(kept_batches[p] == batches[p] for p in kept_batches)


@pytest.mark.parametrize("mark_delete", [P(7, 123), P(7, -1), P(2**63 - 1, 2**62)])
@pytest.mark.parametrize("last_active_ms", [0, 1_700_000_000_000])
def test_a_cursor_record_with_nothing_acked_out_of_order_is_the_json_of_its_fields(mark_delete, last_active_ms):
    import json

    from taureau.storage.managed_ledger.meta import (
        decode_cursor_info,
        decode_cursor_last_active,
        encode_cursor_info,
    )

    data = encode_cursor_info(mark_delete, RangeSet(), None, last_active_ms)
    expected = {"v": 1, "md": list(mark_delete), "ranges": []} | ({"active": last_active_ms} if last_active_ms else {})
    assert json.loads(data) == expected
    assert data == json.dumps(expected, separators=(",", ":")).encode()
    md, ranges, batches = decode_cursor_info(data)
    assert (md, ranges.ranges(), batches) == (mark_delete, [], {})
    assert decode_cursor_last_active(data) == last_active_ms
