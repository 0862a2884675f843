"""``GET /``: a small gallery page (static HTML + JS, no build step, no credentials)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

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
    responses={200: {"content": {"text/html": {}}, "description": "The gallery."}},
)
async def gallery() -> HTMLResponse:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})
