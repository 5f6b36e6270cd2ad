"""Dispatch throttling: Pulsar's `dispatchRate` (per topic, every subscription of it together)
and `subscriptionDispatchRate` (each subscription on its own).

A rate is a budget of messages and bytes per period (`ratePeriodInSecond`). A limiter counts
what its dispatchers delivered in the current period (reads are sized to what is left of it,
bytes through the average message size); once either budget is spent they stop
reading and set one timer for the end of the period (never a timer per message, never a
polling loop), and the period that follows starts with a full budget. What a period
overspends (a read is sized by the message budget, so a batch or the byte budget can
overshoot by one read) is not carried over, as in Pulsar.

Periods are not aligned to the clock: one starts when a dispatcher first asks after the
previous one ended, so an idle limiter holds no state worth keeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taureau.broker.policy_json import integer, json_object

UNLIMITED = 2**62  # the budget of a limiter with no rate: larger than any read


@dataclass(slots=True, frozen=True)
class DispatchRate:
    """Pulsar's DispatchRate JSON: -1 (or 0) for no limit on messages or bytes."""

    dispatchThrottlingRateInMsg: int = -1  # noqa: N815 - Pulsar's JSON field names
    dispatchThrottlingRateInByte: int = -1  # noqa: N815
    ratePeriodInSecond: int = 1  # noqa: N815

    @classmethod
    def from_json(cls, data: Any) -> DispatchRate:
        json_object(data, {"dispatchThrottlingRateInMsg", "dispatchThrottlingRateInByte", "ratePeriodInSecond",
                           "relativeToPublishRate"}, "dispatch rate")
        if data.get("relativeToPublishRate"):
            raise ValueError("relativeToPublishRate is not supported")
        unlimited = " (-1: no limit)"
        return cls(
            integer(data.get("dispatchThrottlingRateInMsg", -1), "dispatchThrottlingRateInMsg", -1, 2**31 - 1, unlimited),
            integer(data.get("dispatchThrottlingRateInByte", -1), "dispatchThrottlingRateInByte", -1, 2**63 - 1,
                    unlimited),
            integer(data.get("ratePeriodInSecond", 1), "ratePeriodInSecond", 1, 86_400, " seconds"),
        )

    def to_json(self) -> dict[str, Any]:
        return {"dispatchThrottlingRateInMsg": self.dispatchThrottlingRateInMsg,
                "dispatchThrottlingRateInByte": self.dispatchThrottlingRateInByte,
                "ratePeriodInSecond": self.ratePeriodInSecond, "relativeToPublishRate": False}

    @property
    def limited(self) -> bool:
        return self.dispatchThrottlingRateInMsg > 0 or self.dispatchThrottlingRateInByte > 0


@dataclass(slots=True)
class DispatchRates:
    """The rates in force on one topic (its own, else its namespace's); the broker service
    sets them, the limiters read them at each period."""

    topic: DispatchRate | None = None
    subscription: DispatchRate | None = None  # each subscription's, unless it has its own
    own: dict[str, DispatchRate] = field(default_factory=dict)  # subscription -> its own rate
    # Whether any of them limits anything: when none does (nearly always) a dispatch round
    # asks no limiter. Kept by `set`, the one way the rates change after construction.
    limited: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        self.set(self.topic, self.subscription, self.own)

    def set(self, topic: DispatchRate | None, subscription: DispatchRate | None, own: dict[str, DispatchRate]) -> None:
        self.topic, self.subscription, self.own = topic, subscription, own
        self.limited = any(rate is not None and rate.limited for rate in (topic, subscription, *own.values()))

    def of_subscription(self, name: str) -> DispatchRate | None:
        return self.own.get(name, self.subscription)


class DispatchRateLimiter:
    """Messages and bytes delivered in the current period, against the rate `rate()` says."""

    def __init__(self, rate: Callable[[], DispatchRate | None]) -> None:
        self._rate = rate
        self.period_end = float("-inf")  # loop time the current period ends
        self._messages = 0
        self._bytes = 0
        self._message_size = 1024.0  # running average, turns a byte budget into messages

    def room(self, now: float) -> int:
        """Messages that may still go out in this period (0: wait until `period_end`)."""
        rate = self._rate()
        if rate is None or not rate.limited:
            return UNLIMITED
        if now >= self.period_end:
            self.period_end = now + rate.ratePeriodInSecond
            self._messages = self._bytes = 0
        room = UNLIMITED
        max_bytes = rate.dispatchThrottlingRateInByte
        if max_bytes > 0:
            left = max_bytes - self._bytes
            if left <= 0:
                return 0
            room = max(1, int(left / self._message_size))  # reads are sized in messages
        max_messages = rate.dispatchThrottlingRateInMsg
        return min(room, max(max_messages - self._messages, 0)) if max_messages > 0 else room

    def consume(self, messages: int, size: int) -> None:
        self._messages += messages
        self._bytes += size
        if messages > 0:
            self._message_size = 0.8 * self._message_size + 0.2 * (size / messages)


class DispatchThrottle:
    """A dispatcher's view of the limiters that apply to it (its topic's, its subscription's)."""

    def __init__(self) -> None:
        self.limiters: tuple[DispatchRateLimiter, ...] = ()  # set by the subscription
        # The rates the limiters read, when they all read one topic's (set with them): while
        # none is limited, budget and consume skip the limiters. With 1,000 topics, asking
        # two unlimited limiters was 4% of the broker's time per message (py-spy).
        self.rates: DispatchRates | None = None
        self._timer: asyncio.TimerHandle | None = None  # the one pending end-of-period wake

    def _unlimited(self) -> bool:
        rates = self.rates
        return not self.limiters or (rates is not None and not rates.limited)

    def budget(self, loop: asyncio.AbstractEventLoop | None, wake: Callable[[], None]) -> int:
        """Messages the dispatcher may send now. At 0, `wake` is called once when the
        period that is spent ends."""
        if loop is None or self._unlimited():
            return UNLIMITED
        now = loop.time()
        budget = UNLIMITED
        resume = now
        for limiter in self.limiters:
            room = limiter.room(now)
            if room <= 0:
                resume = max(resume, limiter.period_end)
            budget = min(budget, room)
        if budget <= 0 and self._timer is None:
            self._timer = loop.call_at(resume, self._resume, wake)
        return budget

    def _resume(self, wake: Callable[[], None]) -> None:
        self._timer = None
        wake()

    def consume(self, messages: int, size: int) -> None:
        if self._unlimited():
            return  # uncounted while nothing limits: a limit applies from when it is set, as in Pulsar
        for limiter in self.limiters:
            limiter.consume(messages, size)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
