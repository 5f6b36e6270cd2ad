"""Claims against in-memory tables with the state store's semantics, through the interleavings
a crash makes: a commit that dies before its mark, a finalizer that seals first, a record
redelivered after its commit counted, and the buckets' horizon."""

from __future__ import annotations

import pytest

from taureau.common.errors import DuplicateKeyError
from taureau.sketches import claims
from taureau.sketches.claims import ABORTED, COMMITTED, Claims


class MemoryTable:
    """put and multi_insert insert (first writer wins), multi_get answers None when missing."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def put(self, key: bytes, value: bytes) -> None:
        if key in self.data:
            raise DuplicateKeyError(key)
        self.data[key] = value

    def multi_get(self, keys):
        return [self.data.get(k) for k in keys]

    def multi_insert(self, items):
        out = []
        for k, v in items:
            out.append(self.data.get(k))
            self.data.setdefault(k, v)
        return out


class Buckets:
    def __init__(self) -> None:
        self.tables: dict[int, MemoryTable] = {}

    def __call__(self, bucket: int) -> MemoryTable:
        return self.tables.setdefault(bucket, MemoryTable())


RECORDS = [b"7:%d:-1" % i for i in range(10)]


def test_a_first_commit_holds_every_record_and_a_second_finds_them_counted():
    book = Claims(Buckets())
    x = claims.new_commit_id(5)
    assert book.claim(x, RECORDS).ours == list(range(10))
    assert book.mark_committed(x, 5)
    y = claims.new_commit_id(5)
    got = book.claim(y, RECORDS[5:] + [b"7:99:-1"])  # a redelivery, with one new record
    assert got.counted == [0, 1, 2, 3, 4] and got.ours == [5]


def test_a_commit_that_died_before_its_mark_is_aborted_and_its_records_taken_over():
    tables = Buckets()
    book = Claims(tables)
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)  # ... its slot taken, then kill -9: no mark
    y = claims.new_commit_id(5)
    got = book.claim(y, RECORDS)
    assert got.ours == list(range(10)) and got.counted == []
    assert tables(5).data[claims.fate_key(x)] == ABORTED
    assert tables(5).data[claims.claim_key(RECORDS[0], 1)] == y
    assert book.settle([x]) == {x: ABORTED}  # the finalizer leaves x's slot out
    assert book.mark_committed(y, 5) and book.settle([y]) == {y: COMMITTED}
    # x, had it been alive and late, learns it does not count.
    assert not book.mark_committed(x, 5)


def test_a_finalizer_that_settles_first_makes_the_commit_try_again():
    book = Claims(Buckets())
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)
    assert book.settle([x]) == {x: ABORTED}  # sealed between x's slot and its mark
    assert not book.mark_committed(x, 5)
    x2 = claims.new_commit_id(5)
    assert book.claim(x2, RECORDS).ours == list(range(10))  # generation 1, all its own
    assert book.mark_committed(x2, 5)
    assert Claims(book.table).claim(claims.new_commit_id(5), RECORDS).counted == list(range(10))


def test_claiming_again_under_the_same_id_is_idempotent():
    book = Claims(Buckets())
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS[:4])
    assert book.claim(x, RECORDS).ours == list(range(10))  # as after a broken connection


def test_a_claim_is_found_from_the_next_bucket_and_forgotten_after_it():
    book = Claims(Buckets())
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)
    assert book.mark_committed(x, 5)
    assert book.claim(claims.new_commit_id(6), RECORDS).counted == list(range(10))
    # Two buckets on, the claim is past its horizon (the documented limit): counted again.
    assert book.claim(claims.new_commit_id(7), RECORDS).ours == list(range(10))


def test_a_chain_in_the_previous_bucket_continues_there():
    tables = Buckets()
    book = Claims(tables)
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)  # dies unmarked
    y = claims.new_commit_id(6)
    assert book.claim(y, RECORDS).ours == list(range(10))
    assert tables(5).data[claims.claim_key(RECORDS[0], 1)] == y
    assert claims.fate_key(y) not in tables(5).data and tables(5).data[claims.fate_key(x)] == ABORTED
    assert book.mark_committed(y, 6)
    assert tables(6).data[claims.fate_key(y)] == COMMITTED


def test_a_commit_that_stalled_past_its_tables_life_never_counts():
    book = Claims(Buckets())
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)
    assert not book.mark_committed(x, 5 + claims.KEEP_BUCKETS - 1)
    assert book.settle([x]) == {x: ABORTED}


def test_an_endless_chain_of_aborted_owners_is_an_error_not_a_loop():
    tables = Buckets()
    book = Claims(tables)
    for g in range(claims.MAX_GENERATIONS):
        dead = claims.new_commit_id(5)
        tables(5).data[claims.claim_key(RECORDS[0], g)] = dead
        tables(5).data[claims.fate_key(dead)] = ABORTED
    with pytest.raises(claims.ClaimsError):
        book.claim(claims.new_commit_id(5), RECORDS[:1])


def test_stale_buckets_are_the_ones_no_claimant_reads():
    names = ["sketch-windows", "sketch-claims-3", "sketch-claims-7", "sketch-claims-8", "sketch-claims-x"]
    assert claims.stale_buckets(names, 10) == [3, 7]
    assert claims.stale_buckets(names, 9) == [3]


def test_a_record_id_is_its_ledger_entry_and_batch_index():
    class Id:
        def ledger_id(self):
            return 12

        def entry_id(self):
            return 345

        def batch_index(self):
            return -1

    assert claims.record_id(Id()) == b"12:345:-1"
