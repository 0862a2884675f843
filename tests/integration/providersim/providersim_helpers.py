"""Helpers shared by the simulator's integration tests (imported by name: pytest puts this
directory on sys.path, and the unusual module name avoids clashes with other test dirs)."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import httpx
from PIL import Image
from reelvault_common.providers.openai_videos import TERMINAL_STATUSES

API_KEY = "sk-test-providersim-0123456789abcdef"
GENERATION_S = 0.2
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def png(size: tuple[int, int], colour: tuple[int, int, int] = (20, 120, 220)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def wait_terminal(
    http: httpx.AsyncClient, video_id: str, timeout_s: float = 20
) -> dict[str, Any]:
    """Poll the raw API until the job is terminal (short sleeps: jobs take ~0.2 s here)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = await http.get(f"/videos/{video_id}", headers=AUTH)
        reply.raise_for_status()
        video: dict[str, Any] = reply.json()
        if video["status"] in TERMINAL_STATUSES:
            return video
        if time.monotonic() > deadline:
            raise AssertionError(f"{video_id} still {video['status']} after {timeout_s} s")
        await asyncio.sleep(0.05)


class HookReceiver:
    """A webhook endpoint recording each delivery (raw body, headers); ``wait(n)`` returns
    once ``n`` have arrived."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.received: list[tuple[bytes, dict[str, str]]] = []
        self._changed = asyncio.Event()
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Any) -> Any:
        from starlette.responses import Response

        self.received.append((await request.body(), dict(request.headers)))
        self._changed.set()
        return Response(status_code=204)

    async def wait(self, count: int, timeout_s: float = 20) -> list[tuple[bytes, dict[str, str]]]:
        async with asyncio.timeout(timeout_s):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.received
