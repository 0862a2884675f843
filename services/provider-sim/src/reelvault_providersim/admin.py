"""Test-only ``/_sim`` routes: what the simulator saw and served, and fault control.

No auth: the simulator is a dev tool listening on loopback; ``PROVIDER_SIM_ADMIN_ENABLED=false``
removes these routes.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from starlette.responses import JSONResponse, Response

from reelvault_providersim.engine import VARIANTS, Simulator
from reelvault_providersim.errors import bad_request, invalid_value, video_not_found
from reelvault_providersim.faults import FaultRule, FaultSettings
from reelvault_providersim.jobs import Job

_Model = TypeVar("_Model", bound=BaseModel)


class FaultRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[FaultRule]


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    urls: list[str] = Field(default_factory=list)
    secret: SecretStr | None = None


def router(sim: Simulator) -> APIRouter:
    r = APIRouter(prefix="/_sim", include_in_schema=False)
    _add_job_routes(r, sim)
    _add_fault_routes(r, sim)
    _add_webhook_routes(r, sim)
    return r


def _add_job_routes(r: APIRouter, sim: Simulator) -> None:
    """What the simulator was asked for and what it served."""

    @r.get("/jobs")
    async def jobs() -> Response:
        now = sim.clock()
        listing = [_job_summary(job, now) for job in sim.store.all_jobs()]
        return JSONResponse(
            {
                "create_calls": sim.calls.get("create", 0),
                "jobs_created": len(listing),
                "calls": sim.calls,
                "jobs": listing,
            }
        )

    @r.get("/jobs/{video_id}/sha256")
    async def sha256(video_id: str, request: Request) -> Response:
        raw = request.query_params.get("variant", "video")
        variant = next((v for v in VARIANTS if v == raw), None)
        if variant is None:
            raise invalid_value("variant", raw, VARIANTS)
        job = sim.store.get(video_id)
        if job is None:
            raise video_not_found(video_id)
        digest, size = await asyncio.to_thread(sim.content_sha256, job, variant)
        return JSONResponse({"id": job.id, "variant": variant, "sha256": digest, "size": size})


def _job_summary(job: Job, now: float) -> dict[str, Any]:
    state = job.state(now)
    return {
        "id": job.id,
        "status": "deleted" if job.deleted else state.status,
        "prompt": job.prompt,
        "model": job.model,
        "size": job.size,
        "seconds": job.seconds,
        "created_at": job.created_at,
        "remixed_from_video_id": job.remixed_from_video_id,
        "deleted": job.deleted,
        "planned_outcome": job.outcome,
        "generation_s": job.generation_s,
        "render_finished": job.render_finished_at is not None,
        "client_request_id": job.notes.get("client_request_id"),
    }


def _add_fault_routes(r: APIRouter, sim: Simulator) -> None:
    @r.get("/faults")
    async def faults() -> Response:
        return JSONResponse(
            {
                "config": sim.faults.settings.model_dump(mode="json"),
                "pending": [rule.model_dump(mode="json") for rule in sim.faults.pending()],
                "injected": sim.faults.injected,
            }
        )

    @r.post("/faults")
    async def push_faults(request: Request) -> Response:
        rules = _parse(FaultRules, await request.body())
        sim.faults.push(rules.rules)
        return JSONResponse({"pending": len(sim.faults.pending())})

    @r.put("/faults/config")
    async def configure_faults(request: Request) -> Response:
        sim.faults.configure(_parse(FaultSettings, await request.body()))
        return JSONResponse(sim.faults.settings.model_dump(mode="json"))

    @r.delete("/faults")
    async def reset_faults() -> Response:
        sim.faults.reset()
        return JSONResponse({"reset": True})


def _add_webhook_routes(r: APIRouter, sim: Simulator) -> None:
    @r.get("/webhooks")
    async def webhooks() -> Response:
        return JSONResponse(
            {
                "urls": sim.webhooks.urls,
                "deliveries": [d.as_dict() for d in sim.webhooks.deliveries],
            }
        )

    @r.put("/webhooks")
    async def configure_webhooks(request: Request) -> Response:
        config = _parse(WebhookConfig, await request.body())
        sim.webhooks.urls = list(config.urls)
        if config.secret is not None:
            sim.webhooks.secret = config.secret.get_secret_value()
        return JSONResponse({"urls": sim.webhooks.urls, "enabled": sim.webhooks.enabled})


def _parse(model: type[_Model], body: bytes) -> _Model:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise bad_request(f"Invalid admin request: {exc.errors(include_url=False)}") from None
