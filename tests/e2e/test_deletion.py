"""Deleting through the running system (every service its own process): the stored objects
are removed, the row stays as a tombstone, ``video.deleted`` is in the stream, reads answer
404, usage's stored bytes go down, and a video still being generated can be deleted too.
Retention is set with the operator command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from reelvault_common.messaging.topology import Topology

from tests.support.system import (
    RunningSystem,
    reelvault_up,
    stop_cleanly,
    system_env,
    wait_for_status,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(
    tmp_path: Path, nats_url: str, database_url: str, namespace: str
) -> Iterator[RunningSystem]:
    env = system_env(nats_url, database_url, namespace, PROVIDER_SIM_GENERATION_S="1")
    with reelvault_up(tmp_path / ".reelvault", env, cwd=tmp_path) as running:
        yield running
        stop_cleanly(running)


def stored_bytes(client: httpx.Client) -> int:
    usage = client.get("/v1/usage")
    assert usage.status_code == 200, usage.text
    [item] = [item for item in usage.json()["quotas"] if item["quota"] == "storage_bytes"]
    return int(item["used"])


async def last_deleted_event(nats_url: str, namespace: str, org: str) -> dict[str, Any]:
    topology = Topology(namespace=namespace)
    connection = await nats.connect(nats_url)
    try:
        message = await connection.jetstream().get_last_msg(
            topology.stream, topology.subject("video.deleted", org))
        assert message.data is not None
        payload: dict[str, Any] = json.loads(message.data)
        return payload
    finally:
        await connection.close()


def wait_until_gone(paths: list[Path], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while any(path.exists() for path in paths):
        assert time.monotonic() < deadline, [p for p in paths if p.exists()]
        time.sleep(0.2)


def test_delete_removes_objects_keeps_a_tombstone_and_reads_answer_404(
    system: RunningSystem, nats_url: str, namespace: str
) -> None:
    storage = system.data_dir / "storage"
    with system.client() as client:
        created = client.post("/v1/videos", json={"prompt": "a lighthouse at dawn"})
        assert created.status_code == 202, created.text
        video = wait_for_status(client, created.json()["id"], {"completed", "failed"})
        assert video["status"] == "completed", video
        video_id = video["id"]
        objects = sorted(storage.glob(f"*/default/*/*/{video_id}/*"))
        assert [path.name for path in objects] == ["video.mp4", "thumbnail.webp"] or [
            path.name for path in objects] == ["thumbnail.webp", "video.mp4"], objects
        before = stored_bytes(client)
        assert before >= video["bytes"] > 0

        first = client.delete(f"/v1/videos/{video_id}")
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "deleted" and first.json()["id"] == video_id
        again = client.delete(f"/v1/videos/{video_id}")
        assert (again.status_code, again.json()) == (200, first.json())

        wait_until_gone(objects)
        for path in (f"/v1/videos/{video_id}", f"/v1/videos/{video_id}/content"):
            answer = client.get(path)
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
        assert video_id not in client.get("/v1/videos").text
        # The organization's only stored video is gone: nothing is counted any more.
        assert stored_bytes(client) == 0
        assert client.delete(f"/v1/videos/{uuid.uuid4()}").status_code == 404

        # Deleting one still being generated: canceled first, then the same answers.
        fresh = client.post("/v1/videos", json={"prompt": "a slow sunrise"})
        assert fresh.status_code == 202, fresh.text
        gone = client.delete(f"/v1/videos/{fresh.json()['id']}")
        assert gone.status_code == 200, gone.text
        assert client.get(f"/v1/videos/{fresh.json()['id']}").status_code == 404

    event = asyncio.run(last_deleted_event(nats_url, namespace, "default"))
    assert event["type"] == "video.deleted" and event["org"] == "default"
    assert event["video_id"] == fresh.json()["id"]
    assert event["deleted_by"] == system.api_key.split("_")[1]

    reelvault = str(Path(sys.executable).parent / "reelvault")
    env = {k: v for k, v in os.environ.items()
           if k not in {"NATS_URL", "DATABASE_URL", "REELVAULT_NAMESPACE"}}
    done = subprocess.run([reelvault, "orgs", "set-retention", "default", "30"],
                          cwd=system.data_dir.parent, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "30 days" in done.stdout
    listed = subprocess.run([reelvault, "orgs", "list"], cwd=system.data_dir.parent, env=env,
                            capture_output=True, text=True, timeout=60)
    assert "30 days" in listed.stdout, listed.stdout
    refused = subprocess.run([reelvault, "orgs", "set-retention", "default", "-1"],
                             cwd=system.data_dir.parent, env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode != 0
