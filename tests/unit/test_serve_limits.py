"""Per-key token buckets and concurrency caps, on a fake clock."""

from __future__ import annotations

import pytest

from tunesmith.serve.limits import KeyLimits, Limiter, Refused

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_refill_and_say_when_to_retry():
    clock = Clock()
    limiter = Limiter(KeyLimits(requests_per_minute=2), clock)
    limiter.admit("a", 0)
    limiter.admit("a", 0)
    with pytest.raises(Refused) as refused:
        limiter.admit("a", 0)
    assert refused.value.retry_after == 30  # one request comes back every 30 s at 2/min
    limiter.admit("b", 0)  # another key has its own bucket
    clock.now = 30.0
    limiter.admit("a", 0)


def test_tokens_are_reserved_then_the_unused_part_returned():
    clock = Clock()
    limiter = Limiter(KeyLimits(tokens_per_minute=100), clock)
    limiter.admit("a", 80)
    with pytest.raises(Refused):
        limiter.admit("a", 30)
    limiter.release("a", 50)  # used 30 of the 80 reserved
    limiter.admit("a", 30)
    with pytest.raises(Refused) as too_big:
        limiter.admit("a", 101)
    assert "limit is 100/min" in str(too_big.value) and too_big.value.retry_after == 60


def test_concurrency_cap_per_key_and_refusals_take_nothing():
    limiter = Limiter(KeyLimits(requests_per_minute=10, concurrent=1), Clock())
    limiter.admit("a", 0)
    with pytest.raises(Refused, match="in flight"):
        limiter.admit("a", 0)
    limiter.release("a", 0)
    limiter.admit("a", 0)
    assert limiter._keys["a"].requests.level == pytest.approx(8)  # the refused request took no request


def test_no_limits_admit_everything():
    limiter = Limiter(KeyLimits(), Clock())
    for _ in range(1000):
        limiter.admit("a", 10**6)
