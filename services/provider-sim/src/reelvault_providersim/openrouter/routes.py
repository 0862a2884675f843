"""The HTTP face of the simulated OpenRouter video API: the four documented routes under
``/api/v1/videos``. No list, cancel or delete exists, so those paths answer like any unknown
route."""

from __future__ import annotations

import asyncio
import json
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from reelvault_providersim.callbacks import NOT_LOOPBACK, should_send
from reelvault_providersim.content import CutFileResponse, file_response
from reelvault_providersim.create_params import CreateParams
from reelvault_providersim.engine import Simulator
from reelvault_providersim.faults import ContentCut, Route
from reelvault_providersim.images import fit_to_frame
from reelvault_providersim.jobs import Job, JobState
from reelvault_providersim.openrouter import webhooks
from reelvault_providersim.openrouter.catalog import MODELS, RETIRED
from reelvault_providersim.openrouter.errors import (
    invalid_request,
    not_found,
    translate,
    unauthorized,
)
from reelvault_providersim.openrouter.params import VideoRequest, parse_json, validate
from reelvault_providersim.spec import frame_size
from reelvault_providersim.webhooks import Delivery

PREFIX = "/api/v1"
_ALPHANUMERIC = string.ascii_letters + string.digits
# The engine's statuses as OpenRouter names them.
_STATUS = {"queued": "pending"}
_DEFAULT_ERRORS = {
    "expired": "Job exceeded maximum time to live",
    "cancelled": "Job was cancelled",
}


@dataclass(frozen=True)
class _JobFacts:
    """What the job object needs beyond the engine's job."""

    root_url: str
    resolution: str
    generation_id: str
    cost: float
    callback_url: str | None


class OpenRouterApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.facts: dict[str, _JobFacts] = {}
        sim.terminal_listeners["openrouter"] = self.on_terminal

    @property
    def retired(self) -> set[str]:
        return self.sim.retired_models

    def create(self, request: VideoRequest, root_url: str, reference: bytes | None) -> Job:
        store = self.sim.store
        job_id = store.token(20, _ALPHANUMERIC)
        while store.contains(job_id):
            job_id = store.token(20, _ALPHANUMERIC)
        params = CreateParams(request.prompt, request.model.id, str(request.duration),
                              request.size, None)
        job = self.sim.create_job(
            params,
            reference=reference,
            protocol="openrouter",
            ttl_s=self.sim.settings.openrouter_content_ttl_s,
            job_id=job_id,
        )
        generation_id = f"gen-{int(job.created_at)}-{store.token(20, _ALPHANUMERIC)}"
        cost = request.model.cost(request.resolution, request.duration)
        self.facts[job.id] = _JobFacts(
            root_url, request.resolution, generation_id, cost, request.callback_url
        )
        job.notes["callback_urls"] = [request.callback_url] if request.callback_url else []
        return job

    def job_object(self, job: Job, state: JobState) -> dict[str, Any]:
        facts = self.facts[job.id]
        status = _STATUS.get(state.status, state.status)
        body: dict[str, Any] = {
            "id": job.id,
            "polling_url": f"{facts.root_url}{PREFIX}/videos/{job.id}",
            "status": status,
        }
        if status != "pending":
            body["generation_id"] = facts.generation_id
        if status == "completed":
            body["unsigned_urls"] = [f"{facts.root_url}{PREFIX}/videos/{job.id}/content?index=0"]
            body["usage"] = {"cost": facts.cost, "is_byok": False}
        elif state.error is not None:
            default = _DEFAULT_ERRORS.get(status)
            generic = state.error.code in ("video_expired", "cancelled")
            body["error"] = default if default and generic else state.error.message
        return body

    def on_terminal(self, job: Job) -> None:
        """One signed POST to the job's callback URL (none without a callback URL)."""
        facts = self.facts[job.id]
        url = facts.callback_url
        if url is None:
            return
        now = self.sim.clock()
        data = self.job_object(job, job.state(now))
        status = data["status"]
        event_type = f"video.generation.{status}"
        extras = {k: data[k] for k in ("unsigned_urls", "usage", "error") if k in data}
        payload: dict[str, Any] = {
            "type": event_type,
            "created_at": webhooks.iso_millis(now),
            "data": {
                "id": job.id,
                "status": status,
                "generation_id": facts.generation_id,
                "model": job.model,
                **extras,
            },
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        settings = self.sim.settings
        secret = (
            settings.openrouter_webhook_secret.get_secret_value()
            if settings.openrouter_webhook_secret
            else None
        )

        def headers(timestamp: int) -> dict[str, str]:
            return webhooks.headers(job.id, status, secret, timestamp, body)

        delivery = Delivery(f"{job.id}-{status}", event_type, job.id, url, body,
                            protocol="openrouter", headers=headers)
        if should_send(url, settings):
            self.sim.webhooks.send(delivery)
        else:
            self.sim.webhooks.skip(delivery, NOT_LOOPBACK)


def _guard(api: OpenRouterApi, route: Route, *, auth: bool = True
           ) -> Callable[[Request], Awaitable[None]]:
    """Auth first (a bad key is a 401 even under faults), then injected request faults."""
    sim = api.sim

    async def dependency(request: Request) -> None:
        if auth:
            check_key(request, sim.settings.protocol_api_key("openrouter"))
        sim.count_call("openrouter", route)
        error = sim.faults.on_request(route, protocol="openrouter")
        if error is not None:
            raise translate(error, sim.clock())
        delay = sim.faults.response_delay(route, "openrouter")
        if delay > 0:
            await asyncio.sleep(delay)

    return dependency


def check_key(request: Request, expected: str) -> None:
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized(missing=True)
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise unauthorized(missing=True)
    if not secrets.compare_digest(presented.encode(), expected.encode()):
        raise unauthorized(missing=False)


def router(sim: Simulator) -> APIRouter:
    api = OpenRouterApi(sim)
    r = APIRouter(prefix=PREFIX, include_in_schema=False)

    async def fetch(url: str, param: str) -> tuple[bytes, str | None]:
        return await sim.fetch_image(url, param=param)

    @r.post("/videos", dependencies=[Depends(_guard(api, "create"))])
    async def create_video(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise invalid_request("Content-Type must be application/json")
        body = parse_json(await request.body())
        video = await validate(body, sim.settings, api.retired, fetch)
        first = video.first_frame or (video.references[0] if video.references else None)
        reference = None
        if first is not None:
            width, height = frame_size(video.size)
            reference = await anyio.to_thread.run_sync(fit_to_frame, first, width, height)
        job = api.create(video, str(request.base_url).rstrip("/"), reference)
        created = api.job_object(job, job.state(sim.clock()))
        # A submission is always answered "pending" (even when fast mode has it running).
        reply = {"id": created["id"], "polling_url": created["polling_url"], "status": "pending"}
        return JSONResponse(reply, status_code=202)

    # Before /videos/{job_id}: "models" is not a job id.
    @r.get("/videos/models", dependencies=[Depends(_guard(api, "models", auth=False))])
    async def list_models() -> Response:
        live = [m for m in MODELS if m.id not in api.retired and m.id not in RETIRED]
        return JSONResponse({"data": [model.as_video_model() for model in live]})

    @r.get("/videos/{job_id}", dependencies=[Depends(_guard(api, "retrieve"))])
    async def get_video(job_id: str) -> Response:
        job = _job(api, job_id)
        return JSONResponse(api.job_object(job, job.state(sim.clock())))

    @r.get("/videos/{job_id}/content", dependencies=[Depends(_guard(api, "content"))])
    async def video_content(job_id: str, request: Request) -> Response:
        job = _job(api, job_id)
        index = _index(request.query_params.get("index"))
        now = sim.clock()
        state = job.state(now)
        status = _STATUS.get(state.status, state.status)
        if status in ("pending", "in_progress"):
            raise invalid_request(f"Video generation is not complete (status: {status})")
        if status != "completed":
            raise not_found(f"Video job {job.id} has no content (status: {status})")
        if index != 0:
            raise invalid_request(f"index: {index} is out of range; this job has 1 output")
        if not job.content_available(now):
            raise not_found(f"The content of video job {job.id} is no longer available")
        content = sim.content_file(job, "video")
        fault = sim.faults.on_content("openrouter")
        if isinstance(fault, ContentCut):
            return CutFileResponse(content, fault, request.headers.get("range"))
        if fault is not None:
            raise translate(fault, now)
        return file_response(content)

    return r


def _job(api: OpenRouterApi, job_id: str) -> Job:
    job = api.sim.find_job(job_id, "openrouter")
    if job is None:
        raise not_found(f"Video generation job {job_id} not found")
    return job


def _index(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not raw.isdigit():
        raise invalid_request("index: Expected an integer >= 0")
    return int(raw)
