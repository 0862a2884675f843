"""A small OpenAI-Videos-API content peer for tests, served over real HTTP on 127.0.0.1.

It follows docs/providers/openai-videos.md for what it serves: ``GET /v1/videos/{id}/content`` with
``?variant=video|thumbnail|spritesheet``, Bearer auth (401 envelope), the error envelope on
every non-2xx reply, 404 for unknown or expired ids. Faults are queued per job: an HTTP error
status, or a body cut mid-way (the full Content-Length is announced, fewer bytes are sent, then
the connection drops). Bodies are generated chunk by chunk, so a 100 MB video costs no memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

CHUNK = 1024 * 1024
MEDIA_TYPES = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}


@dataclass(frozen=True)
class Fault:
    status: int | None = None  # answer this HTTP status with the error envelope
    cut_after_bytes: int | None = None  # send this many body bytes, then drop the connection
    retry_after_s: float | None = None


@dataclass
class PeerJob:
    id: str
    video_bytes: int
    thumbnail: bool
    expires_at: float
    seed: int
    faults: dict[str, deque[Fault]] = field(default_factory=dict)

    def size(self, variant: str) -> int:
        return self.video_bytes if variant == "video" else 4096

    def chunks(self, variant: str) -> Iterator[bytes]:
        """Deterministic bytes: a seeded block, each chunk stamped with its index."""
        block = hashlib.sha256(f"{self.id}:{variant}:{self.seed}".encode()).digest() * (CHUNK // 32)
        remaining, index = self.size(variant), 0
        while remaining > 0:
            chunk = index.to_bytes(8, "big") + block[8:]
            yield chunk[: min(CHUNK, remaining)]
            remaining -= CHUNK
            index += 1

    def sha256(self, variant: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks(variant):
            digest.update(chunk)
        return digest.hexdigest()


class VideosPeer:
    def __init__(self, api_key: str, *, chunk_delay_s: float = 0.0) -> None:
        self.api_key = api_key
        self.chunk_delay_s = chunk_delay_s
        self.jobs: dict[str, PeerJob] = {}
        # (job id, variant, status) of every content request, in order.
        self.requests: list[tuple[str, str, int]] = []
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.base_url = ""

    # --- jobs and faults ------------------------------------------------------------------
    def add_job(
        self, *, video_bytes: int = 3 * CHUNK + 123, thumbnail: bool = True, ttl_s: float = 3600
    ) -> PeerJob:
        job_id = f"video_{len(self.jobs):04d}{int(time.time() * 1000) % 10**8:08d}"
        job = PeerJob(job_id, video_bytes, thumbnail, time.time() + ttl_s, seed=len(self.jobs))
        self.jobs[job_id] = job
        return job

    def fail_next(self, job: PeerJob, variant: str, fault: Fault, times: int = 1) -> None:
        job.faults.setdefault(variant, deque()).extend([fault] * times)

    def downloads(self, job: PeerJob, variant: str = "video") -> list[int]:
        return [status for jid, var, status in self.requests if jid == job.id and var == variant]

    # --- ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        parts = scope["path"].strip("/").split("/")
        query = dict(
            p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p
        )
        if headers.get("authorization") != f"Bearer {self.api_key}":
            await self._error(send, 401, "Incorrect API key provided.", code="invalid_api_key")
            return
        if scope["method"] != "GET" or len(parts) != 4 or parts[:2] != ["v1", "videos"] or parts[
            3
        ] != "content":
            await self._error(send, 404, f"Unknown route {scope['path']}", code="not_found")
            return
        job_id, variant = parts[2], query.get("variant", "video")
        if variant not in MEDIA_TYPES:
            await self._error(send, 400, f"Invalid value: '{variant}'.", param="variant",
                              code="invalid_value")
            return
        job = self.jobs.get(job_id)
        if job is None or time.time() >= job.expires_at:
            self.requests.append((job_id, variant, 404))
            await self._error(send, 404, f"Video with id '{job_id}' not found.")
            return
        if variant != "video" and not job.thumbnail:
            self.requests.append((job_id, variant, 404))
            await self._error(send, 404, f"Video '{job_id}' has no {variant}.")
            return
        queue = job.faults.get(variant)
        fault = queue.popleft() if queue else None
        if fault is not None and fault.status is not None:
            self.requests.append((job_id, variant, fault.status))
            extra = {} if fault.retry_after_s is None else {"retry-after": str(fault.retry_after_s)}
            await self._error(send, fault.status, "The server had an error.", type="server_error",
                              extra=extra)
            return
        self.requests.append((job_id, variant, 200))
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", MEDIA_TYPES[variant].encode()),
                        (b"content-length", str(job.size(variant)).encode())],
        })
        cut = fault.cut_after_bytes if fault is not None else None
        sent = 0
        for chunk in job.chunks(variant):
            if cut is not None and sent + len(chunk) > cut:
                await send({"type": "http.response.body", "body": chunk[: cut - sent],
                            "more_body": True})
                # Returning mid-body makes the server drop the connection: the client sees
                # fewer bytes than Content-Length promised.
                raise ConnectionAbortedError("peer cut the download on purpose")
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _error(
        send: Any, status: int, message: str, *, type: str = "invalid_request_error",
        param: str | None = None, code: str | None = None, extra: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps(
            {"error": {"message": message, "type": type, "param": param, "code": code}}
        ).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    # --- serving --------------------------------------------------------------------------
    async def start(self) -> str:
        config = uvicorn.Config(
            self, host="127.0.0.1", port=0, http="h11", lifespan="off", log_level="critical"
        )
        server = self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(server.serve())
        deadline = time.monotonic() + 10
        while not server.started:
            if self._task.done() or time.monotonic() > deadline:
                raise RuntimeError("videos peer did not start")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    async def __aenter__(self) -> VideosPeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
