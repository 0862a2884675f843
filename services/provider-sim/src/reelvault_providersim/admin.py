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
from reelvault_providersim.jobs import PROTOCOLS, Job, Protocol

_Model = TypeVar("_Model", bound=BaseModel)


class FaultRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[FaultRule]


class RetiredModels(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[str]


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    urls: list[str] = Field(default_factory=list)
    secret: SecretStr | None = None


def router(sim: Simulator) -> APIRouter:
    r = APIRouter(prefix="/_sim", include_in_schema=False)
    _add_job_routes(r, sim)
    _add_fault_routes(r, sim)
    _add_webhook_routes(r, sim)
    _add_model_routes(r, sim)
    return r


def _add_job_routes(r: APIRouter, sim: Simulator) -> None:
    """What the simulator was asked for and what it served."""

    @r.get("/jobs")
    async def jobs(request: Request) -> Response:
        """Every job (``?protocol=`` one protocol's), with create calls and jobs created per
        protocol: a test asserts one provider job per video with these."""
        wanted = _protocol_param(request.query_params.get("protocol"))
        now = sim.clock()
        everything = list(sim.store.all_jobs())
        listing = [
            _job_summary(job, now) for job in everything if wanted in (None, job.protocol)
        ]
        by_protocol = {
            protocol: {
                "create_calls": _calls(sim, protocol).get("create", 0),
                "jobs_created": sum(1 for job in everything if job.protocol == protocol),
                "calls": _calls(sim, protocol),
            }
            for protocol in PROTOCOLS
        }
        calls = _calls(sim, wanted or "openai")
        return JSONResponse(
            {
                "create_calls": calls.get("create", 0),
                "jobs_created": len(listing),
                "calls": calls,
                "by_protocol": by_protocol,
                "jobs": listing,
            }
        )

    @r.get("/calls")
    async def calls(request: Request) -> Response:
        """The latest /v1 calls one by one (``?since=`` epoch seconds): ``[time, route,
        status]``, status the fault's HTTP status (429: rate limited) or 0 when served."""
        raw = request.query_params.get("since", "0")
        try:
            since = float(raw)
        except ValueError:
            raise invalid_value("since", raw, ("epoch seconds",)) from None
        return JSONResponse({"calls": [list(call) for call in sim.call_log if call[0] > since]})

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


def _calls(sim: Simulator, protocol: Protocol) -> dict[str, int]:
    return sim.calls if protocol == "openai" else sim.protocol_calls.get(protocol, {})


def _protocol_param(raw: str | None) -> Protocol | None:
    if raw is None:
        return None
    for protocol in PROTOCOLS:
        if raw == protocol:
            return protocol
    raise invalid_value("protocol", raw, PROTOCOLS)


def _job_summary(job: Job, now: float) -> dict[str, Any]:
    state = job.state(now)
    return {
        "id": job.id,
        "protocol": job.protocol,
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
        "callback_urls": job.notes.get("callback_urls", []),
        "user_metadata": job.notes.get("user_metadata"),
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


def _add_model_routes(r: APIRouter, sim: Simulator) -> None:
    @r.put("/models/retired")
    async def retire_models(request: Request) -> Response:
        """Models that answer 404 from now on (a provider retiring a model mid-run)."""
        retired = _parse(RetiredModels, await request.body())
        sim.retired_models = set(retired.models)
        return JSONResponse({"models": sorted(sim.retired_models)})


def _parse(model: type[_Model], body: bytes) -> _Model:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise bad_request(f"Invalid admin request: {exc.errors(include_url=False)}") from None
