"""Graceful shutdown of ``python -m reelvault_generator`` with a provider job being created (the
simulator holds the create call): SIGTERM lets the create finish within the grace period and
exits 0 -- or, when the grace period is shorter than the create, hands the request back and
exits 0; once the abandoned claim is stale the next generator looks for a job that call may
have created (adopts it), else creates one. Either way: nothing lost, one provider job."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from generator_harness import API_KEY, RunningSim, StreamWatch, video_request
from reelvault_common.contracts.events import VideoCompleted, VideoGenerationStarted
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.service_process import service_process

pytestmark = pytest.mark.integration


def generator_env(settings: ServiceSettings, sim: RunningSim, storage: Path,
                  **overrides: str) -> dict[str, str]:
    return {
        "NATS_URL": settings.nats_url,
        "REELVAULT_NAMESPACE": settings.namespace,
        "REELVAULT_STREAM_DUPLICATE_WINDOW_S": "60",
        "OPENAI_BASE_URL": sim.base_url,
        "OPENAI_API_KEY": API_KEY,
        "REELVAULT_STORAGE_DIR": str(storage),
        "REELVAULT_POLL_INTERVAL_S": "0.2",
        "REELVAULT_POLL_MAX_INTERVAL_S": "0.5",
        **{f"REELVAULT_{key.upper()}": value for key, value in overrides.items()},
    }


async def _create_calls(sim: RunningSim) -> int:
    return int((await sim.jobs())["calls"].get("create", 0))


async def wait_create_call(sim: RunningSim) -> None:
    deadline = time.monotonic() + 20
    while await _create_calls(sim) == 0:
        assert time.monotonic() < deadline, "the generator never called create"
        await asyncio.sleep(0.05)


async def test_sigterm_lets_a_create_in_flight_finish_and_exits_0(
    service_settings: ServiceSettings, sim: RunningSim, watch: StreamWatch, tmp_path: Path
) -> None:
    env = generator_env(service_settings, sim, tmp_path / "storage", shutdown_grace_s="8")
    async with service_process("generator", "reelvault_generator", env, tmp_path) as generator:
        await generator.wait_for_log("generator ready")
        await sim.push_faults({"kind": "slow_response", "route": "create", "delay_s": 2.0})
        request = video_request("a slow lighthouse")
        await watch.publish(request)
        await wait_create_call(sim)

        sent = generator.terminate()
        code = await generator.exit_code(timeout_s=15)
        assert code == 0, generator.log()[-3000:]
        assert 1.0 < time.monotonic() - sent < 8 + 3  # waited for the create, not the grace

    [started] = watch.of(request.video_id, VideoGenerationStarted)
    assert (await sim.jobs())["jobs_created"] == 1
    assert [job["id"] for job in await sim.jobs_for(request.prompt)] == [started.provider_job_id]
    js = watch.nc.jetstream()
    requests = await js.consumer_info(watch.topology.stream,
                                      f"{service_settings.namespace}-generator-requests")
    assert requests.num_ack_pending == 0 and requests.num_pending == 0  # acked: done
    # The Started event waits for the next generator's poll consumer: nothing lost.
    poll = await js.consumer_info(watch.topology.stream,
                                  f"{service_settings.namespace}-generator-poll")
    assert poll.num_pending + poll.num_ack_pending >= 1


async def test_sigterm_hands_back_a_create_longer_than_the_grace_and_nothing_is_paid_twice(
    service_settings: ServiceSettings, sim: RunningSim, watch: StreamWatch, tmp_path: Path
) -> None:
    # The provider takes 4 s to answer; the generator may take 1 s to stop. Its claim goes
    # stale after create_timeout + margin (7 s): the next generator then looks for the job.
    env = generator_env(service_settings, sim, tmp_path / "storage", shutdown_grace_s="1",
                        create_timeout_s="6", claim_margin_s="1", recovery_margin_s="5")
    async with service_process("generator-1", "reelvault_generator", env, tmp_path) as first:
        await first.wait_for_log("generator ready")
        await sim.push_faults({"kind": "slow_response", "route": "create", "delay_s": 4.0})
        request = video_request("a lighthouse that takes its time")
        await watch.publish(request)
        await wait_create_call(sim)

        sent = first.terminate()
        code = await first.exit_code(timeout_s=10)
        assert code == 0, first.log()[-3000:]
        assert time.monotonic() - sent < 1 + 4
        assert "handing back" in first.log()
    assert watch.of(request.video_id, VideoGenerationStarted) == []

    began = time.monotonic()
    async with service_process("generator-2", "reelvault_generator", env, tmp_path) as second:
        await second.wait_for_log("generator ready")
        done = await watch.wait_for(lambda: watch.of(request.video_id, VideoCompleted),
                                    timeout_s=40, what="the video to be generated")
        # Far below ack_wait (120 s): the request came back at once, not after a timeout.
        assert time.monotonic() - began < 40
        second.terminate()
        assert await second.exit_code(timeout_s=10) == 0

    jobs = await sim.jobs_for(request.prompt)
    # The simulator dropped the abandoned call (no job), so the recovery created it: one job.
    assert len(jobs) == 1, jobs
    assert done[0].provider_job_id == jobs[0]["id"]
    assert "is stale: looking for a job" in second.log()
