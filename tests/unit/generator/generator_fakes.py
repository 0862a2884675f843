"""In-memory stand-ins for the generator's adapters (ledger store, provider, references,
event sink), for unit tests of the logic. Imported by name (pytest puts this directory on
sys.path); the unusual name avoids clashes with other test dirs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.providers.models import ModelSpec
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_generator.budget import exhausted
from reelvault_generator.ledger import ClaimTiming, JobBinding, LedgerEntry
from reelvault_generator.provider import PreparedImages, ProviderJob
from reelvault_generator.reference_loader import ReferenceProblem

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TIMING = ClaimTiming(create_timeout_s=60, claim_margin_s=30, recovery_margin_s=120)


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class MemoryLedger:
    """Same compare-and-set semantics as the KV bucket."""

    def __init__(self) -> None:
        self.entries: dict[uuid.UUID, tuple[LedgerEntry, int]] = {}
        self.jobs: dict[str, JobBinding] = {}
        self.reads = 0  # KV reads a real ledger would make (read, job_owner, job_binding)
        self._revision = 0

    def _next(self) -> int:
        self._revision += 1
        return self._revision

    async def read(self, video_id: uuid.UUID) -> tuple[LedgerEntry, int] | None:
        self.reads += 1
        return self.entries.get(video_id)

    async def claim(self, video_id: uuid.UUID, entry: LedgerEntry) -> int | None:
        if video_id in self.entries:
            return None
        revision = self._next()
        self.entries[video_id] = (entry, revision)
        return revision

    async def replace(self, video_id: uuid.UUID, entry: LedgerEntry, *, last: int) -> int | None:
        current = self.entries.get(video_id)
        if current is None or current[1] != last:
            return None
        revision = self._next()
        self.entries[video_id] = (entry, revision)
        return revision

    async def release(self, video_id: uuid.UUID, *, last: int) -> bool:
        current = self.entries.get(video_id)
        if current is None or current[1] != last:
            return False
        del self.entries[video_id]
        return True

    async def bind_job(self, provider: str, job_id: str, video_id: uuid.UUID, *,
                       binding: JobBinding | None = None) -> bool:
        if binding is None or binding.video_id != video_id:
            binding = JobBinding(video_id=video_id)
        owner = self.jobs.setdefault(f"{provider}.{job_id}", binding)
        return owner.video_id == video_id

    async def job_owner(self, provider: str, job_id: str) -> uuid.UUID | None:
        binding = await self.job_binding(provider, job_id)
        return binding.video_id if binding is not None else None

    async def job_binding(self, provider: str, job_id: str) -> JobBinding | None:
        self.reads += 1
        return self.jobs.get(f"{provider}.{job_id}")


def job(job_id: str = "video_1", *, phase: str = "running", status: str = "queued",
        progress: int = 0, created_at: datetime = T0, prompt: str = "a cat",
        **fields: Any) -> ProviderJob:
    return ProviderJob(id=job_id, phase=phase, status=status, progress=progress,  # type: ignore[arg-type]
                       created_at=created_at, model="sora-2", size="1280x720", seconds="4",
                       prompt=prompt, **fields)


@dataclass
class FakeProvider:
    name: str = "openai"
    lists_jobs: bool = True
    adopts_by_webhook: bool = False
    # What create does next: a ProviderJob to return or a ProviderError to raise, in order.
    create_results: list[ProviderJob | ProviderError] = field(default_factory=list)
    retrieve_results: list[tuple[ProviderJob, float | None] | ProviderError] = field(
        default_factory=list)
    listed: list[ProviderJob] = field(default_factory=list)
    creates: list[tuple[str, bytes | None]] = field(default_factory=list)
    retrieves: int = 0
    reserved: list[tuple[str, float]] = field(default_factory=list)
    # The budget's wait for a reserved look (its slot, from now).
    reserved_wait_s: float = 0.001
    list_calls: list[tuple[datetime, datetime | None]] = field(default_factory=list)

    async def create(self, request: VideoRequested, images: PreparedImages) -> ProviderJob:
        self.creates.append((request.prompt, images.first_frame))
        result = self.create_results.pop(0)
        if isinstance(result, ProviderError):
            raise result
        self.listed.append(result)
        return result

    async def retrieve(self, job_id: str, *, not_before: float | None = None
                       ) -> tuple[ProviderJob, float | None]:
        if not_before is not None:
            # A look that may not go yet: its budget slot is reserved, the wait refused.
            self.reserved.append((job_id, not_before))
            raise exhausted(self.reserved_wait_s, 60, 60.0, position=0)
        self.retrieves += 1
        result = self.retrieve_results.pop(0)
        if isinstance(result, ProviderError):
            raise result
        return result

    async def find_recent(self, request: VideoRequested, since: datetime,
                          until: datetime | None = None) -> list[ProviderJob]:
        self.list_calls.append((since, until))
        return [j for j in reversed(self.listed) if j.prompt == request.prompt
                and since <= j.created_at <= (until or j.created_at)]

    def content_url(self, job_id: str) -> str:
        return f"http://provider/v1/videos/{job_id}/content"

    async def aclose(self) -> None:
        return None


@dataclass
class FakeReferences:
    frame: bytes | None = None
    problem: ReferenceProblem | None = None
    calls: int = 0

    async def images_for(self, request: VideoRequested,
                         spec: ModelSpec | None = None) -> PreparedImages:
        self.calls += 1
        if self.problem is not None:
            raise self.problem
        return PreparedImages(first_frame=self.frame)


@dataclass
class Sink:
    events: list[Any] = field(default_factory=list)

    async def publish(self, event: BaseModel) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def request(prompt: str = "a cat", **fields: Any) -> VideoRequested:
    values: dict[str, Any] = {"prompt": prompt, "model": "sora-2", "seconds": "4",
                              "size": "1280x720", "org": "acme"}
    values.update(fields)
    return VideoRequested.new(video_id=uuid.uuid4(), correlation_id="corr-1", **values)
