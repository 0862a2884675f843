"""``GET /``: a small gallery page (static HTML + JS, no build step). The page holds no data
and no credentials: it signs in with a key (``/v1/session``) and then reads through the API
with the session cookie. While the ``coming_soon`` flag is on, a holding page instead."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from reelvault_gateway.deps import ContextDep

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Scripts and styles only from this origin; media may come from the storage backend's host.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: http: https:; "
    "media-src 'self' http: https:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)

router = APIRouter(tags=["gallery"])


@router.get(
    "/",
    response_class=HTMLResponse,
    summary="Gallery page",
    responses={
        200: {"content": {"text/html": {}}, "description": "The gallery (or a holding page)."}
    },
)
async def gallery(context: ContextDep) -> HTMLResponse:
    page = "coming-soon.html" if context.flags.current.coming_soon else "index.html"
    html = (STATIC_DIR / page).read_text(encoding="utf-8")
    # no-cache: the page changes with the coming_soon flag.
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"}
    return HTMLResponse(html, headers=headers)
