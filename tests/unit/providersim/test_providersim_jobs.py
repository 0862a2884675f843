"""The job state machine, driven by a fake clock."""

from __future__ import annotations

import pytest
from reelvault_providersim.jobs import Job, JobError, JobStore, UnknownCursorError

VIDEO_FIELDS = {
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "size",
    "seconds",
    "remixed_from_video_id",
    "error",
}


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_store(seed: int = 0) -> tuple[JobStore, FakeClock]:
    clock = FakeClock()
    return JobStore(seed=seed, clock=clock), clock


def new_job(store: JobStore, **overrides: object) -> Job:
    values: dict[str, object] = {
        "model": "sora-2",
        "prompt": "a lighthouse",
        "size": "720x1280",
        "seconds": "4",
        "generation_s": 10.0,
        "ttl_s": 3600.0,
    }
    values.update(overrides)
    return store.new_job(**values)  # type: ignore[arg-type]


def test_lifecycle_queued_in_progress_completed() -> None:
    store, clock = make_store()
    job = new_job(store)
    start = clock.now

    assert job.to_video(start)["status"] == "queued"
    assert job.to_video(start + 0.5)["progress"] == 0

    mid = job.to_video(start + 5.5)  # halfway through the running 9 s
    assert mid["status"] == "in_progress"
    assert mid["progress"] == 50
    assert mid["completed_at"] is None
    assert mid["expires_at"] is None

    # Generation time is over but the render is not done: still running, below 100.
    late = job.to_video(start + 20)
    assert late["status"] == "in_progress"
    assert late["progress"] == 99

    job.render_finished_at = start + 3  # render finished before generation time ended
    done = job.to_video(start + 20)
    assert done["status"] == "completed"
    assert done["progress"] == 100
    assert done["completed_at"] == int(start + 10)
    assert done["expires_at"] == int(start + 10 + 3600)


def test_progress_rises_monotonically() -> None:
    store, clock = make_store()
    job = new_job(store)
    seen = [job.state(clock.now + t / 10).progress for t in range(0, 120)]
    assert seen == sorted(seen)
    assert seen[-1] == 99


def test_slow_render_delays_completion() -> None:
    store, clock = make_store()
    job = new_job(store, generation_s=1.0)
    job.render_finished_at = clock.now + 4
    assert job.state(clock.now + 3).status == "in_progress"
    state = job.state(clock.now + 4)
    assert state.status == "completed"
    assert state.completed_at == clock.now + 4


def test_zero_generation_time_completes_when_rendered() -> None:
    store, clock = make_store()
    job = new_job(store, generation_s=0.0)
    assert job.state(clock.now).status == "in_progress"
    job.render_finished_at = clock.now
    assert job.state(clock.now).status == "completed"


def test_content_expires_after_ttl() -> None:
    store, clock = make_store()
    job = new_job(store, generation_s=1.0, ttl_s=60.0)
    job.render_finished_at = clock.now
    assert not job.content_available(clock.now + 0.5)
    assert job.content_available(clock.now + 1)
    assert job.content_available(clock.now + 60.9)
    assert not job.content_available(clock.now + 61)
    # The object still reads completed, with the expiry in the past.
    assert job.to_video(clock.now + 100)["status"] == "completed"


def test_every_field_present_and_null_where_empty() -> None:
    store, clock = make_store()
    video = new_job(store).to_video(clock.now)
    assert set(video) == VIDEO_FIELDS
    assert video["object"] == "video"
    assert video["remixed_from_video_id"] is None
    assert video["error"] is None
    assert isinstance(video["seconds"], str)
    assert isinstance(video["created_at"], int)


def test_planned_failure_and_expiry() -> None:
    store, clock = make_store()
    failed = new_job(store, outcome="failed", planned_error=JobError("moderation_blocked", "no"))
    failed.render_finished_at = clock.now
    video = failed.to_video(clock.now + 11)
    assert video["status"] == "failed"
    assert video["error"] == {"code": "moderation_blocked", "message": "no"}
    assert video["completed_at"] is None
    assert not failed.content_available(clock.now + 11)

    expired = new_job(store, outcome="expired")
    expired.render_finished_at = clock.now
    video = expired.to_video(clock.now + 11)
    assert video["status"] == "expired"
    assert video["error"]["code"] == "video_expired"
    assert not expired.content_available(clock.now + 11)


def test_render_error_fails_the_job() -> None:
    store, clock = make_store()
    job = new_job(store)
    job.render_finished_at = clock.now + 1
    job.render_error = "RuntimeError: boom"
    video = job.to_video(clock.now + 10)
    assert video["status"] == "failed"
    assert video["error"]["code"] == "internal_error"


def test_ids_are_deterministic_under_seed() -> None:
    first, _ = make_store(seed=42)
    second, _ = make_store(seed=42)
    other, _ = make_store(seed=43)
    ids_a = [new_job(first).id for _ in range(5)]
    ids_b = [new_job(second).id for _ in range(5)]
    ids_c = [new_job(other).id for _ in range(5)]
    assert ids_a == ids_b
    assert ids_a != ids_c
    assert len(set(ids_a)) == 5
    for video_id in ids_a:
        assert video_id.startswith("video_")
        assert len(video_id) == len("video_") + 32
        int(video_id.removeprefix("video_"), 16)


def test_paging_orders_cursor_and_tombstones() -> None:
    store, _ = make_store()
    ids = [new_job(store).id for _ in range(5)]

    page = store.page(limit=2, order="asc", after=None)
    assert [j.id for j in page.jobs] == ids[:2]
    assert page.has_more
    page = store.page(limit=2, order="asc", after=ids[1])
    assert [j.id for j in page.jobs] == ids[2:4]
    page = store.page(limit=2, order="asc", after=ids[3])
    assert [j.id for j in page.jobs] == ids[4:]
    assert not page.has_more

    page = store.page(limit=3, order="desc", after=None)
    assert [j.id for j in page.jobs] == ids[::-1][:3]

    # A deleted job disappears from pages but still works as a cursor.
    assert store.delete(ids[2]) is not None
    assert store.get(ids[2]) is None
    page = store.page(limit=10, order="asc", after=ids[2])
    assert [j.id for j in page.jobs] == ids[3:]
    assert ids[2] not in [j.id for j in store.page(limit=10, order="asc", after=None).jobs]

    assert store.page(limit=0, order="asc", after=None).jobs == []
    assert store.page(limit=0, order="asc", after=None).has_more
    with pytest.raises(UnknownCursorError):
        store.page(limit=1, order="asc", after="video_nope")
