"""The publish rate limiter's arithmetic, on a clock the test moves."""

from __future__ import annotations

import pytest

from taureau.broker.rate_limit import PublishRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_seconds_budget_passes_then_the_debt_is_the_wait():
    clock = Clock()
    limiter = PublishRateLimiter(10, -1, clock)
    assert [limiter.record(1, 100) for _ in range(10)] == [0.0] * 10
    assert limiter.record(5, 100) == pytest.approx(0.5)  # 5 messages over at 10/s
    clock.now += 0.5
    assert limiter.record(1, 100) == pytest.approx(0.1)  # the debt was paid; one more is over
    clock.now += 10  # idle: the bucket refills to one second's budget, no more
    assert limiter.record(10, 0) == 0.0
    assert limiter.record(1, 0) == pytest.approx(0.1)


def test_bytes_and_messages_each_limit_and_the_longer_wait_wins():
    clock = Clock()
    limiter = PublishRateLimiter(100, 1000, clock)
    assert limiter.record(1, 3000) == pytest.approx(2.0)  # one big message: two seconds of bytes
    limiter.set_rates(-1, -1)
    assert limiter.record(10_000, 10**9) == 0.0  # no limits
