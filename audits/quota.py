"""The AI provider's quota, shared by every audit worker through Redis: token buckets for
requests and tokens per minute, an adaptive limit of calls in flight (AIMD) with leases, and
the backoff between retries. The rule it keeps: no call reaches the provider unless Redis
said yes, so a Redis outage slows audits down (callers wait, then re-queue) and never lets
them run unthrottled into the provider's quota.

State is keyed per provider and model (`quota_name`), under `<prefix>:quota:<provider>:<model>:`.
Names come from configuration (`AUDIT_MODELS`), never from a tenant's free input. Every read
and write of shared state is one Lua script, timed by Redis's own clock (`TIME`), so
concurrent workers cannot both take the last unit and their clocks do not matter.

Decisions, with their reasons:
- Buckets start full, hold `*_burst` (default: the per-minute amount) and refill
  continuously at the per-minute rate. A full bucket lets `burst` go at once, so any
  60-second window can see up to burst + the per-minute amount (twice the rate with the
  defaults); pass a smaller burst when the provider counts per sliding minute.
- A request for more tokens than the token bucket holds is admitted once the bucket is
  full and charged in full: the level goes negative and later callers wait for that debt to
  refill. Refusing it would stall the audit for ever; clamping it would hide tokens from the
  count. The average stays at the configured rate either way. Callers should keep batches
  under the capacity (a big batch waits for a full bucket, and small ones may pass first).
- A refused `try_acquire` takes nothing from either bucket, and answers how long until both
  would have enough (a lower bound when others are waiting too).
- A lease is a member of a sorted set scored by its expiry: a worker killed mid-call holds
  its slot only until then. Expired leases are purged by every script before counting.
- A 429 halves the limit at most once per generation: each lease carries the generation in
  which it was taken, and only a 429 on a lease of the current generation halves (and
  starts the next one). The N calls in flight during one burst of 429s halve it once.
  Successes count towards recovery only for leases of the current generation that were
  still held (a late or repeated release does not count). Other errors neither count nor
  reset the count: a malformed answer says nothing about the quota.
- `Retry-After` becomes a shared pause that every acquire honours, capped by
  `max_pause_seconds` so a bogus header cannot stop audits for a day.
- The learned limit is forgotten after `idle_reset_seconds` without any call (the next
  audit starts again at `initial`); buckets' keys expire once they would be full again.

Redis unavailable (fail closed: the caller waits and re-queues its message):
- `TokenBuckets.try_acquire` and `AdaptiveConcurrency.try_acquire` answer "wait
  `unavailable_retry_seconds`" and take nothing; `acquire` therefore retries within its
  `max_wait` and then gives up (False / None).
- `AdaptiveConcurrency.release` logs and returns: the call already happened, and its slot
  comes back by itself when the lease expires (the outcome is lost).
- `state()` returns None (unknown), for the metrics to skip.
A failing call lasts as long as the client's own retries (the project's client keeps
redis-py's default of three, about 4 s against a closed port), which `max_wait` cannot cut.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

import redis
import structlog

from nexus.redis import get_redis, redis_key

log = structlog.get_logger(__name__)

_UNAVAILABLE = (redis.RedisError, OSError)
# Spreads retries; not a secret.
_jitter_rng = random.Random()  # noqa: S311  # nosec B311


def quota_name(*, provider: str, model: str) -> str:
    """The shared quota's name for a provider's model: one set of buckets and one limit per pair."""
    if not provider or not model:
        raise ValueError("provider and model are required")
    return f"{provider}:{model}"


def _run(client: redis.Redis, source: str, keys: list[str], args: list) -> object:
    # register_script sends EVALSHA and loads the script on NOSCRIPT (a restarted Redis).
    return client.register_script(source)(keys=keys, args=args)


def _text(value: bytes | str) -> str:
    # The project's client answers bytes; a client made with decode_responses answers str.
    return value.decode() if isinstance(value, bytes) else value


def _unavailable(operation: str, name: str, exc: BaseException) -> None:
    log.warning("audit.quota_unavailable", operation=operation, quota=name, error=type(exc).__name__)


# --- Token buckets ----------------------------------------------------------------------------

# KEYS[1]: a hash {requests, tokens, at (ms)}; absent means both buckets are full.
# ARGV: requests per ms, request capacity, tokens per ms, token capacity, tokens wanted
# (-1: only read the levels). Returns the whole milliseconds to wait, 0 when taken; or the
# two levels when reading.
_BUCKETS = """
local key = KEYS[1]
local req_rate, req_cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local tok_rate, tok_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local want = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local requests, tokens = req_cap, tok_cap
local saved = redis.call('HMGET', key, 'requests', 'tokens', 'at')
if saved[3] then
  local elapsed = math.max(0, now - tonumber(saved[3]))
  requests = math.min(req_cap, tonumber(saved[1]) + elapsed * req_rate)
  tokens = math.min(tok_cap, tonumber(saved[2]) + elapsed * tok_rate)
end
if want < 0 then
  return {string.format('%.6f', requests), string.format('%.6f', tokens)}
end
local wait = 0
if requests < 1 then wait = (1 - requests) / req_rate end
local needed = math.min(want, tok_cap)
if tokens < needed then wait = math.max(wait, (needed - tokens) / tok_rate) end
if wait > 0 then return math.max(1, math.ceil(wait)) end
requests = requests - 1
tokens = tokens - want
redis.call('HSET', key, 'requests', string.format('%.6f', requests),
  'tokens', string.format('%.6f', tokens), 'at', string.format('%.3f', now))
local full_in = math.max((req_cap - requests) / req_rate, (tok_cap - tokens) / tok_rate)
redis.call('PEXPIRE', key, math.ceil(full_in) + 1000)
return 0
"""


@dataclass(frozen=True)
class BucketLevels:
    requests: float
    tokens: float  # negative while a request larger than the capacity is being paid back


class TokenBuckets:
    """One request and its estimated tokens, taken together from a requests-per-minute and a
    tokens-per-minute bucket, or not at all."""

    def __init__(
        self,
        name: str,
        *,
        requests_per_minute: float,
        tokens_per_minute: float,
        requests_burst: float | None = None,
        tokens_burst: float | None = None,
        max_step_seconds: float = 1.0,
        unavailable_retry_seconds: float = 5.0,
        client: redis.Redis | None = None,
    ) -> None:
        if not name:
            raise ValueError("a quota needs a name")
        if requests_per_minute <= 0 or tokens_per_minute <= 0:
            raise ValueError("requests_per_minute and tokens_per_minute must be positive")
        self.requests_burst = requests_per_minute if requests_burst is None else requests_burst
        self.tokens_burst = tokens_per_minute if tokens_burst is None else tokens_burst
        if self.requests_burst < 1 or self.tokens_burst < 1:
            raise ValueError("a bucket must hold at least one request and one token")
        if max_step_seconds <= 0 or unavailable_retry_seconds <= 0:
            raise ValueError("max_step_seconds and unavailable_retry_seconds must be positive")
        self.name = name
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.max_step_seconds = max_step_seconds
        self.unavailable_retry_seconds = unavailable_retry_seconds
        self._client = client
        self.key = redis_key("quota", name, "buckets")

    def _args(self, want: int) -> list:
        return [
            repr(self.requests_per_minute / 60_000),
            repr(float(self.requests_burst)),
            repr(self.tokens_per_minute / 60_000),
            repr(float(self.tokens_burst)),
            want,
        ]

    def try_acquire(self, tokens: int) -> float:
        """0 when one request and `tokens` were taken; else the seconds until both buckets
        would have enough, nothing taken (Redis unavailable: `unavailable_retry_seconds`)."""
        if tokens < 0:
            raise ValueError("tokens must not be negative")
        try:
            wait_ms = _run(self._client or get_redis(), _BUCKETS, [self.key], self._args(int(tokens)))
        except _UNAVAILABLE as exc:
            _unavailable("buckets.acquire", self.name, exc)
            return self.unavailable_retry_seconds
        return int(wait_ms) / 1000

    def acquire(self, tokens: int, *, max_wait: float) -> bool:
        """Take one request and `tokens`, sleeping at most `max_wait` seconds in steps of at
        most `max_step_seconds`. False, at once, as soon as the wait is known to be longer
        than what is left of `max_wait`: the caller re-queues its work with a countdown."""
        deadline = time.monotonic() + max_wait
        while True:
            wait = self.try_acquire(tokens)
            if wait == 0:
                return True
            if wait > deadline - time.monotonic():
                return False
            time.sleep(min(wait, self.max_step_seconds))

    def state(self) -> BucketLevels | None:
        """What the buckets hold now; None when Redis does not answer."""
        try:
            requests, tokens = _run(self._client or get_redis(), _BUCKETS, [self.key], self._args(-1))
        except _UNAVAILABLE as exc:
            _unavailable("buckets.state", self.name, exc)
            return None
        return BucketLevels(requests=float(requests), tokens=float(tokens))


# --- Adaptive concurrency ---------------------------------------------------------------------

# KEYS[1]: a hash {limit, generation, pause_until (ms), successes}; KEYS[2]: the leases, a
# sorted set of "<generation>:<random id>" scored by expiry (ms). Both scripts purge expired
# leases first and keep the stored limit within [minimum, maximum] (settings may change).
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local initial, minimum, maximum = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local saved = redis.call('HMGET', KEYS[1], 'limit', 'generation', 'pause_until', 'successes')
local limit = math.min(maximum, math.max(minimum, tonumber(saved[1]) or initial))
local generation = tonumber(saved[2]) or 0
local pause_until = tonumber(saved[3]) or 0
local successes = tonumber(saved[4]) or 0
"""

# ARGV[4]: lease ms, ARGV[5]: random id, ARGV[6]: idle ms.
# Returns {1, lease id} or {0, ms to wait, 'paused' | 'full'}.
_ACQUIRE = (
    _PRELUDE
    + """
if pause_until > now then return {0, pause_until - now, 'paused'} end
if redis.call('ZCARD', KEYS[2]) >= limit then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(first[2]) - now), 'full'}
end
local id = string.format('%d:%s', generation, ARGV[5])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), id)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[2], tonumber(last[2]) - now + 1000)
redis.call('HSET', KEYS[1], 'limit', limit, 'generation', generation)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
return {1, id}
"""
)

# ARGV[4]: lease id, ARGV[5]: outcome, ARGV[6]: recover_after, ARGV[7]: pause ms (0: none),
# ARGV[8]: idle ms. Returns {limit before, limit after}.
_RELEASE = (
    _PRELUDE
    + """
local held = redis.call('ZREM', KEYS[2], ARGV[4])
local lease_generation = tonumber(string.match(ARGV[4], '^(%d+):'))
local before = limit
if ARGV[5] == 'throttled' then
  successes = 0
  if lease_generation == generation then
    limit = math.max(minimum, math.floor(limit / 2))
    generation = generation + 1
  end
  local pause_ms = tonumber(ARGV[7])
  if pause_ms > 0 then pause_until = math.max(pause_until, now + pause_ms) end
elseif ARGV[5] == 'ok' and held == 1 and lease_generation == generation then
  successes = successes + 1
  if successes >= tonumber(ARGV[6]) then
    successes = 0
    limit = math.min(maximum, limit + 1)
  end
end
redis.call('HSET', KEYS[1], 'limit', limit, 'generation', generation,
  'pause_until', pause_until, 'successes', successes)
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[8]), pause_until - now + 1000))
return {before, limit}
"""
)

# Returns {limit, in flight, pause ms remaining}.
_STATE = (
    _PRELUDE
    + """
return {limit, redis.call('ZCARD', KEYS[2]), math.max(0, pause_until - now)}
"""
)


class Outcome(StrEnum):
    OK = "ok"  # the provider answered
    THROTTLED = "throttled"  # the provider answered 429
    ERROR = "error"  # anything else: the slot comes back, the limit is unchanged


@dataclass(frozen=True)
class Lease:
    id: str


@dataclass(frozen=True)
class ConcurrencyState:
    limit: int
    in_flight: int
    pause_remaining: float  # seconds


class AdaptiveConcurrency:
    """A limit of provider calls in flight shared by every worker: halved on a 429, raised by
    one after `recover_after` successes, between `minimum` and `maximum`."""

    def __init__(
        self,
        name: str,
        *,
        initial: int,
        minimum: int = 1,
        maximum: int,
        recover_after: int,
        max_pause_seconds: float = 300.0,
        idle_reset_seconds: float = 3600.0,
        poll_seconds: float = 0.1,
        unavailable_retry_seconds: float = 5.0,
        client: redis.Redis | None = None,
    ) -> None:
        if not name:
            raise ValueError("a quota needs a name")
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        if recover_after < 1:
            raise ValueError("recover_after must be at least 1")
        if min(max_pause_seconds, idle_reset_seconds, poll_seconds, unavailable_retry_seconds) <= 0:
            raise ValueError("durations must be positive")
        self.name = name
        self.initial, self.minimum, self.maximum = initial, minimum, maximum
        self.recover_after = recover_after
        self.max_pause_seconds = max_pause_seconds
        self.idle_reset_seconds = idle_reset_seconds
        self.poll_seconds = poll_seconds
        self.unavailable_retry_seconds = unavailable_retry_seconds
        self._idle_ms = math.ceil(idle_reset_seconds * 1000)
        self._client = client
        self.keys = [redis_key("quota", name, "concurrency"), redis_key("quota", name, "leases")]

    def _script(self, source: str, *args: object) -> object:
        bounds = [self.initial, self.minimum, self.maximum]
        return _run(self._client or get_redis(), source, self.keys, [*bounds, *args])

    def try_acquire(self, lease_seconds: float) -> Lease | float:
        """A slot held for at most `lease_seconds`; else the seconds to wait: the shared pause's
        remainder, or (all slots taken) until the first lease expires, at most `poll_seconds`,
        since a release may come sooner (Redis unavailable: `unavailable_retry_seconds`)."""
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        try:
            answer = self._script(_ACQUIRE, math.ceil(lease_seconds * 1000), uuid.uuid4().hex, self._idle_ms)
        except _UNAVAILABLE as exc:
            _unavailable("concurrency.acquire", self.name, exc)
            return self.unavailable_retry_seconds
        if int(answer[0]) == 1:
            return Lease(id=_text(answer[1]))
        wait = int(answer[1]) / 1000
        return wait if _text(answer[2]) == "paused" else min(wait, self.poll_seconds)

    def acquire(self, lease_seconds: float, *, max_wait: float = 0.0) -> Lease | None:
        """A slot, waiting at most `max_wait` seconds for one; None (at once when the wait is
        known to be longer, such as a pause) tells the caller to re-queue with a countdown."""
        deadline = time.monotonic() + max_wait
        while True:
            answer = self.try_acquire(lease_seconds)
            if isinstance(answer, Lease):
                return answer
            if answer > deadline - time.monotonic():
                return None
            time.sleep(answer)

    def release(self, lease: Lease, outcome: Outcome | str, *, retry_after: float | None = None) -> None:
        """Give the slot back and tell what the call met; `retry_after` (seconds, from the 429's
        header) pauses every acquirer, for at most `max_pause_seconds`."""
        outcome = Outcome(outcome)
        pause = 0.0
        if outcome is Outcome.THROTTLED and retry_after is not None:
            pause = min(max(0.0, retry_after), self.max_pause_seconds)
        try:
            before, after = self._script(
                _RELEASE, lease.id, outcome.value, self.recover_after, math.ceil(pause * 1000), self._idle_ms
            )
        except _UNAVAILABLE as exc:
            _unavailable("concurrency.release", self.name, exc)
            return
        if before != after:
            log.info("audit.concurrency_limit_changed", quota=self.name, limit=after, previous=before)

    def state(self) -> ConcurrencyState | None:
        """The limit, the calls in flight and the pause's remainder; None when Redis does not answer."""
        try:
            limit, in_flight, pause_ms = self._script(_STATE)
        except _UNAVAILABLE as exc:
            _unavailable("concurrency.state", self.name, exc)
            return None
        return ConcurrencyState(
            limit=int(limit), in_flight=int(in_flight), pause_remaining=int(pause_ms) / 1000
        )


# --- Backoff ----------------------------------------------------------------------------------


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempt` (0 for the first): uniform between 0 and
    min(cap, base * 2**attempt) ("full jitter", so the retries of many workers spread out
    instead of arriving together). Never more than `cap`."""
    if attempt < 0 or base <= 0 or cap < 0:
        raise ValueError("need attempt >= 0, base > 0 and cap >= 0")
    ceiling = min(cap, base * 2 ** min(attempt, 64))
    return (rng or _jitter_rng).uniform(0, ceiling)
