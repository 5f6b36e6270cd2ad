"""Loading user code and serdes: Pulsar's class / module / function rules, and a faster
IdentitySerDe that must answer exactly as the SDK's does."""

from __future__ import annotations

import cmath
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pulsar.functions.serde import IdentitySerDe

from taureau.functions.errors import FunctionCodeError
from taureau.functions.loader import FastIdentitySerDe, add_code_paths, load_function, load_serde

FAST, SDK = FastIdentitySerDe(), IdentitySerDe()


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, complex) and cmath.isnan(a):
        return cmath.isnan(b)
    return a == b


@given(st.text())
def test_fast_identity_matches_the_sdk_on_any_text(text):
    data = text.encode()
    assert same(FAST.deserialize(data), SDK.deserialize(data))


@given(st.binary())
def test_fast_identity_matches_the_sdk_on_any_bytes(data):
    assert same(FAST.deserialize(data), SDK.deserialize(data))


@pytest.mark.parametrize("text", ["42", " 7 ", "1_000", "٣", "-1.5e3", "inf", "-Infinity", "NaN", "1+2j", "j",
                                  "hello", "", "12abc", "nan!"])
def test_fast_identity_matches_the_sdk_on_edge_cases(text):
    assert same(FAST.deserialize(text.encode()), SDK.deserialize(text.encode()))


def test_class_module_and_function_targets(tmp_path):
    (tmp_path / "targets_mod.py").write_text(
        "class Upper:\n    def process(self, x, context):\n        return x.upper()\n\n"
        "def process(x):\n    return x + '!'\n\n"
        "def with_context(x, context):\n    return (x, context)\n\n"
        "def takes_nothing():\n    return 1\n"
    )
    add_code_paths([str(tmp_path)])
    assert load_function("targets_mod.Upper")("a", None) == "A"
    assert load_function("targets_mod")("a", None) == "a!"
    assert load_function("targets_mod.with_context")("a", "ctx") == ("a", "ctx")
    with pytest.raises(FunctionCodeError, match="must take the input"):
        load_function("targets_mod.takes_nothing")
    with pytest.raises(FunctionCodeError, match="has no attribute 'Nope'"):
        load_function("targets_mod.Nope")
    with pytest.raises(FunctionCodeError, match="no module named 'no_such_module_x'"):
        load_function("no_such_module_x")


def test_serdes_by_name(tmp_path):
    assert isinstance(load_serde(None), FastIdentitySerDe)
    assert isinstance(load_serde("serde.IdentitySerDe"), IdentitySerDe)
    assert load_serde("serde.PickleSerDe").deserialize(load_serde("serde.PickleSerDe").serialize([1])) == [1]
    with pytest.raises(FunctionCodeError, match="schema type 'protobuf' is not supported"):
        load_serde("x.Y", "protobuf")
