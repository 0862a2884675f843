"""Video jobs: the pure model and state machine (no I/O; the clock is injected).

A job's status is derived from elapsed time AND from its render being done, so the simulator
never reports ``completed`` for bytes that do not exist yet:

    queued (first 10 % of generation_s) -> in_progress (progress rises) -> completed
                                                                        -> failed | expired

The terminal outcome is planned at create time (faults decide it), which keeps runs
deterministic under the seed whatever the timing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Clock = Callable[[], float]
Status = Literal["queued", "in_progress", "completed", "failed", "expired", "cancelled"]
Outcome = Literal["completed", "failed", "expired", "cancelled"]
# Which API created a job: each protocol sees only its own jobs.
Protocol = Literal["openai", "openrouter", "gemini"]
PROTOCOLS: tuple[Protocol, ...] = ("openai", "openrouter", "gemini")
Order = Literal["asc", "desc"]

QUEUED_FRACTION = 0.1
# Progress stays below 100 until the job is really done (render finished too).
MAX_RUNNING_PROGRESS = 99


@dataclass(frozen=True)
class JobError:
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class JobState:
    status: Status
    progress: int
    completed_at: float | None
    expires_at: float | None
    error: JobError | None

    @property
    def terminal(self) -> bool:
        return self.status in ("completed", "failed", "expired", "cancelled")


@dataclass
class Job:
    id: str
    seq: int
    model: str
    prompt: str
    size: str
    seconds: str
    created_at: float
    generation_s: float
    ttl_s: float
    remixed_from_video_id: str | None = None
    outcome: Outcome = "completed"
    planned_error: JobError | None = None
    render_finished_at: float | None = None
    render_error: str | None = None
    deleted_at: float | None = None
    protocol: Protocol = "openai"
    # Free-form facts for the admin listing (e.g. the client's request id); never in the API.
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def finished_at(self) -> float | None:
        """When the job leaves in_progress: generation time spent and the render done."""
        if self.render_finished_at is None:
            return None
        return max(self.created_at + self.generation_s, self.render_finished_at)

    def state(self, now: float) -> JobState:
        done_at = self.finished_at()
        if done_at is not None and now >= done_at:
            return self._terminal_state(done_at)
        elapsed = max(0.0, now - self.created_at)
        queued_s = self.generation_s * QUEUED_FRACTION
        if elapsed < queued_s:
            return JobState("queued", 0, None, None, None)
        running_s = self.generation_s - queued_s
        ratio = (elapsed - queued_s) / running_s if running_s > 0 else 1.0
        progress = min(MAX_RUNNING_PROGRESS, max(0, int(ratio * 100)))
        return JobState("in_progress", progress, None, None, None)

    def _terminal_state(self, done_at: float) -> JobState:
        if self.render_error is not None:
            error = JobError("internal_error", f"Video generation failed: {self.render_error}")
            return JobState("failed", 0, None, None, error)
        if self.outcome == "failed":
            error = self.planned_error or JobError("video_generation_failed", "Generation failed.")
            return JobState("failed", 0, None, None, error)
        if self.outcome == "expired":
            # Finished, but its assets were gone before anyone fetched them.
            error = self.planned_error or JobError("video_expired", "The video has expired.")
            return JobState("expired", 100, done_at, done_at, error)
        if self.outcome == "cancelled":
            error = self.planned_error or JobError("cancelled", "Job was cancelled")
            return JobState("cancelled", 0, None, None, error)
        return JobState("completed", 100, done_at, done_at + self.ttl_s, None)

    def content_available(self, now: float) -> bool:
        state = self.state(now)
        return (
            state.status == "completed" and state.expires_at is not None and now < state.expires_at
        )

    def to_video(self, now: float) -> dict[str, Any]:
        """The Video object: every documented field present, null where empty."""
        state = self.state(now)
        # The OpenAI protocol has no cancelled status: a job cancelled provider-side failed.
        status = "failed" if state.status == "cancelled" else state.status
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": status,
            "progress": state.progress,
            "created_at": int(self.created_at),
            "completed_at": _unix(state.completed_at),
            "expires_at": _unix(state.expires_at),
            "prompt": self.prompt,
            "size": self.size,
            "seconds": self.seconds,
            "remixed_from_video_id": self.remixed_from_video_id,
            "error": state.error.as_dict() if state.error else None,
        }


def _unix(value: float | None) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    has_more: bool


class UnknownCursorError(KeyError):
    pass


class JobStore:
    """Every job this process created, in creation order; deleted ones stay as tombstones so
    their ids keep working as ``after`` cursors and the admin listing shows them."""

    def __init__(self, *, seed: int, clock: Clock) -> None:
        self.clock = clock
        # Its own stream: ids do not change when fault settings draw other random numbers.
        self._ids = random.Random(f"{seed}:ids")
        self._jobs: dict[str, Job] = {}

    def new_id(self) -> str:
        while True:
            candidate = f"video_{self._ids.getrandbits(128):032x}"
            if candidate not in self._jobs:
                return candidate

    def token(self, length: int, alphabet: str) -> str:
        """A random string from the id stream (other protocols' job and file ids)."""
        return "".join(alphabet[self._ids.randrange(len(alphabet))] for _ in range(length))

    def new_job(
        self,
        *,
        model: str,
        prompt: str,
        size: str,
        seconds: str,
        generation_s: float,
        ttl_s: float,
        remixed_from_video_id: str | None = None,
        outcome: Outcome = "completed",
        planned_error: JobError | None = None,
        protocol: Protocol = "openai",
        job_id: str | None = None,
    ) -> Job:
        if job_id is not None and job_id in self._jobs:
            raise ValueError(f"duplicate job id {job_id}")
        job = Job(
            id=job_id or self.new_id(),
            seq=len(self._jobs),
            model=model,
            prompt=prompt,
            size=size,
            seconds=seconds,
            created_at=self.clock(),
            generation_s=generation_s,
            ttl_s=ttl_s,
            remixed_from_video_id=remixed_from_video_id,
            outcome=outcome,
            planned_error=planned_error,
            protocol=protocol,
        )
        self._jobs[job.id] = job
        return job

    def get(self, video_id: str) -> Job | None:
        """A live (not deleted) job."""
        job = self._jobs.get(video_id)
        return None if job is None or job.deleted else job

    def delete(self, video_id: str) -> Job | None:
        job = self.get(video_id)
        if job is not None:
            job.deleted_at = self.clock()
        return job

    def all_jobs(self) -> Iterator[Job]:
        """Every job ever created, tombstones included, oldest first."""
        return iter(list(self._jobs.values()))

    def contains(self, job_id: str) -> bool:
        return job_id in self._jobs

    def page(
        self, *, limit: int, order: Order, after: str | None, protocol: Protocol = "openai"
    ) -> Page:
        ordered = [job for job in self._jobs.values() if job.protocol == protocol]
        if order == "desc":
            ordered.reverse()
        start = 0
        if after is not None:
            cursor = self._jobs.get(after)
            if cursor is None or cursor.protocol != protocol:
                raise UnknownCursorError(after)
            start = ordered.index(cursor) + 1
        live = [job for job in ordered[start:] if not job.deleted]
        return Page(live[:limit], has_more=len(live) > limit)
