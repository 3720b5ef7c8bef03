"""The shared provider quota against the real Redis: buckets refill at their rate and are
taken atomically across threads and processes; the concurrency limit holds, halves once per
burst of 429s, recovers by one, honours the shared pause and gets killed workers' slots back;
a Redis that does not answer means waiting, never calling the provider unthrottled."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from audits.quota import (
    AdaptiveConcurrency,
    Lease,
    TokenBuckets,
    backoff_delay,
    quota_name,
)
from nexus.redis import get_redis, redis_key
from nexus.tests.live import free_port

_fork = multiprocessing.get_context("fork")


@pytest.fixture
def name():
    """A quota of this test's own; its keys (and only they) are deleted afterwards."""
    name = quota_name(provider=f"test-{uuid.uuid4().hex[:12]}", model="model")
    yield name
    keys = list(get_redis().scan_iter(match=redis_key("quota", name) + ":*"))
    if keys:
        get_redis().delete(*keys)


@pytest.fixture
def closed_port_client():
    """A client of a Redis that is not there (nothing listens on the port). Without the
    client's own retries, which would only make each refusal slower."""
    client = redis.Redis(
        host="127.0.0.1",
        port=free_port(),
        socket_connect_timeout=0.2,
        socket_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    yield client
    client.close()


def _race(take, *, threads: int, processes: int) -> int:
    """Run `take()` (True when it got something) from `threads` threads in this process and in
    each of `processes` forked ones, all released together; the number of successes."""
    start = _fork.Event()
    results = _fork.Queue()

    def in_threads() -> int:
        def worker(_):
            start.wait(10)
            return take()

        with ThreadPoolExecutor(max_workers=threads) as pool:
            return sum(pool.map(worker, range(threads)))

    def child():
        results.put(in_threads())

    children = [_fork.Process(target=child) for _ in range(processes)]
    for process in children:
        process.start()
    timer = threading.Timer(0.2, start.set)  # the children are waiting by then
    timer.start()
    total = in_threads()
    total += sum(results.get(timeout=20) for _ in children)
    for process in children:
        process.join(10)
        assert process.exitcode == 0
    return total


# --- Token buckets ----------------------------------------------------------------------------


def test_the_keys_are_per_provider_and_model(name):
    buckets = TokenBuckets(name, requests_per_minute=1, tokens_per_minute=1)
    concurrency = AdaptiveConcurrency(name, initial=1, maximum=1, recover_after=1)
    assert buckets.key == redis_key("quota", name, "buckets")
    assert buckets.key.endswith(f":quota:{name}:buckets")
    assert quota_name(provider="gemini", model="gemini-2.5-flash") == "gemini:gemini-2.5-flash"
    assert concurrency.keys == [redis_key("quota", name, "concurrency"), redis_key("quota", name, "leases")]


def test_buckets_start_full_with_the_per_minute_amount(name):
    buckets = TokenBuckets(name, requests_per_minute=30, tokens_per_minute=1000)
    assert (buckets.state().requests, buckets.state().tokens) == (30, 1000)
    assert [buckets.try_acquire(10) for _ in range(30)] == [0] * 30
    assert buckets.try_acquire(0) > 0  # the 31st request waits (a refill of 0.5 per second)
    assert 700 <= buckets.state().tokens <= 705


def test_requests_refill_at_the_configured_rate(name):
    buckets = TokenBuckets(name, requests_per_minute=600, tokens_per_minute=10**6, requests_burst=5)
    assert [buckets.try_acquire(1) for _ in range(5)] == [0] * 5
    wait = buckets.try_acquire(1)
    assert 0 < wait <= 0.1  # one request every 0.1 s
    started = time.monotonic()
    taken = 0
    while time.monotonic() - started < 1.0:
        taken += buckets.acquire(1, max_wait=0.5)
    elapsed = time.monotonic() - started
    # The bucket was empty: at most the refill of the elapsed time (and the one in progress).
    assert taken <= 10 * elapsed + 1
    assert taken >= 10 * elapsed * 0.5


def test_tokens_refill_and_a_refusal_takes_nothing(name):
    buckets = TokenBuckets(name, requests_per_minute=60, tokens_per_minute=6000, tokens_burst=100)
    assert buckets.try_acquire(100) == 0
    before = buckets.state()
    wait = buckets.try_acquire(50)
    after = buckets.state()
    assert 0.3 < wait <= 0.5  # 50 tokens at 100 per second, less what refilled meanwhile
    # Neither the request nor the tokens were taken: the levels only refilled.
    assert after.requests >= before.requests
    assert after.tokens >= before.tokens
    time.sleep(wait + 0.02)
    assert buckets.try_acquire(50) == 0


def test_an_empty_request_bucket_refuses_and_keeps_the_tokens(name):
    buckets = TokenBuckets(name, requests_per_minute=1, tokens_per_minute=1000, requests_burst=1)
    assert buckets.try_acquire(10) == 0
    wait = buckets.try_acquire(10)
    assert 55 < wait <= 60
    assert 990 <= buckets.state().tokens <= 991


def test_more_tokens_than_the_capacity_wait_for_a_full_bucket_and_are_paid_back(name):
    buckets = TokenBuckets(name, requests_per_minute=600, tokens_per_minute=6000, tokens_burst=100)
    assert buckets.try_acquire(50) == 0
    assert 0.3 < buckets.try_acquire(250) <= 0.5  # until the bucket is full again
    time.sleep(0.52)
    assert buckets.try_acquire(250) == 0  # admitted full, charged in full
    assert -151 <= buckets.state().tokens <= -140
    assert 1.3 < buckets.try_acquire(1) <= 1.52  # the debt of 150, then one token


def test_acquire_gives_up_at_once_when_the_wait_is_longer_than_allowed(name):
    buckets = TokenBuckets(name, requests_per_minute=1, tokens_per_minute=1000, requests_burst=1)
    assert buckets.acquire(1, max_wait=0) is True
    started = time.monotonic()
    assert buckets.acquire(1, max_wait=2) is False
    assert time.monotonic() - started < 1.5  # it did not sleep out the 2 s allowed


def test_acquire_waits_for_the_refill_in_bounded_steps(name):
    buckets = TokenBuckets(
        name, requests_per_minute=200, tokens_per_minute=1000, requests_burst=1, max_step_seconds=0.1
    )
    assert buckets.acquire(1, max_wait=0) is True
    started = time.monotonic()
    assert buckets.acquire(1, max_wait=2) is True  # one request every 0.3 s
    assert time.monotonic() - started > 0.2  # it waited for the refill


def test_the_key_expires_once_the_buckets_would_be_full_again(name):
    buckets = TokenBuckets(name, requests_per_minute=60, tokens_per_minute=600, tokens_burst=100)
    assert buckets.try_acquire(50) == 0  # 5 s of tokens to refill
    ttl = get_redis().pttl(buckets.key)
    assert 5000 < ttl <= 6000


def test_racing_threads_and_processes_never_take_more_than_the_requests_capacity(name):
    config = {"requests_per_minute": 1, "tokens_per_minute": 10**6, "requests_burst": 20}

    def take() -> int:
        buckets = TokenBuckets(name, **config)
        return sum(buckets.try_acquire(1) == 0 for _ in range(15))

    # 3 processes x 6 threads x 15 attempts = 270 attempts for 20 requests (refill: 1 a minute).
    assert _race(take, threads=6, processes=2) == 20


def test_racing_threads_and_processes_never_take_more_than_the_tokens_capacity(name):
    config = {"requests_per_minute": 10**6, "tokens_per_minute": 1, "tokens_burst": 100}

    def take() -> int:
        buckets = TokenBuckets(name, **config)
        return sum(buckets.try_acquire(7) == 0 for _ in range(15))

    assert _race(take, threads=6, processes=2) == 14  # 14 x 7 = 98 of 100 tokens
    assert 1 < TokenBuckets(name, **config).state().tokens < 3


# --- Adaptive concurrency ---------------------------------------------------------------------


def test_concurrent_acquires_across_processes_never_exceed_the_limit(name):
    def take() -> int:
        concurrency = AdaptiveConcurrency(name, initial=3, maximum=10, recover_after=100)
        return isinstance(concurrency.try_acquire(30), Lease)

    assert _race(take, threads=8, processes=2) == 3
    state = AdaptiveConcurrency(name, initial=3, maximum=10, recover_after=100).state()
    assert (state.limit, state.in_flight) == (3, 3)


def test_calls_in_flight_stay_within_the_limit_while_slots_turn_over(name):
    concurrency = AdaptiveConcurrency(name, initial=3, maximum=10, recover_after=10**6, poll_seconds=0.005)
    lock = threading.Lock()
    in_flight = peak = calls = 0

    def worker(_):
        nonlocal in_flight, peak, calls
        for _ in range(8):
            lease = concurrency.acquire(5, max_wait=5)
            assert lease is not None
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
                calls += 1
            time.sleep(0.01)
            with lock:
                in_flight -= 1
            concurrency.release(lease, "ok")

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(worker, range(10)))
    assert calls == 80
    assert peak == 3
    assert concurrency.state().in_flight == 0


def test_a_burst_of_429s_from_the_calls_in_flight_halves_the_limit_once(name):
    concurrency = AdaptiveConcurrency(name, initial=8, maximum=16, recover_after=5)
    leases = [concurrency.try_acquire(30) for _ in range(8)]
    assert all(isinstance(lease, Lease) for lease in leases)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda lease: concurrency.release(lease, "throttled"), leases))
    assert concurrency.state().limit == 4
    assert concurrency.state().in_flight == 0
    # A 429 on a call started after the halving is new news: halved again, not below minimum.
    for expected in (2, 1, 1):
        lease = concurrency.try_acquire(30)
        concurrency.release(lease, "throttled")
        assert concurrency.state().limit == expected


def test_the_limit_recovers_by_one_after_recover_after_successes_up_to_the_maximum(name):
    concurrency = AdaptiveConcurrency(name, initial=2, maximum=3, recover_after=3)
    limits = []
    for _ in range(7):
        concurrency.release(concurrency.try_acquire(30), "ok")
        limits.append(concurrency.state().limit)
    assert limits == [2, 2, 3, 3, 3, 3, 3]


def test_a_429_restarts_the_count_and_older_calls_do_not_count(name):
    concurrency = AdaptiveConcurrency(name, initial=4, maximum=8, recover_after=2)
    old = concurrency.try_acquire(30)
    concurrency.release(concurrency.try_acquire(30), "ok")  # one success counted
    concurrency.release(concurrency.try_acquire(30), "throttled")  # 4 -> 2, the count restarts
    concurrency.release(old, "ok")  # started before the halving: does not count
    concurrency.release(concurrency.try_acquire(30), "error")  # neither counts nor restarts
    concurrency.release(concurrency.try_acquire(30), "ok")
    assert concurrency.state().limit == 2
    concurrency.release(concurrency.try_acquire(30), "ok")
    assert concurrency.state().limit == 3


def test_a_lease_not_released_expires_and_its_slot_returns(name):
    concurrency = AdaptiveConcurrency(name, initial=2, maximum=3, recover_after=1)
    held = concurrency.try_acquire(30)  # a call still running: keeps the leases' key alive
    lost = concurrency.try_acquire(0.2)  # its worker is SIGKILLed: never released
    assert isinstance(held, Lease)
    assert isinstance(lost, Lease)
    wait = concurrency.try_acquire(30)
    assert isinstance(wait, float)
    assert 0 < wait <= 0.1  # polls; the lost lease expires within 0.2 s
    assert concurrency.acquire(30, max_wait=0) is None
    started = time.monotonic()
    replacement = concurrency.acquire(30, max_wait=2)
    assert isinstance(replacement, Lease)
    assert time.monotonic() - started < 0.6
    assert concurrency.state().in_flight == 2
    # The late release of the expired lease frees nothing and counts no success.
    concurrency.release(lost, "ok")
    assert concurrency.state().in_flight == 2
    assert concurrency.state().limit == 2


def test_the_pause_from_retry_after_is_honoured_by_every_acquirer(name):
    def another_worker() -> AdaptiveConcurrency:
        return AdaptiveConcurrency(name, initial=4, maximum=4, recover_after=10)

    first = another_worker()
    first.release(first.try_acquire(30), "throttled", retry_after=1.2)
    released = time.monotonic()
    others = [another_worker() for _ in range(3)]
    for other in others:
        wait = other.try_acquire(30)
        assert isinstance(wait, float)
        assert 0.8 < wait <= 1.2
        assert other.acquire(30, max_wait=0.5) is None  # the pause is longer: no sleeping
    assert 0.8 < first.state().pause_remaining <= 1.2
    # Other processes see the same pause.
    assert _race(lambda: isinstance(another_worker().try_acquire(30), Lease), threads=2, processes=1) == 0
    lease = others[0].acquire(30, max_wait=3)
    assert isinstance(lease, Lease)
    assert time.monotonic() - released >= 1.0


def test_a_retry_after_beyond_the_maximum_pause_is_cut_to_it(name):
    concurrency = AdaptiveConcurrency(name, initial=2, maximum=2, recover_after=1, max_pause_seconds=0.3)
    concurrency.release(concurrency.try_acquire(30), "throttled", retry_after=3600)
    assert 0 < concurrency.state().pause_remaining <= 0.3
    assert isinstance(concurrency.acquire(30, max_wait=1), Lease)


def test_unknown_outcomes_and_bounds_are_refused(name):
    concurrency = AdaptiveConcurrency(name, initial=1, maximum=1, recover_after=1)
    with pytest.raises(ValueError, match="not a valid"):
        concurrency.release(Lease(id="0:x"), "maybe")
    with pytest.raises(ValueError):
        AdaptiveConcurrency(name, initial=5, maximum=4, recover_after=1)
    with pytest.raises(ValueError):
        TokenBuckets(name, requests_per_minute=0, tokens_per_minute=1)
    with pytest.raises(ValueError):
        TokenBuckets(name, requests_per_minute=1, tokens_per_minute=1).try_acquire(-1)


# --- Redis unavailable: fail closed -----------------------------------------------------------


def test_buckets_without_redis_say_wait_and_take_nothing(name, closed_port_client):
    buckets = TokenBuckets(
        name,
        requests_per_minute=10**6,
        tokens_per_minute=10**6,
        unavailable_retry_seconds=0.1,
        client=closed_port_client,
    )
    assert buckets.try_acquire(1) == 0.1
    started = time.monotonic()
    assert buckets.acquire(1, max_wait=0.35) is False  # retried within the bound, then gave up
    assert 0.3 <= time.monotonic() - started < 2.5
    assert buckets.state() is None


def test_concurrency_without_redis_gives_no_slot_and_release_does_not_raise(name, closed_port_client):
    concurrency = AdaptiveConcurrency(
        name, initial=4, maximum=4, recover_after=1, unavailable_retry_seconds=5, client=closed_port_client
    )
    assert concurrency.try_acquire(30) == 5
    started = time.monotonic()
    assert concurrency.acquire(30, max_wait=1) is None  # the wait is longer: at once
    assert time.monotonic() - started < 1
    concurrency.release(Lease(id="0:gone"), "throttled", retry_after=10)  # the lease expires by itself
    assert concurrency.state() is None


# --- Backoff ----------------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_capped():
    rng = random.Random(7)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 20.0), (10_000, 20.0)]:
        delays = [backoff_delay(attempt, base=0.5, cap=20, rng=rng) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.9  # the whole range is used
        assert min(delays) < ceiling * 0.1
    assert backoff_delay(3, base=1, cap=0, rng=rng) == 0
    with pytest.raises(ValueError):
        backoff_delay(-1, base=1, cap=10, rng=rng)
