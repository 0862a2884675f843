"""A request the generator cannot start ends, after ``requests.max_deliver`` deliveries with
growing delays, in the dead-letter stream with its payload and the last error; its video fails
(``dead_lettered``); ``reelvault dead-letters replay`` starts it once the cause is fixed.

The poison here is real-world: the provider key was rotated and the generator still sends the
old one (every create is a 401). The fix is a generator with the right key."""

from __future__ import annotations

import asyncio
import time

import pytest
from generator_harness import GeneratorFactory, RunningSim, StreamWatch, video_request
from reelvault_common.contracts.events import (
    VideoCompleted,
    VideoFailed,
    VideoGenerationStarted,
    parse_event,
)
from reelvault_common.messaging.deadletter import list_dead_letters
from reelvault_common.runtime.settings import ServiceSettings

pytestmark = pytest.mark.integration

MAX_DELIVER = 3


async def test_a_request_refused_until_max_deliver_is_dead_lettered_then_replayed(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim,
    service_settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stale_key = await make_generator(OPENAI_API_KEY="sk-rotated-away",
                                     requests={"max_deliver": MAX_DELIVER},
                                     unauthorized_retry_s=0.3)
    request = video_request("a lighthouse in fog")
    began = time.monotonic()
    await watch.publish(request)

    failed = await watch.outcome(request.video_id, timeout_s=30)
    elapsed = time.monotonic() - began
    assert isinstance(failed, VideoFailed), failed
    assert (failed.stage, failed.code) == ("generation", "dead_lettered")
    assert f"gave up after {MAX_DELIVER} deliveries" in failed.message
    assert "401" in failed.message or "API key" in failed.message
    [stored] = await list_dead_letters(service_settings.nats_url, watch.topology)
    assert stored.letter.consumer == f"{service_settings.namespace}-generator-requests"
    assert stored.letter.deliveries == MAX_DELIVER
    assert parse_event(stored.letter.payload) == request
    assert "create refused for now" in stored.letter.error
    assert elapsed >= 2 * 0.3  # two waits of unauthorized_retry_s: no hot loop
    assert (await sim.jobs())["jobs_created"] == 0  # nothing was paid for
    info = await watch.nc.jetstream().consumer_info(
        watch.topology.stream, f"{service_settings.namespace}-generator-requests")
    assert info.num_ack_pending == 0 and info.num_pending == 0

    # The fix: a generator with the current key (the stale one is stopped).
    await stale_key.stop()
    await make_generator(requests={"max_deliver": MAX_DELIVER})
    from reelvault.cli import main

    monkeypatch.setenv("NATS_URL", service_settings.nats_url)
    monkeypatch.setenv("REELVAULT_NAMESPACE", service_settings.namespace)

    def replay() -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["dead-letters", "replay", "--all"])
        assert exit_info.value.code in (0, None)
        return capsys.readouterr().out

    assert "replayed 1: " in await asyncio.to_thread(replay)
    done = await watch.wait_for(lambda: watch.of(request.video_id, VideoCompleted),
                                timeout_s=30, what="completion after the replay")
    [started] = watch.of(request.video_id, VideoGenerationStarted)
    assert done[0].provider_job_id == started.provider_job_id
    assert len(await sim.jobs_for(request.prompt)) == 1
    assert await list_dead_letters(service_settings.nats_url, watch.topology) == []
