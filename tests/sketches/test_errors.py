"""Bad parameters, bytes, items, merges and queries get their own error and change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from taureau.sketches import (
    HLL,
    KLL,
    Bloom,
    CountMin,
    FrequentItems,
    Query,
    Reservoir,
    SketchFormatError,
    SketchItemError,
    SketchMergeError,
    SketchParamError,
    SketchQueryError,
    Theta,
    kind,
    kinds,
)


@pytest.mark.parametrize("cls, params", [
    (CountMin, {"relative_error": 0}),
    (CountMin, {"relative_error": 1e-6}),  # too large a table
    (CountMin, {"confidence": 1.0}),
    (CountMin, {"relative_error": "lots"}),
    (HLL, {"lg_k": 30}),
    (HLL, {"hll_type": 5}),
    (KLL, {"k": 2}),
    (KLL, {"k": True}),
    (FrequentItems, {"lg_max_k": 16}),  # items of up to 1 KiB would not fit a state value
    (Bloom, {"expected_items": 100_000_000}),
    (Bloom, {"false_positive_rate": 0}),
    (Reservoir, {"k": 0}),
])
def test_bad_parameters(cls, params):
    with pytest.raises(SketchParamError):
        cls.from_params(params)


def test_unknown_parameter_and_kind():
    with pytest.raises(SketchParamError, match="unknown: lgk"):
        HLL.from_params({"lgk": 12})
    with pytest.raises(SketchParamError, match="unknown sketch kind"):
        kind("hyperloglog")


@pytest.mark.parametrize("name", kinds())
def test_garbage_bytes(name):
    cls = kind(name)
    for data in (b"", b"\x00" * 3, b"\xff" * 64, "text"):
        with pytest.raises(SketchFormatError):
            cls.from_bytes(data)


def test_bytes_of_another_kind():
    with pytest.raises(SketchFormatError):
        KLL.from_bytes(HLL().to_bytes())


def test_merge_mismatches_leave_the_sketch_as_it_was():
    cms = CountMin(relative_error=0.01)
    cms.update("a")
    before = cms.to_bytes()
    with pytest.raises(SketchMergeError, match="other configurations"):
        cms.merge(CountMin(relative_error=0.02))
    with pytest.raises(SketchMergeError, match="cannot merge a hll"):
        cms.merge(HLL())  # type: ignore[arg-type]
    assert cms.to_bytes() == before
    with pytest.raises(SketchMergeError):
        Bloom(expected_items=10).merge(Bloom(expected_items=20))


def test_bad_items():
    cms = CountMin(relative_error=0.01)
    with pytest.raises(SketchItemError):
        cms.update(1.5)
    with pytest.raises(SketchItemError):
        cms.update(2**70)
    with pytest.raises(SketchItemError):
        cms.update("x" * 5000)
    with pytest.raises(SketchItemError):
        cms.update("a", -1)
    with pytest.raises(SketchItemError):
        cms.update_many([{"a": 1}])
    with pytest.raises(SketchItemError):
        cms.update_many(np.arange(3), [1, 2])
    assert cms.n == 0
    with pytest.raises(SketchItemError):
        KLL().update("fast")
    with pytest.raises(SketchItemError):
        KLL().update_many(["a", "b"])
    with pytest.raises(SketchItemError):
        FrequentItems().update("a", 1.5)
    with pytest.raises(SketchItemError):
        Reservoir().update("a", 2)


def test_bad_queries():
    cms = CountMin(relative_error=0.01)
    with pytest.raises(SketchQueryError, match="answers key, not quantiles"):
        cms.answer(Query(quantiles=[0.5]))
    with pytest.raises(SketchQueryError, match="ask count-min"):
        cms.answer(Query())
    with pytest.raises(SketchQueryError):
        KLL().answer(Query(quantiles=[1.5]))
    with pytest.raises(SketchQueryError):
        FrequentItems().answer(Query(top=0))
    with pytest.raises(SketchQueryError):
        FrequentItems().answer(Query(top=10**6))


def test_answers():
    cms = CountMin(relative_error=0.01)
    cms.update_many(["alice"] * 5 + ["bob"])
    a = cms.answer(Query(key="alice"))
    assert a["estimate"] >= 5 and a["upper"] == a["estimate"] and a["n"] == 6
    kll = KLL()
    assert kll.answer(Query(quantiles=[0.5]))["empty"] is True
    kll.update_many(np.arange(100.0))
    answer = kll.answer(Query(quantiles=[0.5], ranks=[10.0]))
    assert answer["quantiles"][0]["value"] in (49.0, 50.0) and answer["ranks"][0]["rank"] == 0.1


def test_theta_set_operations():
    a, b = Theta(), Theta()
    a.update_many(np.arange(0, 1000))
    b.update_many(np.arange(500, 1500))
    assert a.union(b).estimate() == 1500
    assert a.intersection(b).estimate() == 500
    assert a.a_not_b(b).estimate() == 500
    lower, estimate, upper = a.jaccard(b)
    assert lower <= 1 / 3 <= upper and estimate == pytest.approx(1 / 3)
    # A set-operation result is a sketch like any other: it serializes and merges on.
    again = Theta.from_bytes(a.intersection(b).to_bytes())
    again.merge(a.a_not_b(b))
    assert again.estimate() == 1000
