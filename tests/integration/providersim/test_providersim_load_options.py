"""Simulator options for load and shutdown tests: ``reuse_renders`` (one render per clip shape,
every job of that shape gets a copy) and the ``slow_response`` fault rule."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import httpx
import pytest
from conftest import SimFactory
from providersim_helpers import AUTH, wait_terminal

pytestmark = pytest.mark.integration


async def create(http: httpx.AsyncClient, prompt: str, size: str = "720x1280") -> dict[str, Any]:
    reply = await http.post("/videos", headers=AUTH, json={"prompt": prompt, "size": size})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def test_reused_renders_are_real_copies_per_job(sim_factory: SimFactory) -> None:
    async with (
        sim_factory(fast_mode=True, reuse_renders=True) as running,
        httpx.AsyncClient(base_url=running.base_url, timeout=30) as http,
    ):
        jobs = await asyncio.gather(*(create(http, f"prompt {i}") for i in range(6)),
                                    create(http, "landscape", size="1280x720"))
        digests = []
        for job in jobs:
            assert (await wait_terminal(http, job["id"]))["status"] == "completed"
            content = await http.get(f"/videos/{job['id']}/content", headers=AUTH)
            assert content.status_code == 200
            digests.append(hashlib.sha256(content.content).hexdigest())
            thumb = await http.get(f"/videos/{job['id']}/content",
                                   params={"variant": "thumbnail"}, headers=AUTH)
            assert thumb.status_code == 200 and thumb.content
        # One clip per shape: six portrait jobs share one, the landscape job has its own.
        assert len(set(digests[:6])) == 1
        assert digests[6] != digests[0]
        # Deleting one job leaves the others' files alone.
        assert (await http.delete(f"/videos/{jobs[0]['id']}", headers=AUTH)).status_code == 200
        again = await http.get(f"/videos/{jobs[1]['id']}/content", headers=AUTH)
        assert hashlib.sha256(again.content).hexdigest() == digests[1]


async def test_slow_response_holds_the_matching_request_only(sim_factory: SimFactory) -> None:
    async with sim_factory() as running, httpx.AsyncClient(base_url=running.base_url,
                                                           timeout=30) as http:
        async with running.admin() as admin:
            queued = await admin.post("/_sim/faults", json={"rules": [
                {"kind": "slow_response", "route": "list", "delay_s": 0.6}]})
            assert queued.status_code == 200
        began = time.monotonic()
        created = await create(http, "not held")
        assert time.monotonic() - began < 0.5  # another route: served at once
        began = time.monotonic()
        listed = await http.get("/videos", headers=AUTH)
        assert listed.status_code == 200
        assert time.monotonic() - began >= 0.6
        began = time.monotonic()
        assert (await http.get("/videos", headers=AUTH)).status_code == 200
        assert time.monotonic() - began < 0.5  # a one-shot rule
        async with running.admin() as admin:
            assert (await admin.get("/_sim/faults")).json()["injected"]["slow_response"] == 1
        assert created["id"]
