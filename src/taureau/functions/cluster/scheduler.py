"""The leader's pure assignment step, as Pulsar's RoundRobin scheduler: instances keep the
live worker they have; every other instance goes to the worker with the fewest instances
(ties to the smallest id). An autoscaled function goes whole to one worker, since its scaler
decides how many of its instances run and lives on one worker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Wanted:
    fqfn: str
    version: int  # the function record's node version: a change makes its workers re-read it
    instances: int  # instance ids 0..instances-1
    together: bool = False  # all instances on one worker (autoscaled functions)


@dataclass(frozen=True, slots=True)
class Assigned:
    version: int
    instances: tuple[int, ...]


# worker id -> fqfn -> what that worker runs of it
Assignments = dict[str, dict[str, Assigned]]


def schedule(functions: list[Wanted], workers: list[str],
             current: dict[str, dict[int, str]]) -> Assignments:
    """`current`: fqfn -> instance id -> worker, as last written (dead workers included)."""
    out: Assignments = {w: {} for w in workers}
    if not workers:
        return out
    live = set(workers)
    load = dict.fromkeys(workers, 0)
    placed: dict[str, dict[int, str]] = {}
    todo: list[tuple[Wanted, list[int]]] = []
    for f in sorted(functions, key=lambda f: f.fqfn):
        had = current.get(f.fqfn, {})
        kept = {i: w for i, w in had.items() if w in live and 0 <= i < f.instances}
        if f.together:
            holders = set(kept.values())
            kept = {i: next(iter(holders)) for i in range(f.instances)} if len(holders) == 1 else {}
        placed[f.fqfn] = kept
        for w in kept.values():
            load[w] += 1
        missing = [i for i in range(f.instances) if i not in kept]
        if missing:
            todo.append((f, missing))
    for f, missing in todo:
        if f.together:
            worker = _least_loaded(load)
            for i in missing:
                placed[f.fqfn][i] = worker
            load[worker] += len(missing)
            continue
        for i in missing:
            worker = _least_loaded(load)
            placed[f.fqfn][i] = worker
            load[worker] += 1
    for f in functions:
        by_worker: dict[str, list[int]] = {}
        for i, w in placed[f.fqfn].items():
            by_worker.setdefault(w, []).append(i)
        for w, ids in by_worker.items():
            out[w][f.fqfn] = Assigned(f.version, tuple(sorted(ids)))
    return out


def _least_loaded(load: dict[str, int]) -> str:
    return min(load, key=lambda w: (load[w], w))
