"""The HTTP face of the simulated Gemini API for Veo: ``predictLongRunning``, operation
polling, file download, model lookup and static webhooks, under ``/v1beta``."""

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
from starlette.responses import JSONResponse, RedirectResponse, Response

from reelvault_providersim import render
from reelvault_providersim.callbacks import NOT_LOOPBACK, callback_problem, should_send
from reelvault_providersim.content import ContentTokens, CutFileResponse, file_response
from reelvault_providersim.create_params import CreateParams
from reelvault_providersim.engine import ContentFile, Simulator
from reelvault_providersim.faults import ContentCut, FaultSettings, Route
from reelvault_providersim.gemini import webhooks as hooks
from reelvault_providersim.gemini.errors import (
    GoogleError,
    api_key_invalid,
    api_key_missing,
    invalid_argument,
    not_found,
    rpc_code,
    translate,
)
from reelvault_providersim.gemini.params import (
    SourceVideo,
    VeoRequest,
    file_id_in,
    resolve_model,
    validate,
)
from reelvault_providersim.images import decode_base64, fit_to_frame
from reelvault_providersim.jobs import Job
from reelvault_providersim.spec import frame_size
from reelvault_providersim.webhooks import Delivery

PREFIX = "/v1beta"
RESPONSE_TYPE = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
)
SAFETY_REASON = (
    "Your prompt conflicted with our safety policies. Try rephrasing your prompt. "
    "You will not be charged for this request."
)
_ID_CHARS = string.ascii_lowercase + string.digits
_ALPHANUMERIC = string.ascii_letters + string.digits
_EXTENDABLE_SIZES = ("1280x720", "720x1280")


@dataclass(frozen=True)
class _OperationFacts:
    root_url: str
    file_id: str
    resolution: str
    webhook_uris: list[str] | None
    user_metadata: dict[str, Any] | None


class GeminiApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.operations: dict[str, _OperationFacts] = {}
        self.files: dict[str, str] = {}  # file id -> operation id (the job id)
        self.webhooks: dict[str, hooks.Webhook] = {}
        self.tokens = ContentTokens()
        sim.terminal_listeners["gemini"] = self.on_terminal

    def _new_id(self, length: int, taken: Callable[[str], bool]) -> str:
        while True:
            candidate = self.sim.store.token(length, _ID_CHARS)
            if not taken(candidate):
                return candidate

    # -- jobs --

    def create(self, request: VeoRequest, root_url: str, reference: bytes | None) -> Job:
        op_id = self._new_id(12, self.sim.store.contains)
        params = CreateParams(request.prompt, request.model.id, str(request.seconds),
                              request.size, None)
        job = self.sim.create_job(
            params,
            reference=reference,
            protocol="gemini",
            ttl_s=self.sim.settings.gemini_content_ttl_s,
            job_id=op_id,
        )
        file_id = self._new_id(12, lambda fid: fid in self.files)
        self.files[file_id] = job.id
        self.operations[job.id] = _OperationFacts(
            root_url, file_id, request.resolution, request.webhook_uris, request.user_metadata
        )
        job.notes["callback_urls"] = list(request.webhook_uris or [])
        job.notes["user_metadata"] = request.user_metadata
        return job

    def file_uri(self, job: Job) -> str:
        facts = self.operations[job.id]
        return f"{facts.root_url}{PREFIX}/files/{facts.file_id}:download?alt=media"

    def operation(self, job: Job) -> dict[str, Any]:
        name = f"models/{job.model}/operations/{job.id}"
        state = job.state(self.sim.clock())
        if not state.terminal:
            return {"name": name}
        if state.status in ("completed", "expired"):
            # Expired: generated, but the file is gone before anyone fetched it (404).
            sample = {"video": {"uri": self.file_uri(job)}}
            return _done(name, {"generatedSamples": [sample]})
        error = state.error
        assert error is not None
        if error.code == "moderation_blocked":
            default = error.message == FaultSettings().job_failed_message
            reason = SAFETY_REASON if default else error.message
            return _done(name, {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [reason]})
        code = 1 if state.status == "cancelled" else rpc_code(error.code)
        return {"name": name, "done": True, "error": {"code": code, "message": error.message}}

    async def resolve_source(self, video: dict[str, Any]) -> SourceVideo:
        """What an extension continues: an earlier result by URI, or inline MP4 bytes."""
        where = "instances[0].video"
        uri = video.get("uri")
        if isinstance(uri, str):
            file_id = file_id_in(uri)
            job = self.job_of_file(file_id) if file_id else None
            if job is None or not job.content_available(self.sim.clock()):
                raise invalid_argument(
                    "The input video was not found; it must be a Veo video generated in the "
                    "last 2 days.", where)
            if job.size not in _EXTENDABLE_SIZES:
                raise invalid_argument("Only 720p videos can be extended.", where)
            return SourceVideo(job.size, int(job.seconds), self.sim.reference_of(job))
        inline = video.get("inlineData")
        encoded = inline.get("data") if isinstance(inline, dict) else video.get("encodedVideo")
        if not isinstance(encoded, str):
            raise invalid_argument("video needs a uri or inline video bytes.", where)
        try:
            probe = await asyncio.to_thread(render.probe_video, decode_base64(encoded))
        except ValueError:
            raise invalid_argument("The input video could not be decoded.", where) from None
        size = f"{probe.width}x{probe.height}"
        if size not in _EXTENDABLE_SIZES:
            raise invalid_argument(f"Only 720p videos can be extended (got {size}).", where)
        return SourceVideo(size, max(1, round(probe.seconds)), probe.first_frame_png)

    def job_of_file(self, file_id: str) -> Job | None:
        op_id = self.files.get(file_id)
        return self.sim.find_job(op_id, "gemini") if op_id else None

    def content(self, job: Job) -> ContentFile:
        if not job.content_available(self.sim.clock()):
            raise not_found(f"File files/{self.operations[job.id].file_id} not found.")
        return self.sim.content_file(job, "video")

    # -- webhooks --

    def on_terminal(self, job: Job) -> None:
        """``video.generated`` once a video exists; Gemini has no failure event."""
        if job.state(self.sim.clock()).status != "completed":
            return
        facts = self.operations[job.id]
        now = self.sim.clock()
        data: dict[str, Any] = {
            "id": f"models/{job.model}/operations/{job.id}",
            "output_file_uri": self.file_uri(job),
            "video_uri": self.file_uri(job),
            "file_name": f"files/{facts.file_id}",
        }
        if facts.user_metadata is not None:
            data["user_metadata"] = facts.user_metadata
        payload = {"type": "video.generated", "version": "v1",
                   "timestamp": hooks.rfc3339(now), "data": data}
        body = json.dumps(payload, separators=(",", ":")).encode()
        webhook_id = f"msg_{self.sim.store.token(24, _ALPHANUMERIC)}"
        if facts.webhook_uris is not None:
            targets = [(uri, self._dynamic_secrets(now)) for uri in facts.webhook_uris]
        else:
            targets = [
                (hook.uri, hook.live_secrets(now))
                for hook in self.webhooks.values()
                if hook.state == "enabled" and "video.generated" in hook.subscribed_events
            ]
        for uri, keys in targets:
            self.send(Delivery(webhook_id, "video.generated", job.id, uri, body,
                                protocol="gemini", headers=_signer(keys, webhook_id, body)))

    def _dynamic_secrets(self, now: float) -> list[str]:
        """Per-request URIs: the configured secret, else the newest registered webhook's."""
        configured = self.sim.settings.gemini_webhook_secret
        if configured is not None:
            return [configured.get_secret_value()]
        newest = max(self.webhooks.values(), key=lambda h: h.create_time, default=None)
        return newest.live_secrets(now)[:1] if newest else []

    def send(self, delivery: Delivery) -> None:
        if should_send(delivery.url, self.sim.settings):
            self.sim.webhooks.send(delivery)
        else:
            self.sim.webhooks.skip(delivery, NOT_LOOPBACK)


def _signer(keys: list[str], webhook_id: str, body: bytes) -> Callable[[int], dict[str, str]]:
    def headers(timestamp: int) -> dict[str, str]:
        return hooks.standard_headers(keys, webhook_id, timestamp, body)

    return headers


def _done(name: str, video_response: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "done": True,
        "response": {"@type": RESPONSE_TYPE, "generateVideoResponse": video_response},
    }


def check_key(request: Request, expected: str) -> None:
    presented = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not presented:
        raise api_key_missing()
    if not secrets.compare_digest(presented.encode(), expected.encode()):
        raise api_key_invalid()


def _guard(api: GeminiApi, route: Route | None) -> Callable[[Request], Awaitable[None]]:
    """Auth first (a bad key is refused even under faults), then injected request faults
    (none on the webhook management routes: ``route`` None)."""
    sim = api.sim

    async def dependency(request: Request) -> None:
        check_key(request, sim.settings.protocol_api_key("gemini"))
        sim.count_call("gemini", route or "webhooks")
        if route is None:
            return
        model = request.path_params.get("model") or request.path_params.get("target")
        error = sim.faults.on_request(route, protocol="gemini")
        if error is not None:
            raise translate(error, str(model).split(":")[0] if model else None)
        delay = sim.faults.response_delay(route, "gemini")
        if delay > 0:
            await asyncio.sleep(delay)

    return dependency


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise invalid_argument("Invalid JSON payload received.") from None
    if not isinstance(body, dict):
        raise invalid_argument("Invalid JSON payload received. Expected an object.")
    return body


def router(sim: Simulator) -> APIRouter:
    api = GeminiApi(sim)
    r = APIRouter(include_in_schema=False)
    _add_model_routes(r, api)
    _add_file_routes(r, api)
    _add_webhook_routes(r, api)
    return r


def _add_model_routes(r: APIRouter, api: GeminiApi) -> None:
    sim = api.sim

    @r.post(PREFIX + "/models/{target}", dependencies=[Depends(_guard(api, "create"))])
    async def predict(target: str, request: Request) -> Response:
        model_id, _, method = target.partition(":")
        if method != "predictLongRunning":
            raise not_found(f"Method {method or '(none)'} is not found for models/{model_id}.")
        model = resolve_model(model_id, sim.retired_models, method)
        body = await _json_body(request)
        video = await validate(body, model, sim.settings, api.resolve_source)
        first = video.image or (video.references[0] if video.references else None)
        if first is None and video.source is not None:
            first = video.source.first_frame
        reference = None
        if first is not None:
            width, height = frame_size(video.size)
            reference = await anyio.to_thread.run_sync(fit_to_frame, first, width, height)
        job = api.create(video, str(request.base_url).rstrip("/"), reference)
        return JSONResponse({"name": f"models/{model.id}/operations/{job.id}"})

    @r.get(PREFIX + "/models/{model}", dependencies=[Depends(_guard(api, "models"))])
    async def get_model(model: str) -> Response:
        spec = resolve_model(model, sim.retired_models, "get")
        return JSONResponse({
            "name": f"models/{spec.id}",
            "version": spec.id.split("-")[1],
            "displayName": spec.display_name,
            "description": f"{spec.display_name}: video generation.",
            "inputTokenLimit": 1024,
            "outputTokenLimit": 0,
            "supportedGenerationMethods": ["predictLongRunning"],
        })

    @r.get(PREFIX + "/models/{model}/operations/{op_id}",
           dependencies=[Depends(_guard(api, "retrieve"))])
    async def get_operation(model: str, op_id: str) -> Response:
        job = sim.find_job(op_id, "gemini")
        if job is None or job.model != model:
            raise not_found(f"Operation models/{model}/operations/{op_id} not found.")
        return JSONResponse(api.operation(job))


def _add_file_routes(r: APIRouter, api: GeminiApi) -> None:
    sim = api.sim

    @r.get(PREFIX + "/files/{target}", dependencies=[Depends(_guard(api, "content"))])
    async def get_file(target: str, request: Request) -> Response:
        file_id, _, method = target.partition(":")
        job = api.job_of_file(file_id)
        if job is None or not job.state(sim.clock()).terminal:
            raise not_found(f"File files/{file_id} not found.")
        if method == "download":
            content = api.content(job)
            if sim.settings.content_redirect:
                expires = int(sim.clock() + sim.settings.content_url_ttl_s)
                token = api.tokens.make(job.id, "video", expires)
                location = str(request.url_for("gemini_storage", token=token))
                return RedirectResponse(location, status_code=302)
            return _serve(api, content, request)
        if method:
            raise not_found(f"Method {method} is not found for files/{file_id}.")
        return JSONResponse(_file_metadata(api, job, file_id))

    @r.get("/gemini-storage/{token}", name="gemini_storage")
    async def storage(token: str, request: Request) -> Response:
        checked = api.tokens.check(token, sim.clock())
        job = sim.find_job(checked[0], "gemini") if checked else None
        if job is None:
            raise GoogleError(403, "The signed URL is invalid or has expired.")
        return _serve(api, api.content(job), request)


def _serve(api: GeminiApi, content: ContentFile, request: Request) -> Response:
    fault = api.sim.faults.on_content("gemini")
    if isinstance(fault, ContentCut):
        return CutFileResponse(content, fault, request.headers.get("range"))
    if fault is not None:
        raise translate(fault)
    return file_response(content)


def _file_metadata(api: GeminiApi, job: Job, file_id: str) -> dict[str, Any]:
    state = job.state(api.sim.clock())
    out: dict[str, Any] = {
        "name": f"files/{file_id}",
        "mimeType": "video/mp4",
        "createTime": hooks.rfc3339(job.created_at),
        "uri": api.file_uri(job),
        "downloadUri": api.file_uri(job),
        "state": "ACTIVE",
        "source": "GENERATED",
    }
    if state.completed_at is not None:
        out["updateTime"] = hooks.rfc3339(state.completed_at)
        out["expirationTime"] = hooks.rfc3339(state.completed_at + job.ttl_s)
    return out


def _add_webhook_routes(r: APIRouter, api: GeminiApi) -> None:
    sim = api.sim
    guard = [Depends(_guard(api, None))]

    def find(webhook_id: str) -> hooks.Webhook:
        hook = api.webhooks.get(webhook_id)
        if hook is None:
            raise not_found(f"Webhook webhooks/{webhook_id} not found.")
        return hook

    @r.post(PREFIX + "/webhooks", dependencies=guard)
    async def create_webhook(request: Request) -> Response:
        body = await _json_body(request)
        uri, events = _webhook_fields(body, sim, required=True)
        now = sim.clock()
        secret = hooks.new_secret()
        assert uri is not None
        assert events is not None
        hook = hooks.Webhook(
            id=sim.store.token(16, _ID_CHARS), uri=uri, subscribed_events=events,
            create_time=now, update_time=now,
            display_name=body.get("name") if isinstance(body.get("name"), str) else None,
            secrets=[hooks.SigningSecret(secret)],
        )
        api.webhooks[hook.id] = hook
        return JSONResponse(hook.as_dict(new_secret=secret))

    @r.get(PREFIX + "/webhooks", dependencies=guard)
    async def list_webhooks() -> Response:
        return JSONResponse({"webhooks": [hook.as_dict() for hook in api.webhooks.values()]})

    @r.get(PREFIX + "/webhooks/{webhook_id}", dependencies=guard)
    async def get_webhook(webhook_id: str) -> Response:
        return JSONResponse(find(webhook_id).as_dict())

    @r.delete(PREFIX + "/webhooks/{webhook_id}", dependencies=guard)
    async def delete_webhook(webhook_id: str) -> Response:
        find(webhook_id)
        del api.webhooks[webhook_id]
        return JSONResponse({})

    @r.patch(PREFIX + "/webhooks/{webhook_id}", dependencies=guard)
    async def update_webhook(webhook_id: str, request: Request) -> Response:
        hook = find(webhook_id)
        body = await _json_body(request)
        uri, events = _webhook_fields(body, sim, required=False)
        state = body.get("state")
        if state is not None and state not in ("enabled", "disabled"):
            raise invalid_argument(f"Unsupported state value: {state}.", "state")
        hook.uri = uri or hook.uri
        hook.subscribed_events = events or hook.subscribed_events
        hook.state = state or hook.state
        hook.update_time = sim.clock()
        return JSONResponse(hook.as_dict())

    @r.post(PREFIX + "/webhooks/{target}", dependencies=guard)
    async def webhook_action(target: str, request: Request) -> Response:
        webhook_id, _, method = target.partition(":")
        hook = find(webhook_id)
        body = await _json_body(request)
        if method == "rotateSigningSecret":
            revocation = body.get("revocation_behavior", body.get("revocationBehavior",
                                                                  hooks.REVOCATIONS[0]))
            if revocation not in hooks.REVOCATIONS:
                raise invalid_argument(f"Unsupported revocation_behavior: {revocation}.",
                                       "revocation_behavior")
            return JSONResponse({"secret": hook.rotate(sim.clock(), revocation)})
        if method == "ping":
            now = sim.clock()
            payload = {"type": "webhook.ping", "version": "v1",
                       "timestamp": hooks.rfc3339(now), "data": {"id": f"webhooks/{hook.id}"}}
            raw = json.dumps(payload, separators=(",", ":")).encode()
            webhook_id_ = f"msg_{sim.store.token(24, _ALPHANUMERIC)}"
            api.send(Delivery(webhook_id_, "webhook.ping", "", hook.uri, raw,
                               protocol="gemini",
                               headers=_signer(hook.live_secrets(now), webhook_id_, raw)))
            return JSONResponse({})
        raise not_found(f"Method {method or '(none)'} is not found for webhooks/{webhook_id}.")


def _webhook_fields(
    body: dict[str, Any], sim: Simulator, *, required: bool
) -> tuple[str | None, list[str] | None]:
    uri = body.get("uri")
    events = body.get("subscribed_events", body.get("subscribedEvents"))
    if uri is None and required:
        raise invalid_argument("uri is required.", "uri")
    if uri is not None:
        problem = callback_problem(uri, sim.settings) if isinstance(uri, str) else "is invalid"
        if problem is not None:
            raise invalid_argument(f"uri {problem}.", "uri")
    if events is None and required:
        raise invalid_argument("subscribed_events is required.", "subscribed_events")
    if events is not None and (not isinstance(events, list) or not events or any(
        e not in hooks.EVENTS for e in events
    )):
        raise invalid_argument(
            f"subscribed_events must list events among: {', '.join(hooks.EVENTS)}.",
            "subscribed_events",
        )
    return uri, events
