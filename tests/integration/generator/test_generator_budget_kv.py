"""The request budget on a real NATS KV bucket: two replicas share it exactly (compare-and-set),
a restarted replica carries on from the stored state, waiters get their own turns, and a
provider's 429 slows everyone down. A fake clock drives a simulated backlog."""

from __future__ import annotations

import heapq
import itertools
import random

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.errors import ProviderError
from reelvault_common.runtime.settings import ServiceSettings
from reelvault_generator.budget import KvRequestBudget, is_budget_refusal
from reelvault_generator.ledger_store import open_bucket


def most_in_any_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(self.now + seconds)  # the admitted call's slot


async def open_kv(settings: ServiceSettings) -> tuple[NatsClient, KeyValue]:
    nc = await nats.connect(settings.nats_url)
    name = Topology.from_settings(settings).kv_bucket("generator", "budget")
    kv = await open_bucket(nc.jetstream(), name, config=KeyValueConfig(
        bucket=name, history=1, storage=StorageType.FILE, ttl=3600.0))
    return nc, kv


async def run_backlog(budgets: list[KvRequestBudget], time: FakeTime,
                      arrivals: list[tuple[float, str, str]], until: float,
                      rng: random.Random, restart: tuple[float, int] | None = None,
                      make: object = None) -> tuple[int, dict[str, float]]:
    """Waiters arrive and come back at their retry-after, each time at a random replica."""
    order = itertools.count()
    events = [(at, next(order), ticket, org) for at, ticket, org in arrivals]
    heapq.heapify(events)
    served: dict[str, float] = {}
    deliveries = 0
    while events and events[0][0] < until:
        at, _, ticket, org = heapq.heappop(events)
        time.now = at
        if restart is not None and at >= restart[0] and callable(make):
            budgets[restart[1]] = make()  # a new process on the same bucket
            restart = None
        deliveries += 1
        before = len(time.slept)
        try:
            await rng.choice(budgets).acquire("create", ticket=ticket, org=org)
        except ProviderError as error:
            refusal = error
        else:
            assert len(time.slept) == before + 1
            served[ticket] = time.slept[-1]
            continue
        assert is_budget_refusal(refusal) and refusal.retry_after_s is not None
        heapq.heappush(events, (at + refusal.retry_after_s, next(order), ticket, org))
    return deliveries, served


async def test_two_replicas_never_exceed_the_limit_in_any_window(
    service_settings: ServiceSettings,
) -> None:
    nc, kv = await open_kv(service_settings)
    time = FakeTime()

    def replica() -> KvRequestBudget:
        return KvRequestBudget(kv, provider="openai", limit=30, window_s=60.0,
                               clock=time.clock, sleep=time.sleep)

    try:
        budgets = [replica(), replica()]
        # A cold start with 300 waiting at once, then more trickling in; one replica restarts.
        arrivals = [(1_000.0, f"a{i}", "a") for i in range(300)]
        arrivals += [(1_000.0 + i * 0.7, f"a+{i}", "a") for i in range(100)]
        singles = {f"b{i}": at for i, at in enumerate((1_050.0, 1_201.0, 1_333.3, 1_500.0))}
        arrivals += [(at, ticket, "b") for ticket, at in singles.items()]
        deliveries, served = await run_backlog(
            budgets, time, arrivals, until=1_600.0, rng=random.Random(7),
            restart=(1_200.0, 0), make=replica)
    finally:
        await nc.close()

    calls = list(served.values())
    assert most_in_any_window(calls, 60.0) <= 30
    assert len(calls) >= 0.9 * 600 * 30 / 61  # the budget is used
    # Waiting costs nothing: each call took about two deliveries (arrive, come back).
    assert deliveries <= 2.5 * len(calls) + (len(arrivals) - len(calls)) * 2
    # Another organization's single video waits at most the horizon (a slot) and one slot.
    slot = 61.0 / 30
    waits = [served[ticket] - at for ticket, at in singles.items()]
    assert max(waits) <= 2 * slot + 1e-6, waits
    print(f"{len(calls)} calls, {deliveries} deliveries, most in 60 s: "
          f"{most_in_any_window(calls, 60.0)}; a single video's longest wait {max(waits):.2f}s")


async def test_a_providers_429_slows_every_replica(service_settings: ServiceSettings) -> None:
    nc, kv = await open_kv(service_settings)
    time = FakeTime()
    try:
        one, two = (KvRequestBudget(kv, provider="gemini", limit=60, window_s=60.0,
                                    clock=time.clock, sleep=time.sleep) for _ in range(2))
        await one.acquire()
        await two.penalize(retry_after_s=10.0)
        view = await one.view()
        assert view.rate_factor == 0.5
        with pytest.raises(ProviderError) as refused:
            await one.acquire()
        assert refused.value.retry_after_s is not None and refused.value.retry_after_s >= 9.9
        time.now += 10.0
        await two.acquire()
        time.now += 300.0  # recovered
        assert (await one.view()).rate_factor == 1.0
    finally:
        await nc.close()
