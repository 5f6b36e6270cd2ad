"""The dispatch rate limiter and throttle: budgets per period, one wake-up per spent period."""

from __future__ import annotations

import asyncio

import pytest

from taureau.broker.dispatch.rate import (
    UNLIMITED,
    DispatchRate,
    DispatchRateLimiter,
    DispatchRates,
    DispatchThrottle,
)
from taureau.broker.subscription import SubType
from taureau.storage.managed_ledger.api import InitialPosition
from tests.broker.test_dispatch import Sink, consumer, publish, settle


def test_a_budget_is_spent_and_renewed_each_period():
    rate = DispatchRate(dispatchThrottlingRateInMsg=10, ratePeriodInSecond=2)
    limiter = DispatchRateLimiter(lambda: rate)
    assert limiter.room(100.0) == 10
    limiter.consume(7, 70)
    assert limiter.room(101.0) == 3
    limiter.consume(5, 50)  # a read may overshoot: not carried over
    assert limiter.room(101.9) == 0 and limiter.period_end == 102.0
    assert limiter.room(102.0) == 10


def test_a_byte_budget_sizes_reads_by_the_average_message():
    rate = DispatchRate(dispatchThrottlingRateInByte=1000)
    limiter = DispatchRateLimiter(lambda: rate)
    limiter.room(0.0)
    limiter.consume(4, 400)
    assert 0 < limiter.room(0.1) < 600  # fewer messages than 600 bytes would be at 1 byte each
    limiter.consume(10, 1000)
    assert limiter.room(0.2) == 0


def test_no_rate_is_unlimited():
    assert DispatchRateLimiter(lambda: None).room(0.0) == UNLIMITED
    assert DispatchRateLimiter(lambda: DispatchRate()).room(0.0) == UNLIMITED


def test_rates_say_whether_any_of_them_limits():
    rates = DispatchRates()
    assert not rates.limited
    rates.set(None, DispatchRate(), {"s": DispatchRate(dispatchThrottlingRateInByte=-1)})
    assert not rates.limited  # -1 everywhere: no limit
    rates.set(None, None, {"s": DispatchRate(dispatchThrottlingRateInMsg=3)})
    assert rates.limited  # one subscription's own rate is enough
    rates.set(None, None, {})
    assert not rates.limited
    assert DispatchRates(topic=DispatchRate(dispatchThrottlingRateInByte=100)).limited


def test_a_throttle_asks_no_limiter_while_its_rates_limit_nothing():
    asked: list[str] = []
    rates = DispatchRates()

    def topic_rate() -> DispatchRate | None:
        asked.append("topic")
        return rates.topic

    throttle = DispatchThrottle()
    throttle.limiters, throttle.rates = (DispatchRateLimiter(topic_rate),), rates
    loop = asyncio.new_event_loop()
    try:
        assert throttle.budget(loop, lambda: None) == UNLIMITED
        throttle.consume(5, 500)
        assert asked == []
        rates.set(DispatchRate(dispatchThrottlingRateInMsg=2), None, {})
        assert throttle.budget(loop, lambda: None) == 2 and asked == ["topic"]
        throttle.consume(2, 20)
        assert throttle.budget(loop, lambda: None) == 0  # what went out unlimited did not count
        throttle.close()
    finally:
        loop.close()


def test_a_spent_throttle_sets_one_timer_and_wakes_at_the_period_end():
    async def scenario() -> tuple[int, list[float]]:
        loop = asyncio.get_running_loop()
        rate = DispatchRate(dispatchThrottlingRateInMsg=1)
        throttle = DispatchThrottle()
        throttle.limiters = (DispatchRateLimiter(lambda: rate),)
        wakes: list[float] = []
        started = loop.time()
        assert throttle.budget(loop, lambda: wakes.append(loop.time())) == 1
        throttle.consume(1, 10)
        spent = [throttle.budget(loop, lambda: wakes.append(loop.time())) for _ in range(100)]
        timers = len(loop._scheduled)  # type: ignore[attr-defined]
        await asyncio.sleep(1.2)
        throttle.close()
        return timers, [w - started for w in wakes] + [max(spent)]

    timers, result = asyncio.run(scenario())
    assert timers == 1  # 100 refused asks, one timer
    *wakes, most = result
    assert most == 0 and len(wakes) == 1 and 0.95 <= wakes[0] <= 1.15


@pytest.mark.anyio
async def test_a_throttled_dispatcher_sleeps_until_the_next_period(topic):  # noqa: F811 - the fixture
    rates = topic.dispatch_rates
    rates.set(DispatchRate(dispatchThrottlingRateInMsg=5), rates.subscription, rates.own)
    sink = Sink()
    c = consumer(sink, 1)
    await topic.subscribe(subscription="s", consumer=c, sub_type=SubType.SHARED,
                          initial_position=InitialPosition.EARLIEST)
    dispatcher = topic.subscriptions["s"].dispatcher
    rounds = 0
    dispatch_once = dispatcher._dispatch_once

    async def counted() -> bool:
        nonlocal rounds
        rounds += 1
        return await dispatch_once()

    dispatcher._dispatch_once = counted
    await publish(topic, *[b"m"] * 20)
    topic.subscriptions["s"].flow(c, 100)
    await settle()
    assert len(sink.messages) == 5
    before = rounds
    await asyncio.sleep(0.4)
    assert rounds == before  # spent: no round runs until the period ends (no polling)
    await asyncio.sleep(0.8)
    assert len(sink.messages) == 10  # the next period's budget, and no more
