"""Per-key limits: requests per minute and tokens per minute (token buckets), and requests in flight at once.

A request reserves its prompt tokens plus its `max_tokens` (times `n`) from the key's token bucket when it is
admitted, and the unused part is given back when it ends, so a key cannot start more work than its budget allows
and is not charged for tokens it did not get. A refusal says how long to wait (`Retry-After`). The clock is
injectable for tests. Everything runs on the server's event loop thread, so no locks are needed."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KeyLimits:
    requests_per_minute: int | None = None  # None: unlimited
    tokens_per_minute: int | None = None
    concurrent: int | None = None


class Refused(Exception):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass
class _Bucket:
    capacity: float
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.capacity / 60.0)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is in the bucket (0 when it is now)."""
        return max(0.0, (amount - self.level) * 60.0 / self.capacity)


@dataclass
class _KeyState:
    requests: _Bucket | None
    tokens: _Bucket | None
    in_flight: int = 0


@dataclass
class Limiter:
    limits: KeyLimits
    clock: Callable[[], float] = time.monotonic
    _keys: dict[str, _KeyState] = field(default_factory=dict)

    def admit(self, key: str, tokens: int) -> None:
        """Take one request and `tokens` from `key`'s budgets, or raise Refused (taking nothing)."""
        state, now = self._state(key), self.clock()
        cap = self.limits.concurrent
        if cap is not None and state.in_flight >= cap:
            raise Refused(f"this key already has {state.in_flight} requests in flight (limit {cap})", 1)
        for bucket, amount, what in ((state.requests, 1, "requests"), (state.tokens, tokens, "tokens")):
            if bucket is None:
                continue
            bucket.refill(now)
            if amount > bucket.capacity:
                raise Refused(f"this request needs {amount} {what}; the key's limit is {bucket.capacity:.0f}/min", 60)
            if bucket.level < amount:
                raise Refused(f"{what} per minute limit reached for this key", bucket.wait_for(amount))
        if state.requests is not None:
            state.requests.level -= 1
        if state.tokens is not None:
            state.tokens.level -= tokens
        state.in_flight += 1

    def release(self, key: str, unused_tokens: int) -> None:
        """The request ended; give back the tokens it reserved and did not use."""
        state = self._state(key)
        state.in_flight = max(0, state.in_flight - 1)
        if state.tokens is not None and unused_tokens > 0:
            state.tokens.level = min(state.tokens.capacity, state.tokens.level + unused_tokens)

    def _state(self, key: str) -> _KeyState:
        if key not in self._keys:
            now = self.clock()
            rpm, tpm = self.limits.requests_per_minute, self.limits.tokens_per_minute
            self._keys[key] = _KeyState(
                _Bucket(rpm, rpm, now) if rpm else None, _Bucket(tpm, tpm, now) if tpm else None
            )
        return self._keys[key]
