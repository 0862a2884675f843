"""The generator's metrics after a real video (the simulator over HTTP, real JetStream): each
provider call by route and answer, the estimated cost of the one job created, consumer lag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from generator_harness import GeneratorFactory, RunningSim, StreamWatch, video_request
from reelvault_common.contracts.events import VideoCompleted

from tests.support.metrics_scrape import Samples, value

pytestmark = pytest.mark.integration

# The ``scrape`` fixture comes from tests.support.metrics_scrape (a plugin of tests/conftest.py).


async def test_provider_calls_and_the_cost_of_the_created_job_are_counted(
    make_generator: GeneratorFactory, sim: RunningSim, watch: StreamWatch,
    scrape: Callable[[], Awaitable[Samples]],
) -> None:
    # The first create is refused (429), the retry is accepted: one job, one cost.
    await sim.push_faults({"kind": "rate_limit", "route": "create", "retry_after_s": 0.1})
    service = await make_generator(metrics_interval_s=0.2)
    durables = [service.topology.durable("generator", purpose)
                for purpose in ("requests", "poll")]
    before = await scrape()
    request = video_request("a lighthouse at dusk, measured", seconds="8", model="sora-2")
    await watch.publish(request)
    assert isinstance(await watch.outcome(request.video_id), VideoCompleted)

    deadline = time.monotonic() + 10
    while True:  # the lag is read periodically
        after = await scrape()
        lag = [after.get((name, frozenset({("consumer", durable)})))
               for name in ("reelvault_consumer_pending", "reelvault_consumer_ack_pending")
               for durable in durables]
        if lag == [0, 0, 0, 0]:
            break
        assert time.monotonic() < deadline, lag
        await asyncio.sleep(0.1)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    calls = "reelvault_provider_requests_total"
    assert grew(calls, provider="openai", route="create", code="429") == 1
    assert grew(calls, provider="openai", route="create", code="200") == 1
    assert grew(calls, provider="openai", route="retrieve", code="200") >= 1
    # sora-2 at 0.10 USD per second, 8 seconds; the refused create cost nothing.
    assert grew("reelvault_provider_cost_usd_total", provider="openai") == pytest.approx(0.8)
    assert value(after, "reelvault_dead_letters") == 0
    assert len(await sim.jobs_for("a lighthouse at dusk, measured")) == 1
