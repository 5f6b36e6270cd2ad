"""SketchFunction: the code every sketch function runs (an ordinary windowed Taureau function).

- A window fires (a list of records): claim the records (`claims.py`: a record a committed
  partial already holds is left out, so a redelivery after a crash counts nothing twice),
  extract the items (JSON fields, or the raw value), build this instance's partial sketch
  with the batch path, commit it to the window through the merge protocol (`protocol.py`) in
  the function's ephemeral space, and mark the commit COMMITTED. Nothing is returned, so the
  window's inputs are acknowledged once the commit is done.
- The schedule fires (every second, on one instance at a time, a string): finalize the
  windows whose end + grace has passed. Finalizing takes the output topic's producer named
  `<fqfn>/merged` (the broker lets one process hold it: a finalizer lock that a crash
  releases), seals each due window, merges its partials, stores the merged sketch in the
  function's durable state (`sketch/w/<end>`, the last `retained` windows), publishes it with
  the window end as sequence id (the broker's de-duplication drops a republish), and removes
  the window's slots. Only slots whose commit is COMMITTED are merged. It also removes the
  claim tables no claimant reads any more.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
import pulsar

from taureau.sketches import claims, protocol, registry
from taureau.sketches.base import Sketch
from taureau.sketches.errors import SketchError
from taureau.sketches.spec import SketchSpec, spec_of

TABLE = "sketch-windows"
STATE_PREFIX = "sketch/w/"
LOOKBACK_WINDOWS = 1000  # windows behind now a finalizer looks at for commits
MAX_COMMIT_ATTEMPTS = 16  # commits of one window aborted by others before giving up

log = logging.getLogger("taureau.sketches.function")


def state_key(end: int) -> str:
    return f"{STATE_PREFIX}{end:015d}"


def window_of(key: str) -> int:
    return int(key[len(STATE_PREFIX):])


def extract(spec: SketchSpec, values: list[Any]) -> tuple[list[Any], list[Any] | None, int]:
    """(items, weights or None, records skipped) of a window's record values."""
    field = spec.value_field or spec.key_field
    numeric = registry.kind(spec.kind).input == "number"
    out: list[Any] = []
    weights: list[Any] | None = [] if spec.weight_field else None
    skipped = 0
    for value in values:
        try:
            if field is None and spec.weight_field is None:
                item = value.decode() if isinstance(value, bytes) else value
            else:
                doc = json.loads(value)
                item = doc[field] if field is not None else value
                if weights is not None:
                    weight = doc[spec.weight_field]
                    if isinstance(weight, bool) or not isinstance(weight, int | float):
                        raise TypeError("weight")
            if numeric:
                item = float(item)
            elif isinstance(item, bool) or not isinstance(item, str | int):
                raise TypeError("item")
            else:
                item = str(item)  # 17 and "17" are one key, and a query names keys as text
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            skipped += 1
            continue
        out.append(item)
        if weights is not None:
            weights.append(weight)
    return out, weights, skipped


def partial_of(spec: SketchSpec, values: list[Any]) -> tuple[Sketch, int]:
    """A window's partial sketch through the batch path; records the sketch refuses count
    as skipped instead of failing the window (a failed window would be redelivered forever)."""
    sketch = registry.kind(spec.kind).from_params(spec.params)
    items, weights, skipped = extract(spec, values)
    if not items:
        return sketch, skipped
    batch: Any = items
    if registry.kind(spec.kind).input == "number":
        batch = np.asarray(items, dtype=np.float64)
    try:
        sketch.update_many(batch, weights)
        return sketch, skipped
    except SketchError:
        sketch = registry.kind(spec.kind).from_params(spec.params)
    for i, item in enumerate(items):
        try:
            sketch.update(item, weights[i] if weights is not None else 1)
        except SketchError:
            skipped += 1
    return sketch, skipped


class SketchFunction(pulsar.Function):
    def __init__(self) -> None:
        self._spec: SketchSpec | None = None
        self._table: Any = None
        self._claim_tables: dict[int, Any] = {}
        self._swept_bucket: int | None = None  # the bucket whose stale claim tables are gone

    def _setup(self, context: Any) -> SketchSpec:
        if self._spec is None:
            spec = spec_of(context.get_user_config_map())
            if spec is None:
                raise SketchError("this function has no sketch spec in its user config")
            self._spec = spec
        return self._spec

    def _windows(self, context: Any) -> Any:
        if self._table is None:
            self._table = context.ephemeral_state().hash_table(TABLE)
        return self._table

    def process(self, input: Any, context: Any) -> None:
        spec = self._setup(context)
        if isinstance(input, list):
            self._commit(spec, input, context)
        else:
            self.finalize(spec, context, int(time.time() * 1000))
        return None

    # -- a window of this instance ------------------------------------------------------------

    def _claims(self, context: Any) -> claims.Claims:
        def table(bucket: int) -> Any:
            if bucket not in self._claim_tables:
                if len(self._claim_tables) > 2 * claims.KEEP_BUCKETS:  # the oldest are removed
                    del self._claim_tables[min(self._claim_tables)]
                name = claims.table_name(bucket)
                self._claim_tables[bucket] = context.ephemeral_state().hash_table(name)
            return self._claim_tables[bucket]

        return claims.Claims(table)

    def _bucket(self, spec: SketchSpec, now_ms: int) -> int:
        return now_ms // claims.bucket_ms(spec.window_ms, spec.grace_ms)

    def _commit(self, spec: SketchSpec, records: list[Any], context: Any) -> None:
        # Processing-time windows end at multiples of the length; the records' arrival times
        # all fall in (end - length, end], and firing happens at or just after `end`.
        end = (int(time.time() * 1000) // spec.window_ms) * spec.window_ms
        arrived = [getattr(r, "arrival_ms", 0) for r in records]
        if arrived and max(arrived) > 0:
            end = ((max(arrived) - 1) // spec.window_ms + 1) * spec.window_ms
        # Records without a message (a direct call, not the runtime) have no identity to claim.
        named = [(i, claims.record_id(r.message_id)) for i, r in enumerate(records)
                 if getattr(r, "message", None) is not None]
        book = self._claims(context)
        for _ in range(MAX_COMMIT_ATTEMPTS):
            commit_id = claims.new_commit_id(self._bucket(spec, int(time.time() * 1000)))
            claimed = book.claim(commit_id, [rid for _, rid in named])
            counted = {named[n][0] for n in claimed.counted}
            if counted:
                context.record_metric("redelivered_counted_before", len(counted))
            values = [r.value for i, r in enumerate(records) if i not in counted]
            if not values:
                return
            sketch, skipped = partial_of(spec, values)
            window = protocol.commit(self._windows(context), end, spec.window_ms, sketch.to_bytes(), commit_id)
            if window != end:
                context.get_logger().info("window %d was closed: partial moved to %d", end, window)
            if book.mark_committed(commit_id, self._bucket(spec, int(time.time() * 1000))):
                if skipped:
                    context.record_metric("skipped", skipped)
                context.record_metric("records", len(values))
                return
            # Aborted between its slot and its mark (a finalizer sealed the window, or a
            # redelivered record's new owner settled it): the slot will not be merged.
            context.get_logger().info("commit %s was aborted: committing again", commit_id.decode())
            end = window
        raise claims.ClaimsError(f"a window's commit was aborted {MAX_COMMIT_ATTEMPTS} times")

    # -- finalizing ---------------------------------------------------------------------------

    def finalize(self, spec: SketchSpec, context: Any, now_ms: int) -> list[int]:
        """Seal, merge, store and publish every window due at `now_ms`; returns their ends."""
        table = self._windows(context)
        due_until = now_ms - spec.grace_ms
        first = max(protocol.gc_mark(table) + 1, due_until - LOOKBACK_WINDOWS * spec.window_ms)
        first = (first + spec.window_ms - 1) // spec.window_ms * spec.window_ms
        candidates = list(range(first, due_until + 1, spec.window_ms))
        if not candidates:
            return []
        due = protocol.has_commits(table, candidates)
        if not due:
            return []
        try:
            producer = context.get_pulsar_client().create_producer(
                spec.output_topic, producer_name=f"{spec.fqfn}/merged", batching_enabled=False,
                send_timeout_millis=30_000)
        except pulsar.ProducerBusy:
            return []  # another instance is finalizing right now
        done = []
        try:
            last = producer.last_sequence_id()
            for end in due:
                self._finalize_window(spec, context, table, producer, last, end)
                done.append(end)
        finally:
            producer.close()
        self._trim(spec, context)
        self._sweep_claims(spec, context, now_ms)
        return done

    def _finalize_window(self, spec: SketchSpec, context: Any, table: Any, producer: Any, last: int,
                         end: int) -> None:
        key = state_key(end)
        stored = context.get_state(key)
        slots = protocol.seal(table, end)
        fates = self._claims(context).settle([p.commit_id for p in slots if p.commit_id is not None])
        partials = [p.data for p in slots if p.commit_id is None or fates[p.commit_id] == claims.COMMITTED]
        if stored is None:
            cls = registry.kind(spec.kind)
            merged = cls.from_params(spec.params)
            for data in partials:
                merged.merge(cls.from_bytes(data))
            stored = merged.to_bytes()
            context.put_state(key, stored)  # before publishing: a replacement republishes this
        if end > last:
            producer.send(stored, properties={"sketch": spec.fqfn, "kind": spec.kind,
                                              "windowStartMs": str(end - spec.window_ms),
                                              "windowEndMs": str(end), "partials": str(len(partials))},
                          sequence_id=end, event_timestamp=end)
        protocol.collect(table, end, len(slots))

    def _sweep_claims(self, spec: SketchSpec, context: Any, now_ms: int) -> None:
        """Remove the claim tables no claimant reads any more (once per bucket)."""
        bucket = self._bucket(spec, now_ms)
        if self._swept_bucket == bucket:
            return
        space = context.ephemeral_state()
        for stale in claims.stale_buckets([c["name"] for c in space.ls()], bucket):
            self._claim_tables.pop(stale, None)
            space.remove(claims.table_name(stale))
        self._swept_bucket = bucket

    def _trim(self, spec: SketchSpec, context: Any) -> None:
        keys = sorted(context.list_state_keys(STATE_PREFIX))
        for key in keys[: max(len(keys) - spec.retained, 0)]:
            context.delete_state(key)
