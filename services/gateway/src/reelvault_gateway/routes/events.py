"""``GET /v1/events``: the caller's organization's video events, live (Server-Sent Events).
The rules are in ``live_events.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from reelvault_common.contracts.tenancy import Scope
from starlette.responses import StreamingResponse
from starlette.types import Receive, Send
from starlette.types import Scope as AsgiScope

from reelvault_gateway.broker import BrokerUnavailable
from reelvault_gateway.credentials import authorize
from reelvault_gateway.deps import ContextDep, ReadPrincipal
from reelvault_gateway.errors import ApiError, ErrorResponse, error_responses
from reelvault_gateway.live_events import (
    LiveEvents,
    event_stream,
    requested_types,
    resume_after,
)
from reelvault_gateway.sessions import COOKIE_NAME

router = APIRouter(prefix="/v1/events", tags=["events"])

EXAMPLE = (
    ": connected\nretry: 3000\n\n"
    "event: video.generation.progress\n"
    'data: {"type":"video.generation.progress","video_id":"…","org":"acme","progress":40,…}\n'
    "id: 1042\n\n"
    ": keep-alive\n\n"
)


class EventStreamResponse(StreamingResponse):
    """An SSE response that always closes its body, so the stream's consumer and its slot are
    given back as soon as the client is gone (not whenever the generator is collected).
    (Not FastAPI's ``EventSourceResponse``: that one is for path operations that yield, and
    here the consumer must exist before the answer starts.)"""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[bytes], status_code: int = 200) -> None:
        super().__init__(body, status_code=status_code, headers={"Cache-Control": "no-store",
                                        # Proxies such as nginx must not hold events back.
                                        "X-Accel-Buffering": "no"})
        self._body = body

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self._body, "aclose", None)
            if close is not None:
                await close()


# Errors are the JSON envelope, as everywhere (the route's own media type is the stream's).
JSON_ERRORS = {
    status: {
        "description": entry["description"],
        "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{ErrorResponse.__name__}"}}},
    }
    for status, entry in error_responses(400, 401, 403, 422, 429, 503).items()
}


def get_live_events(request: Request) -> LiveEvents:
    live: LiveEvents | None = getattr(request.app.state, "live_events", None)
    if live is None:  # the app's lifespan has not run (yet)
        raise BrokerUnavailable("live events are not set up")
    return live


@router.get(
    "",
    response_class=EventStreamResponse,
    status_code=200,
    summary="Live events of your organization (Server-Sent Events)",
    responses={
        200: {
            "description": "An endless `text/event-stream`: one event per video event of your "
            "organization, `id` its stream sequence, `event` its type, `data` its JSON; "
            "comment lines keep the connection alive.",
            "content": {"text/event-stream": {"schema": {"type": "string"},
                                              "example": EXAMPLE}},
        },
        **JSON_ERRORS,
    },
)
async def stream_events(
    request: Request,
    principal: ReadPrincipal,
    context: ContextDep,
    types: Annotated[
        str | None,
        Query(max_length=1000, description="Only these event types, comma-separated "
              "(e.g. `video.completed,video.failed`); default: every video event."),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=64,
               description="Resume after this event (what a browser's EventSource sends "
               "when it reconnects): every later event of yours, none twice."),
    ] = None,
    after: Annotated[
        str | None,
        Query(max_length=64, description="Like `Last-Event-ID`, for clients that cannot set "
              "headers; the header wins."),
    ] = None,
) -> EventStreamResponse:
    """Without `Last-Event-ID` the stream starts with the next event; with it, right after that
    event (events are kept as long as the stream keeps them, 30 days by default). At most
    `REELVAULT_EVENTS_MAX_STREAMS_PER_ORG` streams per organization and gateway (429
    `too_many_streams`). The stream ends when the gateway stops or the key stops working;
    reconnect with the last id you saw."""
    resume = resume_after(last_event_id if last_event_id is not None else after)
    wanted = requested_types(types)
    live = get_live_events(request)
    org = principal.org
    if not live.slots.take(org):
        raise ApiError(
            429, "too_many_streams",
            f"Your organization has {live.slots.limit} event streams open on this server; "
            "close one or retry later.",
            headers={"Retry-After": "5"},
        )
    try:
        tail = await live.open(org, resume, wanted)
    except BaseException:
        live.slots.give_back(org)
        raise
    authorization = request.headers.getlist("authorization")
    session = request.cookies.get(COOKIE_NAME)

    async def still_allowed() -> bool:
        # Any doubt ends the stream: the client comes back with its last id and is checked
        # like any request.
        try:
            found = await context.auth.authenticate(authorization, session)
            authorize(found, Scope.VIDEOS_READ)
        except Exception:
            return False
        return found.org == org

    return EventStreamResponse(event_stream(live, tail, org, still_allowed))
