"""Claims against in-memory tables with the state store's semantics, through the interleavings
a crash makes: a commit that dies before its mark, a finalizer that seals first, a record
redelivered after its commit counted, a batch split across windows, and the buckets' horizon."""

from __future__ import annotations

import pulsar
import pytest

from taureau.sketches import claims
from taureau.sketches.claims import ABORTED, COMMITTED, Claims


class MemoryTable:
    """multi_insert inserts the absent keys (first writer wins), multi_get answers None when
    missing: the hash table's semantics, with nothing between two parties' calls."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

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


BATCH = [(b"7:1", i) for i in range(10)]  # one entry: a batch of ten messages
SINGLES = [(b"7:%d" % (100 + i), 0) for i in range(5)]  # five entries of one message each
RECORDS = BATCH + SINGLES
EVERY = list(range(len(RECORDS)))


def test_a_first_commit_holds_every_record_and_a_second_finds_them_counted():
    tables = Buckets()
    book = Claims(tables)
    x = claims.new_commit_id(5)
    assert book.claim(x, RECORDS).ours == EVERY
    assert len(tables(5).data) == 6  # one claim per entry, however many messages it holds
    assert book.mark_committed(x, 5)
    got = book.claim(claims.new_commit_id(5), RECORDS[5:] + [(b"7:99", 0)])  # a redelivery, and a new one
    assert got.counted == list(range(10)) and got.ours == [10]


def test_a_batch_split_across_two_windows_is_counted_in_both_once():
    book = Claims(Buckets())
    first, second = claims.new_commit_id(5), claims.new_commit_id(5)
    assert book.claim(first, BATCH[:4]).ours == [0, 1, 2, 3]
    assert book.mark_committed(first, 5)
    assert book.claim(second, BATCH[4:]).ours == list(range(6))  # generation 1, indexes 4-9
    assert book.mark_committed(second, 5)
    # The whole batch comes back (both windows' acknowledgements lost): all of it counted.
    assert book.claim(claims.new_commit_id(5), BATCH).counted == list(range(10))


def test_a_partial_redelivery_keeps_the_part_no_committed_claim_covers():
    book = Claims(Buckets())
    first, dead = claims.new_commit_id(5), claims.new_commit_id(5)
    book.claim(first, BATCH[:4])
    assert book.mark_committed(first, 5)
    book.claim(dead, BATCH[4:])  # ... and its instance is killed before its mark
    got = book.claim(claims.new_commit_id(5), BATCH[2:])  # indexes 2-9 redelivered
    assert got.counted == [0, 1] and got.ours == list(range(2, 8))
    assert book.settle([dead]) == {dead: ABORTED}


def test_the_same_message_twice_in_one_window_counts_once():
    got = Claims(Buckets()).claim(claims.new_commit_id(5), [*BATCH[:3], BATCH[1]])
    assert got.ours == [0, 1, 2] and got.counted == [3]


def test_a_commit_that_died_before_its_mark_is_aborted_and_its_records_taken_over():
    tables = Buckets()
    book = Claims(tables)
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)  # ... its slot taken, then kill -9: no mark
    y = claims.new_commit_id(5)
    got = book.claim(y, RECORDS)
    assert got.ours == EVERY and got.counted == []
    assert tables(5).data[claims.fate_key(x)] == ABORTED
    assert claims.parse_claim(tables(5).data[claims.claim_key(b"7:1", 1)]) == (y, set(range(10)))
    assert book.settle([x]) == {x: ABORTED}  # the finalizer leaves x's slot out
    assert book.mark_committed(y, 5) and book.settle([y]) == {y: COMMITTED}
    assert not book.mark_committed(x, 5)  # x, had it been alive and late, does not count


def test_a_finalizer_that_settles_first_makes_the_commit_try_again():
    book = Claims(Buckets())
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)
    assert book.settle([x]) == {x: ABORTED}  # sealed between x's slot and its mark
    assert not book.mark_committed(x, 5)
    x2 = claims.new_commit_id(5)
    assert book.claim(x2, RECORDS).ours == EVERY  # generation 1, all its own
    assert book.mark_committed(x2, 5)
    assert book.claim(claims.new_commit_id(5), RECORDS).counted == EVERY


def test_claiming_again_under_the_same_id_is_idempotent():
    book = Claims(Buckets())
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)
    assert book.claim(x, RECORDS).ours == EVERY  # as after a broken connection


def test_a_claim_is_found_from_the_next_bucket_and_forgotten_after_it():
    book = Claims(Buckets())
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)
    assert book.mark_committed(x, 5)
    assert book.claim(claims.new_commit_id(6), RECORDS).counted == EVERY
    # Two buckets on, the claim is past its horizon (the documented limit): counted again.
    assert book.claim(claims.new_commit_id(7), RECORDS).ours == EVERY


def test_a_chain_in_the_previous_bucket_continues_there():
    tables = Buckets()
    book = Claims(tables)
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)  # dies unmarked
    y = claims.new_commit_id(6)
    assert book.claim(y, RECORDS).ours == EVERY
    assert claims.parse_claim(tables(5).data[claims.claim_key(b"7:1", 1)])[0] == y
    assert tables(5).data[claims.fate_key(x)] == ABORTED and claims.fate_key(y) not in tables(5).data
    assert book.mark_committed(y, 6)
    assert tables(6).data[claims.fate_key(y)] == COMMITTED


def test_a_commit_that_stalled_past_its_tables_life_never_counts():
    book = Claims(Buckets())
    x = claims.new_commit_id(5)
    book.claim(x, RECORDS)
    assert not book.mark_committed(x, 5 + claims.KEEP_BUCKETS - 1)
    assert book.settle([x]) == {x: ABORTED}


def test_an_endless_chain_of_aborted_claims_is_an_error_not_a_loop():
    tables = Buckets()
    book = Claims(tables)
    for g in range(claims.MAX_GENERATIONS):
        dead = claims.new_commit_id(5)
        tables(5).data[claims.claim_key(b"7:1", g)] = claims.claim_value(dead, {0})
        tables(5).data[claims.fate_key(dead)] = ABORTED
    with pytest.raises(claims.ClaimsError):
        book.claim(claims.new_commit_id(5), BATCH[:1])


def test_index_sets_travel_as_ranges():
    assert claims.encode_indexes({0, 1, 2, 3, 7, 9, 10}) == b"0-4,7-8,9-11"
    assert claims.decode_indexes(b"0-4,7-8,9-11") == {0, 1, 2, 3, 7, 9, 10}
    assert claims.encode_indexes(set(range(1000))) == b"0-1000"


def test_stale_buckets_are_the_ones_no_claimant_reads():
    names = ["sketch-windows", "sketch-claims-3", "sketch-claims-7", "sketch-claims-8", "sketch-claims-x"]
    assert claims.stale_buckets(names, 10) == [3, 7]
    assert claims.stale_buckets(names, 9) == [3]


def test_a_record_id_is_its_entry_and_batch_index():
    assert claims.record_id(pulsar.MessageId(0, 12, 345, -1)) == (b"12:345", 0)
    assert claims.record_id(pulsar.MessageId(3, 12, 345, 7)) == (b"12:345", 7)
