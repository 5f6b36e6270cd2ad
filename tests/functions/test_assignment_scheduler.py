"""The leader's round-robin scheduler and the stored form of assignments (pure)."""

from __future__ import annotations

import json

import pytest

from taureau.functions.cluster import assignments
from taureau.functions.cluster.scheduler import Assigned, Wanted, schedule


def _spread(out: dict[str, dict[str, Assigned]], fqfn: str) -> dict[int, str]:
    return {i: w for w, held in out.items() if fqfn in held for i in held[fqfn].instances}


def test_instances_are_spread_evenly_over_the_workers():
    out = schedule([Wanted("t/n/a", 3, 4), Wanted("t/n/b", 1, 2)], ["w1", "w2"], {})
    assert sorted(_spread(out, "t/n/a")) == [0, 1, 2, 3]
    loads = {w: sum(len(a.instances) for a in held.values()) for w, held in out.items()}
    assert loads == {"w1": 3, "w2": 3}
    assert {w for w in _spread(out, "t/n/a").values()} == {"w1", "w2"}
    assert out["w1"]["t/n/a"].version == 3


def test_instances_stay_on_their_live_worker_and_a_dead_workers_move():
    current = {"t/n/a": {0: "w1", 1: "w2", 2: "w1", 3: "w2"}}
    kept = schedule([Wanted("t/n/a", 0, 4)], ["w1", "w2"], current)
    assert _spread(kept, "t/n/a") == current["t/n/a"]
    moved = schedule([Wanted("t/n/a", 0, 4)], ["w1", "w3"], current)
    assert _spread(moved, "t/n/a")[0] == "w1" and _spread(moved, "t/n/a")[2] == "w1"
    assert {_spread(moved, "t/n/a")[1], _spread(moved, "t/n/a")[3]} == {"w3"}  # the least loaded


def test_fewer_instances_drop_the_highest_ids_and_no_workers_assign_nothing():
    out = schedule([Wanted("t/n/a", 0, 1)], ["w1", "w2"], {"t/n/a": {0: "w2", 1: "w1"}})
    assert _spread(out, "t/n/a") == {0: "w2"}
    assert schedule([Wanted("t/n/a", 0, 2)], [], {}) == {}


def test_an_autoscaled_function_goes_whole_to_one_worker_and_stays_there():
    out = schedule([Wanted("t/n/x", 0, 3), Wanted("t/n/auto", 0, 4, together=True)], ["w1", "w2"], {})
    assert len(set(_spread(out, "t/n/auto").values())) == 1
    holder = _spread(out, "t/n/auto")[0]
    again = schedule([Wanted("t/n/auto", 0, 4, together=True)], ["w1", "w2"], {"t/n/auto": {0: holder, 1: holder}})
    assert set(_spread(again, "t/n/auto").values()) == {holder}
    split = schedule([Wanted("t/n/auto", 0, 2, together=True)], ["w1", "w2"], {"t/n/auto": {0: "w1", 1: "w2"}})
    assert len(set(_spread(split, "t/n/auto").values())) == 1  # a split one is put back together


def test_assignments_round_trip():
    held = {"t/n/a": Assigned(7, (0, 2)), "t/n/b": Assigned(0, ())}
    decoded, dropped = assignments.decode(assignments.encode(held))
    assert decoded == held and dropped == []


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[1, 2]", b'{"functions": []}', b'"x"', b"{}"])
def test_a_corrupt_assignment_node_is_refused(data):
    with pytest.raises(assignments.AssignmentError):
        assignments.decode(data)


def test_bad_entries_are_dropped_and_named_the_rest_kept():
    raw = {"functions": {
        "t/n/ok": {"version": 1, "instances": [1, 0, 1]},
        "not-a-name": {"version": 1, "instances": [0]},
        "t/n/neg": {"version": 1, "instances": [-1]},
        "t/n/str": {"version": "1", "instances": [0]},
        "t/n/bool": {"version": 1, "instances": [True]},
        "t/n/obj": [1],
    }}
    decoded, dropped = assignments.decode(json.dumps(raw).encode())
    assert decoded == {"t/n/ok": Assigned(1, (0, 1))}
    assert len(dropped) == 5 and any("not-a-name" in reason for reason in dropped)
