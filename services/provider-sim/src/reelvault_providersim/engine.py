"""The simulator's moving parts: jobs, their renders, their files, faults and webhooks.

Routes stay thin and call into ``Simulator``. A job's render starts at create time in a worker
thread (a bounded pool, so a burst of creates queues instead of starving the event loop); a
per-job task then waits for the job's planned finish and sends its webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from reelvault_providersim import render
from reelvault_providersim.create_params import (
    MAX_REFERENCE_BYTES,
    CreateParams,
    VideoSource,
    is_loopback_url,
)
from reelvault_providersim.errors import bad_request, invalid_value, not_found, video_not_found
from reelvault_providersim.faults import FaultPolicy
from reelvault_providersim.jobs import Clock, Job, JobStore, Protocol
from reelvault_providersim.settings import SimSettings
from reelvault_providersim.spec import SIZES_BY_MODEL, frame_size
from reelvault_providersim.webhooks import WebhookDispatcher

# Calls kept in ``call_log``: ten minutes at 1,000 requests per minute.
CALL_LOG_SIZE = 10_000

log = logging.getLogger(__name__)

Variant = Literal["video", "thumbnail", "spritesheet"]
VARIANTS: tuple[Variant, ...] = ("video", "thumbnail", "spritesheet")
MEDIA_TYPES: dict[Variant, str] = {
    "video": "video/mp4",
    "thumbnail": "image/webp",
    "spritesheet": "image/jpeg",
}
_FILES: dict[Variant, str] = {
    "video": render.VIDEO_FILE,
    "thumbnail": render.THUMBNAIL_FILE,
    "spritesheet": render.SPRITESHEET_FILE,
}
REFERENCE_FILE = "reference.bin"
SWEEP_EVERY_S = 30.0


def _link_render(source: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _FILES.values():
        try:
            os.link(source / name, out_dir / name)
        except OSError:  # another filesystem: a copy will do
            shutil.copyfile(source / name, out_dir / name)


@dataclass(frozen=True)
class SourceVideo:
    """What an edit or extension starts from."""

    model: str
    size: str
    seconds: int
    reference: bytes | None


@dataclass(frozen=True)
class ContentFile:
    path: Path
    media_type: str
    filename: str


class Simulator:
    def __init__(self, settings: SimSettings, *, clock: Clock = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.store = JobStore(seed=settings.seed, clock=clock)
        self.faults = FaultPolicy(settings.faults, seed=settings.seed, clock=clock)
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        self.webhooks = WebhookDispatcher(
            urls=settings.webhook_urls,
            secret=secret,
            seed=settings.seed,
            clock=clock,
            max_attempts=settings.webhook_max_attempts,
            backoff_s=settings.webhook_backoff_s,
            backoff_max_s=settings.webhook_backoff_max_s,
            timeout_s=settings.webhook_timeout_s,
        )
        self._executor = ThreadPoolExecutor(settings.render_workers, "provider-sim-render")
        self._tasks: set[asyncio.Task[None]] = set()
        self._temp_dir: tempfile.TemporaryDirectory[str] | None = None
        self._data_dir: Path | None = None
        self._swept: set[str] = set()
        # reuse_renders: one finished render per clip shape, hard-linked into later jobs.
        self._renders: dict[tuple[object, ...], asyncio.Future[Path]] = {}
        # Authenticated /v1 calls per route, faulted ones included (admin listing).
        self.calls: dict[str, int] = {}
        # The same for the other protocols' routes, per protocol.
        self.protocol_calls: dict[Protocol, dict[str, int]] = {}
        # The same /v1 calls one by one (time, route, HTTP status of a fault or 0), newest
        # last, bounded: a benchmark counts the calls of any 60 s window from it.
        self.call_log: deque[tuple[float, str, int]] = deque(maxlen=CALL_LOG_SIZE)
        # Called once when a job of that protocol reaches its terminal state (its webhooks);
        # OpenAI jobs without a listener send the Standard Webhooks events below.
        self.terminal_listeners: dict[Protocol, Callable[[Job], None]] = {}
        # Model ids every protocol answers 404 for, beyond its built-in retired ones.
        self.retired_models: set[str] = set(settings.retired_models)

    # -- lifecycle --

    async def start(self) -> None:
        if self.settings.data_dir is None:
            self._temp_dir = tempfile.TemporaryDirectory(prefix="provider-sim-")
            self._data_dir = Path(self._temp_dir.name)
        else:
            self._data_dir = self.settings.data_dir
            self._data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(self._sweep_forever())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.webhooks.aclose()
        # Renders in flight cannot be interrupted; they are short, wait for them.
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._temp_dir is not None:
            self._temp_dir.cleanup()

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("Simulator.start() has not run")
        return self._data_dir

    def job_dir(self, job: Job) -> Path:
        return self.data_dir / job.id

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- jobs --

    def count_call(self, protocol: Protocol, route: str) -> None:
        calls = self.protocol_calls.setdefault(protocol, {})
        calls[route] = calls.get(route, 0) + 1

    def find_job(self, job_id: str, protocol: Protocol) -> Job | None:
        """A live job of this protocol (another protocol's jobs do not exist for it)."""
        job = self.store.get(job_id)
        return job if job is not None and job.protocol == protocol else None

    def get_job(self, video_id: str) -> Job:
        job = self.find_job(video_id, "openai")
        if job is None:
            raise video_not_found(video_id)
        return job

    def create_job(
        self,
        params: CreateParams,
        *,
        remixed_from: Job | None = None,
        reference: bytes | None = None,
        protocol: Protocol = "openai",
        ttl_s: float | None = None,
        job_id: str | None = None,
    ) -> Job:
        plan = self.faults.plan_job(self.settings.effective_generation_s, protocol)
        job = self.store.new_job(
            model=params.model,
            prompt=params.prompt,
            size=params.size,
            seconds=params.seconds,
            generation_s=plan.generation_s,
            ttl_s=self.settings.content_ttl_s if ttl_s is None else ttl_s,
            remixed_from_video_id=remixed_from.id if remixed_from else None,
            outcome=plan.outcome,
            planned_error=plan.error,
            protocol=protocol,
            job_id=job_id,
        )
        if reference is None and params.reference is not None:
            reference = params.reference.data
        self._spawn(self._run(job, reference))
        return job

    async def _run(self, job: Job, reference: bytes | None) -> None:
        if job.outcome == "completed":
            await self._render(job, reference)
        else:
            # A job planned to fail or expire never has content: skip the render.
            job.render_finished_at = self.clock()
        finished = job.finished_at()
        assert finished is not None
        # Until the wall clock says finished: an event loop may wake a timer a little early
        # (uvloop rounds to the millisecond), and a job still in progress must not be taken
        # for a failed one. (A wait for a time, not for an event.)
        while (left := finished - self.clock()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left + 0.001)
        if job.deleted:
            return
        state = job.state(self.clock())
        if state.status != "completed":
            # Failed and expired jobs have no content: drop whatever was written.
            self._remove_files(job)
        listener = self.terminal_listeners.get(job.protocol)
        if listener is not None:
            listener(job)
        elif state.status == "completed":
            self.webhooks.emit("video.completed", job.id)
        else:
            self.webhooks.emit("video.failed", job.id)

    async def _render(self, job: Job, reference: bytes | None) -> None:
        width, height = frame_size(job.size)
        fast = self.settings.fast_mode
        spec = render.RenderSpec(
            width=width,
            height=height,
            seconds=int(job.seconds),
            fps=self.settings.effective_fps,
            reference=reference,
            palette_seed=job.prompt,
            pad_to_bytes=self.settings.pad_video_to_bytes,
            thumbnail_max_px=160 if fast else render.THUMBNAIL_MAX_PX,
        )
        out_dir = self.job_dir(job)
        loop = asyncio.get_running_loop()
        try:
            if reference is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                (out_dir / REFERENCE_FILE).write_bytes(reference)
            if self.settings.reuse_renders:
                await self._render_once(spec, out_dir)
            else:
                await loop.run_in_executor(self._executor, render.render_job, spec, out_dir)
        except Exception as exc:
            log.exception("render of %s failed", job.id)
            job.render_error = f"{type(exc).__name__}: {exc}"
        finally:
            job.render_finished_at = self.clock()
        if job.deleted:
            self._remove_files(job)

    async def _render_once(self, spec: render.RenderSpec, out_dir: Path) -> None:
        """``reuse_renders``: the first job of a shape renders it, every job links to it."""
        shape = (spec.width, spec.height, spec.seconds, spec.fps, spec.pad_to_bytes,
                 spec.thumbnail_max_px)
        rendered = self._renders.get(shape)
        if rendered is None:
            rendered = self._renders[shape] = asyncio.get_running_loop().create_future()
            source = self.data_dir / "_renders" / "-".join(map(str, shape))
            generic = render.RenderSpec(spec.width, spec.height, spec.seconds, spec.fps,
                                        pad_to_bytes=spec.pad_to_bytes,
                                        thumbnail_max_px=spec.thumbnail_max_px)
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, render.render_job, generic, source)
            except BaseException as exc:
                del self._renders[shape]
                rendered.set_exception(exc)
                raise
            rendered.set_result(source)
        _link_render(await asyncio.shield(rendered), out_dir)

    def delete_job(self, video_id: str) -> Job:
        job = self.store.delete(video_id)
        if job is None:
            raise video_not_found(video_id)
        if job.render_finished_at is not None:
            self._remove_files(job)
        # Else the render is still running; _render removes its files when it ends.
        return job

    async def resolve_source(self, source: VideoSource) -> SourceVideo:
        """The video an edit or extension builds on (an earlier job, or an uploaded MP4)."""
        if source.video_id is not None:
            job = self.get_job(source.video_id)
            if not job.content_available(self.clock()):
                raise bad_request(
                    f"Video '{job.id}' is not a completed video whose content is available.",
                    param="video.id",
                    code="invalid_value",
                )
            return SourceVideo(job.model, job.size, int(job.seconds), self.reference_of(job))
        assert source.upload is not None
        try:
            probe = await asyncio.to_thread(render.probe_video, source.upload.data)
        except ValueError:
            raise bad_request(
                "Invalid 'video': the file could not be decoded as a video.",
                param="video",
                code="invalid_value",
            ) from None
        size = f"{probe.width}x{probe.height}"
        all_sizes = SIZES_BY_MODEL["sora-2-pro"]
        if size not in all_sizes:
            raise invalid_value("video", size, all_sizes)
        model = "sora-2" if size in SIZES_BY_MODEL["sora-2"] else "sora-2-pro"
        seconds = max(1, round(probe.seconds))
        return SourceVideo(model, size, seconds, probe.first_frame_png)

    def reference_of(self, job: Job) -> bytes | None:
        path = self.job_dir(job) / REFERENCE_FILE
        return path.read_bytes() if path.exists() else None

    # -- content --

    def content_file(self, job: Job, variant: Variant) -> ContentFile:
        """The file to serve, or the 404 the real API gives for content that is not there."""
        now = self.clock()
        state = job.state(now)
        if state.status in ("queued", "in_progress"):
            raise not_found(
                f"Video '{job.id}' is not ready yet (status '{state.status}'); content can be "
                "downloaded once the status is 'completed'.",
                code="video_not_ready",
            )
        if state.status != "completed":
            raise not_found(
                f"Video '{job.id}' has no content (status '{state.status}').",
                code="video_not_available",
            )
        if not job.content_available(now):
            raise not_found(
                f"The content of video '{job.id}' has expired and is no longer available.",
                code="video_expired",
            )
        path = self.job_dir(job) / _FILES[variant]
        if not path.is_file():
            raise not_found(f"The content of video '{job.id}' is no longer available.")
        return ContentFile(path, MEDIA_TYPES[variant], f"{job.id}{path.suffix}")

    def content_sha256(self, job: Job, variant: Variant) -> tuple[str, int]:
        """Hash of the bytes /content serves (blocking: call from a thread)."""
        content = self.content_file(job, variant)
        digest = hashlib.sha256()
        size = 0
        with content.path.open("rb") as f:
            while chunk := f.read(1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def _remove_files(self, job: Job) -> None:
        shutil.rmtree(self.job_dir(job), ignore_errors=True)

    async def _sweep_forever(self) -> None:
        """Delete files of jobs whose content expired, so long runs keep the disk bounded."""
        every = min(SWEEP_EVERY_S, max(0.5, self.settings.content_ttl_s / 2))
        while True:
            await asyncio.sleep(every)
            self.sweep()

    def sweep(self) -> None:
        now = self.clock()
        for job in self.store.all_jobs():
            if job.id in self._swept or job.render_finished_at is None:
                continue
            state = job.state(now)
            if job.deleted or (state.terminal and not job.content_available(now)):
                self._remove_files(job)
                self._swept.add(job.id)

    # -- reference images given by URL --

    async def fetch_image(
        self, url: str, *, param: str = "input_reference.image_url"
    ) -> tuple[bytes, str | None]:
        if not (self.settings.fetch_loopback_image_urls and is_loopback_url(url)):
            raise bad_request(
                "The simulator only fetches image_url from loopback hosts (127.0.0.1, ::1, "
                "localhost); send the image as a base64 data URL or a file upload instead.",
                param=param,
                code="invalid_value",
            )
        try:
            async with (
                httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client,
                client.stream("GET", url) as reply,
            ):
                if reply.status_code != 200:
                    raise bad_request(
                        f"Could not download image_url: HTTP {reply.status_code}.", param=param
                    )
                data = bytearray()
                async for chunk in reply.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_REFERENCE_BYTES:
                        raise bad_request("The image at image_url is too large.", param=param)
                return bytes(data), reply.headers.get("content-type")
        except httpx.HTTPError as exc:
            raise bad_request(f"Could not download image_url: {exc!r}.", param=param) from None
