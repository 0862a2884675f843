"""The HTTP face of the simulator: ``/v1/videos`` as documented, plus ``/healthz``, the signed
"CDN" route used by content redirects, and the test-only ``/_sim`` admin routes."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelvault_providersim import admin, gemini, openrouter
from reelvault_providersim.content import ContentTokens, CutFileResponse, file_response
from reelvault_providersim.create_params import (
    CreateParams,
    parse_video_source,
    read_body,
    reject_unknown,
    validate_create,
    validate_extension_seconds,
    validate_prompt,
)
from reelvault_providersim.engine import VARIANTS, Simulator, Variant
from reelvault_providersim.errors import (
    ApiError,
    bad_request,
    invalid_api_key,
    invalid_value,
    not_found,
)
from reelvault_providersim.faults import ContentCut, Route
from reelvault_providersim.jobs import Clock, Order, UnknownCursorError
from reelvault_providersim.settings import SimSettings

LIST_DEFAULT_LIMIT = 20
LIST_MAX_LIMIT = 100


def create_app(settings: SimSettings, *, clock: Clock | None = None) -> FastAPI:
    sim = Simulator(settings, clock=clock or time.time)
    tokens = ContentTokens()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await sim.start()
        try:
            yield
        finally:
            await sim.stop()

    app = FastAPI(
        title="reelvault provider-sim",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.sim = sim
    _install_error_handlers(app)
    app.include_router(_v1_router(sim, tokens))
    app.include_router(_cdn_router(sim, tokens))
    app.include_router(openrouter.router(sim))
    app.include_router(gemini.router(sim))
    if settings.admin_enabled:
        app.include_router(admin.router(sim))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(RequestIdMiddleware)
    return app


def _guard(sim: Simulator, route: Route) -> Callable[[Request], Awaitable[None]]:
    """Auth first (a bad key is a 401 even under faults), then injected request faults."""

    async def dependency(request: Request) -> None:
        check_api_key(request, sim.settings.api_key.get_secret_value())
        sim.calls[route] = sim.calls.get(route, 0) + 1
        error = sim.faults.on_request(route)
        sim.call_log.append((sim.clock(), route, error.status if error is not None else 0))
        if error is not None:
            raise error
        delay = sim.faults.response_delay(route)
        if delay > 0:
            await asyncio.sleep(delay)  # a slow provider (tests of timeouts and shutdowns)

    return dependency


def check_api_key(request: Request, expected: str) -> None:
    header = request.headers.get("authorization")
    if header is None:
        raise invalid_api_key(None)
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise invalid_api_key(None)
    if not secrets.compare_digest(presented.encode(), expected.encode()):
        raise invalid_api_key(presented)


def _v1_router(sim: Simulator, tokens: ContentTokens) -> APIRouter:
    router = APIRouter(prefix="/v1")
    # Added in this order (the order routes are matched in).
    _add_video_routes(router, sim)
    _add_content_route(router, sim, tokens)
    _add_derived_video_routes(router, sim)
    return router


def _video_response(payload: dict[str, Any]) -> JSONResponse:
    return JSONResponse(payload)


def _add_video_routes(router: APIRouter, sim: Simulator) -> None:
    """Create, list, retrieve and delete ``/videos``."""

    @router.post("/videos", dependencies=[Depends(_guard(sim, "create"))])
    async def create_video(request: Request) -> Response:
        body = await read_body(request)
        params = await validate_create(body, fetch_image=sim.fetch_image)
        job = sim.create_job(params)
        job.notes["client_request_id"] = request.headers.get("x-client-request-id")
        return _video_response(job.to_video(sim.clock()))

    @router.get("/videos", dependencies=[Depends(_guard(sim, "list"))])
    async def list_videos(request: Request) -> Response:
        return _list_page(sim, request)

    @router.get("/videos/{video_id}", dependencies=[Depends(_guard(sim, "retrieve"))])
    async def retrieve_video(video_id: str) -> Response:
        job = sim.get_job(video_id)
        response = _video_response(job.to_video(sim.clock()))
        if sim.settings.poll_after_ms is not None:
            response.headers["openai-poll-after-ms"] = str(sim.settings.poll_after_ms)
        return response

    @router.delete("/videos/{video_id}", dependencies=[Depends(_guard(sim, "delete"))])
    async def delete_video(video_id: str) -> Response:
        job = sim.delete_job(video_id)
        return JSONResponse({"id": job.id, "object": "video.deleted", "deleted": True})


def _list_page(sim: Simulator, request: Request) -> Response:
    """One page of ``GET /videos`` (``limit``, ``order``, ``after``)."""
    query = request.query_params
    limit = _parse_limit(query.get("limit"))
    order_value = query.get("order", "desc")
    if order_value not in ("asc", "desc"):
        raise invalid_value("order", order_value, ("asc", "desc"))
    order: Order = "asc" if order_value == "asc" else "desc"
    after = query.get("after") or None
    try:
        page = sim.store.page(limit=limit, order=order, after=after)
    except UnknownCursorError:
        raise bad_request(
            f"Invalid 'after': no video with id '{after}'.", param="after", code="invalid_value"
        ) from None
    now = sim.clock()
    data = [job.to_video(now) for job in page.jobs]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more,
        }
    )


def _add_content_route(router: APIRouter, sim: Simulator, tokens: ContentTokens) -> None:
    @router.get("/videos/{video_id}/content", dependencies=[Depends(_guard(sim, "content"))])
    async def video_content(video_id: str, request: Request) -> Response:
        variant = _parse_variant(request.query_params.get("variant"))
        job = sim.get_job(video_id)
        content = sim.content_file(job, variant)
        if sim.settings.content_redirect:
            expires = int(sim.clock() + sim.settings.content_url_ttl_s)
            token = tokens.make(job.id, variant, expires)
            location = str(request.url_for("cdn_content", token=token))
            return RedirectResponse(location, status_code=302)
        return _serve(sim, content, request)


def _add_derived_video_routes(router: APIRouter, sim: Simulator) -> None:
    """Videos made from another one: remix, edits and extensions."""

    @router.post("/videos/{video_id}/remix", dependencies=[Depends(_guard(sim, "remix"))])
    async def remix_video(video_id: str, request: Request) -> Response:
        body = await read_body(request)
        reject_unknown(body, {"prompt"})
        prompt = validate_prompt(body)
        source = sim.get_job(video_id)
        if not source.content_available(sim.clock()):
            status = source.state(sim.clock()).status
            raise bad_request(
                f"Video '{source.id}' cannot be remixed: only completed videos whose content "
                f"has not expired can be remixed (status '{status}').",
                param="video_id",
                code="invalid_value",
            )
        params = CreateParams(prompt, source.model, source.seconds, source.size, None)
        job = sim.create_job(params, remixed_from=source, reference=sim.reference_of(source))
        return _video_response(job.to_video(sim.clock()))

    @router.post("/videos/edits", dependencies=[Depends(_guard(sim, "edit"))])
    async def edit_video(request: Request) -> Response:
        body = await read_body(request)
        reject_unknown(body, {"prompt", "video"})
        prompt = validate_prompt(body)
        source = await sim.resolve_source(parse_video_source(body.get("video")))
        params = CreateParams(prompt, source.model, str(source.seconds), source.size, None)
        job = sim.create_job(params, reference=source.reference)
        return _video_response(job.to_video(sim.clock()))

    @router.post("/videos/extensions", dependencies=[Depends(_guard(sim, "extend"))])
    async def extend_video(request: Request) -> Response:
        body = await read_body(request)
        reject_unknown(body, {"prompt", "video", "seconds"})
        prompt = validate_prompt(body)
        added = validate_extension_seconds(body)
        source = await sim.resolve_source(parse_video_source(body.get("video")))
        # An extension's seconds is the stitched total, as the SDK documents.
        total = str(source.seconds + int(added))
        params = CreateParams(prompt, source.model, total, source.size, None)
        job = sim.create_job(params, reference=source.reference)
        return _video_response(job.to_video(sim.clock()))


def _cdn_router(sim: Simulator, tokens: ContentTokens) -> APIRouter:
    router = APIRouter()

    @router.get("/cdn/{token}", name="cdn_content", include_in_schema=False)
    async def cdn_content(token: str, request: Request) -> Response:
        checked = tokens.check(token, sim.clock())
        if checked is None:
            raise not_found("This content URL is invalid or has expired.", code="invalid_url")
        video_id, variant = checked
        return _serve(sim, sim.content_file(sim.get_job(video_id), variant), request)

    return router


def _serve(sim: Simulator, content: Any, request: Request) -> Response:
    """Where the bytes are actually sent: the place download faults are decided."""
    fault = sim.faults.on_content()
    if isinstance(fault, ApiError):
        raise fault
    if isinstance(fault, ContentCut):
        return CutFileResponse(content, fault, request.headers.get("range"))
    return file_response(content)


def _parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return LIST_DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(
            f"Invalid 'limit': expected an integer, but got '{raw}' instead.",
            param="limit",
            code="invalid_type",
        ) from None
    if limit < 0:
        raise bad_request(
            f"Invalid 'limit': integer below minimum value. Expected a value >= 0, but got "
            f"{limit} instead.",
            param="limit",
            code="integer_below_min_value",
        )
    if limit > LIST_MAX_LIMIT:
        raise bad_request(
            f"Invalid 'limit': integer above maximum value. Expected a value <= {LIST_MAX_LIMIT}, "
            f"but got {limit} instead.",
            param="limit",
            code="integer_above_max_value",
        )
    return limit


def _parse_variant(raw: str | None) -> Variant:
    if raw is None:
        return "video"
    for variant in VARIANTS:
        if raw == variant:
            return variant
    raise invalid_value("variant", raw, VARIANTS)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path})"
        elif exc.status_code == 405:
            message = f"Method not allowed: {request.method} {request.url.path}"
        else:
            message = str(exc.detail)
        return ApiError(exc.status_code, message).response()

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        location = first.get("loc", ())
        param = str(location[-1]) if location else None
        return bad_request(
            f"Invalid request: {first.get('msg', 'invalid')}", param=param
        ).response()

    async def server_error(_: Request, exc: Exception) -> Response:
        return ApiError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        ).response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)


class RequestIdMiddleware:
    """``x-request-id`` on every reply, as the real API sends (handy when reading logs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4().hex}".encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)
