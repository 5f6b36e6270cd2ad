"""LedgerList position arithmetic and plan_trim, table-driven."""

from __future__ import annotations

import pytest

from taureau.storage.managed_ledger.ledgers import LedgerList, plan_trim
from taureau.storage.managed_ledger.meta import LedgerInfo
from taureau.storage.position import Position as P


def _chain() -> LedgerList:
    # ledger 3: 5 entries, ledger 5: empty, ledger 8: 2 entries, ledger 9 (current): 3 entries
    return LedgerList([LedgerInfo(3, 5, 50), LedgerInfo(5, 0, 0), LedgerInfo(8, 2, 20), LedgerInfo(9, 3, 30)])


@pytest.mark.parametrize(
    "pos,expected",
    [
        ((0, 0), (3, 0)),
        ((3, -1), (3, 0)),
        ((3, 4), (3, 4)),
        ((3, 5), (8, 0)),  # past ledger 3, over the empty ledger 5
        ((4, 0), (8, 0)),  # an unknown ledger id between two
        ((5, 0), (8, 0)),
        ((8, 2), (9, 0)),
        ((9, 2), (9, 2)),
        ((9, 3), (9, 3)),  # the end: where the next add goes
        ((9, 99), (9, 3)),
        ((10, 0), (9, 3)),
    ],
)
def test_normalize(pos, expected):
    assert _chain().normalize(P(*pos)) == P(*expected)


@pytest.mark.parametrize(
    "after,up_to,expected",
    [
        ((3, -1), (9, 2), 10),
        ((3, 0), (9, 2), 9),
        ((3, 4), (8, 0), 1),
        ((3, 2), (3, 3), 1),
        ((9, 2), (9, 2), 0),
        ((8, 1), (3, 0), 0),
        ((2, 0), (8, 1), 7),
        ((3, -1), (9, 99), 10),
    ],
)
def test_count(after, up_to, expected):
    assert _chain().count(P(*after), P(*up_to)) == expected


def test_last_entry_end_position_at():
    chain = _chain()
    assert chain.end == P(9, 3)
    assert chain.last_entry == P(9, 2)
    assert [chain.position_at(i) for i in (0, 4, 5, 6, 7, 9)] == [
        P(3, 0),
        P(3, 4),
        P(8, 0),
        P(8, 1),
        P(9, 0),
        P(9, 2),
    ]
    with pytest.raises(IndexError):
        chain.position_at(10)
    assert chain.total_entries == 10 and chain.total_size == 100
    assert chain.contains(P(8, 1)) and not chain.contains(P(8, 2)) and not chain.contains(P(4, 0))
    empty_current = LedgerList([LedgerInfo(3, 5), LedgerInfo(4, 0)])
    assert empty_current.last_entry == P(3, 4)
    assert LedgerList([LedgerInfo(4, 0)]).last_entry == P(4, -1)


def test_append_keeps_order():
    chain = _chain()
    with pytest.raises(ValueError):
        chain.append(LedgerInfo(9))
    chain.append(LedgerInfo(12))
    assert chain.current.ledger_id == 12
    chain.remove(3)
    assert chain.get(3) is None and chain.normalize(P(0, 0)) == P(8, 0)


NOW = 1_000_000


def _infos():
    # closed 100 s, 50 s and 10 s ago; the last one is current.
    return [
        LedgerInfo(1, 10, 100, NOW - 100_000),
        LedgerInfo(2, 10, 100, NOW - 50_000),
        LedgerInfo(3, 10, 100, NOW - 10_000),
        LedgerInfo(4, 3, 30, 0),
    ]


@pytest.mark.parametrize(
    "slowest,time_s,size,expected",
    [
        ((4, 2), 0, 0, [1, 2, 3]),  # everything consumed, no retention: all but the current
        ((4, 2), -1, -1, []),  # keep forever
        ((2, 9), 0, 0, [1, 2]),  # ledger 2 fully consumed
        ((2, 8), 0, 0, [1]),  # ledger 2 not fully consumed
        ((1, -1), 0, 0, []),
        ((4, 2), 60, -1, [1]),  # only ledger 1 is older than 60 s
        ((4, 2), -1, 150, [1, 2]),  # 330 bytes retained, over 150 until 130 left
        ((4, 2), 3600, 250, [1]),  # size over the limit beats time
        ((4, 2), -1, 1000, []),
    ],
)
def test_plan_trim(slowest, time_s, size, expected):
    assert plan_trim(_infos(), P(*slowest), time_s, size, NOW) == expected


def test_plan_trim_never_deletes_current():
    assert plan_trim([LedgerInfo(1, 10, 100, 0)], P(1, 9), 0, 0, NOW) == []
