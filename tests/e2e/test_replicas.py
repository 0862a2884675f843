"""The whole system with two replicas of every broker-driven service (``reelvault up
--replicas 2``: two catalogs, two generators, two archivers sharing their durable consumers and
the generator's KV ledger). A batch of videos, each submitted twice under one Idempotency-Key,
must complete exactly once: one provider job per video, one catalog row per video, and the
stored bytes are the bytes the provider served."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.system import RunningSystem, reelvault_up

pytestmark = pytest.mark.e2e

VIDEOS = 20
REPLICATED = ("catalog", "generator", "archiver")


@pytest.fixture
def system(tmp_path: Path, nats_url: str, database_url: str, namespace: str
           ) -> Iterator[RunningSystem]:
    env = {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "REELVAULT_NAMESPACE": namespace,
        "PROVIDER_SIM_GENERATION_S": "1.0",
        "PROVIDER_SIM_FPS": "2",
        "REELVAULT_POLL_INTERVAL_S": "0.3",
        "REELVAULT_POLL_MAX_INTERVAL_S": "1.0",
    }
    with reelvault_up(tmp_path / "data", env, "--replicas", "2") as running:
        yield running
        code = running.stop()
        assert code == 0, "\n".join(running.output)
        [stopped] = [line for line in running.output if line.startswith("stopped:")]
        codes = dict(part.split("=") for part in stopped.removeprefix("stopped: ").split(", "))
        # Two processes of each replicated service, and every process exited 0 on SIGTERM.
        for service in REPLICATED:
            assert {f"{service}-1", f"{service}-2"} <= set(codes), codes
        assert set(codes.values()) == {"0"}, codes


async def submit(client: httpx.AsyncClient, index: int) -> str:
    body = {"prompt": f"replica batch video {index}: a lighthouse, angle {index * 7}",
            "seconds": "4", "size": "1280x720" if index % 2 else "720x1280"}
    key = {"Idempotency-Key": f"batch-{index}"}
    first, again = await asyncio.gather(client.post("/v1/videos", json=body, headers=key),
                                        client.post("/v1/videos", json=body, headers=key))
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert first.json()["id"] == again.json()["id"]
    return str(first.json()["id"])


async def wait_all_terminal(client: httpx.AsyncClient, ids: list[str], timeout_s: float
                            ) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    videos: dict[str, dict[str, Any]] = {}
    while True:
        for video_id in ids:
            if videos.get(video_id, {}).get("status") in ("completed", "failed"):
                continue
            answer = await client.get(f"/v1/videos/{video_id}")
            if answer.status_code == 200:
                videos[video_id] = answer.json()
        done = [v for v in videos.values() if v["status"] in ("completed", "failed")]
        if len(done) == len(ids):
            return videos
        assert time.monotonic() < deadline, (
            f"{len(done)}/{len(ids)} terminal after {timeout_s}s: "
            f"{sorted(v['status'] for v in videos.values())}")
        await asyncio.sleep(0.5)


async def test_a_batch_completes_exactly_once_with_two_replicas_of_everything(
    system: RunningSystem,
) -> None:
    sim_root = system.simulator.removesuffix("/v1")
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.auth,
                                 timeout=30) as client:
        ids = await asyncio.gather(*(submit(client, i) for i in range(VIDEOS)))
        assert len(set(ids)) == VIDEOS
        videos = await wait_all_terminal(client, ids, timeout_s=180)
        assert {v["status"] for v in videos.values()} == {"completed"}, [
            (v["id"], v["status"], v["error_code"], v["error_message"])
            for v in videos.values() if v["status"] != "completed"]

        # One catalog row per video: the catalog lists each id once, and nothing else.
        listed = (await client.get("/api/list-videos")).json()["videos"]
        listed_ids = [v["id"] for v in listed]
        assert sorted(listed_ids) == sorted(ids)

        # One provider job per video.
        jobs = (await client.get(f"{sim_root}/_sim/jobs")).json()
        assert jobs["jobs_created"] == VIDEOS, jobs["jobs_created"]
        per_prompt: dict[str, int] = {}
        for job in jobs["jobs"]:
            per_prompt[job["prompt"]] = per_prompt.get(job["prompt"], 0) + 1
        assert set(per_prompt.values()) == {1}
        assert {v["provider_job_id"] for v in videos.values()} == {j["id"] for j in jobs["jobs"]}

        # Stored bytes == served bytes, for every video.
        for video in videos.values():
            served = (await client.get(f"{sim_root}/_sim/jobs/{video['provider_job_id']}/sha256",
                                       params={"variant": "video"})).json()
            redirect = await client.get(f"/v1/videos/{video['id']}/content")
            assert redirect.status_code == 307, redirect.text
            stored = await client.get(redirect.headers["location"])
            assert stored.status_code == 200
            digest = hashlib.sha256(stored.content).hexdigest()
            assert digest == video["sha256"] == served["sha256"], video["id"]
            assert len(stored.content) == video["bytes"] == served["size"]

    # Both replicas of each service ran and consumed (they share one durable per purpose).
    logs = system.data_dir / "logs"
    for service in REPLICATED:
        for replica in (1, 2):
            text = (logs / f"{service}-{replica}.log").read_text(errors="replace")
            assert f"{service} ready" in text, f"{service}-{replica}"
