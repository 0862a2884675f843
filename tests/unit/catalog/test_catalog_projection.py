"""The projection rules: what one event does to a row, and that the final row depends on which
events arrived, never on their order or on how often they arrived."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from reelvault_catalog.projection import (
    STATE_FIELDS,
    STATUS_RANK,
    Insert,
    Outcome,
    Unchanged,
    Update,
    VideoState,
    Wait,
    project,
    thumbnail_link,
    video_link,
)
from reelvault_common.contracts.events import VideoEvent

from tests.support.catalog_events import VideoStory, sha256_of

BASE = "http://gateway.test:8000"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def step(state: VideoState | None, event: VideoEvent, now: datetime = NOW) -> Outcome:
    return project(state, event, now=now, public_base_url=BASE)


def written(state: VideoState | None, outcome: Outcome) -> VideoState | None:
    """The state after ``outcome`` was written (what the repository does, in memory)."""
    if isinstance(outcome, Insert):
        assert state is None
        return VideoState(**{k: v for k, v in outcome.values.items() if k in STATE_FIELDS})
    if isinstance(outcome, Update):
        assert state is not None
        return state.with_changes(outcome.changes)
    return state


def replay(events: Iterable[VideoEvent]) -> tuple[VideoState, list[str]]:
    """Deliver events like the consumer does: one that must wait goes to the back of the queue.
    Returns the final state and the statuses seen after every delivery."""
    pending = deque(events)
    state: VideoState | None = None
    seen: list[str] = []
    idle = 0
    while pending:
        event = pending.popleft()
        outcome = step(state, event)
        if isinstance(outcome, Wait):
            pending.append(event)
            idle += 1
            assert idle <= len(pending), "events wait for a row that never comes"
            continue
        idle = 0
        state = written(state, outcome)
        if state is not None:
            seen.append(state.status)
    assert state is not None
    return state, seen


def assert_never_backwards(statuses: Sequence[str]) -> None:
    for before, after in itertools.pairwise(statuses):
        assert STATUS_RANK[after] >= STATUS_RANK[before], statuses
        # The one move between terminal states: stored bytes turn failed into completed.
        assert before != "completed" or after == "completed", statuses


def queued(story: VideoStory) -> VideoState:
    state = written(None, step(None, story.requested()))
    assert state is not None
    return state


# --- video.requested ----------------------------------------------------------------------

def test_requested_inserts_the_seed_columns_and_the_request() -> None:
    story = VideoStory()
    event = story.requested()
    outcome = step(None, event)
    assert isinstance(outcome, Insert)
    values = outcome.values
    assert values["id"] == story.video_id
    assert values["status"] == "queued"
    assert values["progress"] == 0
    assert values["prompt"] == "two friends hug"
    assert (values["model"], values["seconds"], values["size"], values["org"]) == (
        "sora-2", "4", "720x1280", "default")
    assert values["image1_url"] == "http://files.test/hug-images/0.png"
    assert values["image2_url"] == "http://files.test/hug-images/1.png"
    assert values["reference_image_keys"] == ["default/uploads/0.png", "default/uploads/1.png"]
    assert values["created_at"] == event.occurred_at == values["requested_at"]
    assert values["updated_at"] == NOW
    assert values["correlation_id"] == "corr-1"


@pytest.mark.parametrize("images", [0, 1])
def test_requested_with_fewer_images_leaves_their_urls_empty(images: int) -> None:
    outcome = step(None, VideoStory().requested(images=images))
    assert isinstance(outcome, Insert)
    assert outcome.values["image2_url"] is None
    assert (outcome.values["image1_url"] is None) == (images == 0)
    assert len(outcome.values["reference_image_keys"]) == images


@pytest.mark.parametrize("status", ["queued", "processing", "completed", "failed"])
def test_requested_again_never_touches_an_existing_row(status: str) -> None:
    story = VideoStory()
    outcome = step(VideoState(status=status), story.requested())  # type: ignore[arg-type]
    assert isinstance(outcome, Unchanged)


# --- events before their row ---------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda s: s.started(), lambda s: s.progressed(10), lambda s: s.completed(),
    lambda s: s.stored(), lambda s: s.failed(),
], ids=["started", "progress", "completed", "stored", "failed"])
def test_an_event_before_its_row_waits(make: Any) -> None:
    assert isinstance(step(None, make(VideoStory())), Wait)


@pytest.mark.parametrize("status", [None, "queued", "processing", "completed", "failed"])
def test_archive_requested_changes_nothing(status: str | None) -> None:
    state = VideoState(status=status) if status else None  # type: ignore[arg-type]
    assert isinstance(step(state, VideoStory().archive_requested()), Unchanged)


# --- video.generation.started ----------------------------------------------------------------

def test_started_moves_queued_to_processing_with_the_provider_job() -> None:
    story = VideoStory()
    outcome = step(queued(story), story.started())
    assert isinstance(outcome, Update)
    assert outcome.changes == {"status": "processing", "provider": "openai",
                               "provider_job_id": "video_job_1", "updated_at": NOW}


def test_started_late_on_a_completed_row_fills_gaps_but_keeps_the_status() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.stored()))
    assert state is not None
    assert state.status == "completed"
    assert state.provider is None
    outcome = step(state, story.started())
    assert isinstance(outcome, Update)
    assert outcome.changes == {"provider": "openai", "updated_at": NOW}


def test_started_does_not_overwrite_a_known_job() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.started()))
    assert isinstance(step(state, story.started(job_id="another_job")), Unchanged)


# --- video.generation.waiting ----------------------------------------------------------------
def test_waiting_records_where_a_queued_video_stands() -> None:
    story = VideoStory()
    event = story.waiting(starts_in=300, position=41)
    outcome = step(queued(story), event)
    assert isinstance(outcome, Update)
    assert outcome.changes == {"provider": "openai", "estimated_start_at": event.estimated_start_at,
                               "queue_position": 41, "updated_at": NOW}


def test_a_moved_estimate_replaces_the_last_and_a_repeat_changes_nothing() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.waiting(starts_in=120)))
    later = story.waiting(starts_in=600, position=3)
    moved = written(state, step(state, later))
    assert moved is not None
    assert (moved.estimated_start_at, moved.queue_position) == (later.estimated_start_at, 3)
    assert isinstance(step(moved, later), Unchanged)


def test_started_clears_the_estimate_and_a_late_estimate_never_comes_back() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.waiting()))
    started = written(state, step(state, story.started()))
    assert started is not None
    assert (started.status, started.estimated_start_at, started.queue_position) == (
        "processing", None, None)
    assert isinstance(step(started, story.waiting(starts_in=900)), Unchanged)


def test_waiting_in_any_order_ends_processing_without_an_estimate() -> None:
    story = VideoStory()
    for events in itertools.permutations(
            [story.requested(), story.waiting(), story.started(), story.waiting(starts_in=700)]):
        state, seen = replay(events)
        assert_never_backwards(seen)
        assert (state.status, state.estimated_start_at, state.queue_position) == (
            "processing", None, None)


# --- video.generation.progress ---------------------------------------------------------------

def test_progress_only_grows() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.started()))
    outcome = step(state, story.progressed(40))
    assert isinstance(outcome, Update)
    assert outcome.changes == {"progress": 40, "updated_at": NOW}
    state = written(state, outcome)
    assert isinstance(step(state, story.progressed(20)), Unchanged)
    assert isinstance(step(state, story.progressed(40)), Unchanged)


def test_progress_before_started_moves_queued_to_processing() -> None:
    story = VideoStory()
    outcome = step(queued(story), story.progressed(10))
    assert isinstance(outcome, Update)
    assert outcome.changes["status"] == "processing"
    assert outcome.changes["progress"] == 10
    assert outcome.changes["provider_job_id"] == "video_job_1"


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_progress_never_changes_a_terminal_row(status: str) -> None:
    state = VideoState(status=status, progress=30)  # type: ignore[arg-type]
    assert isinstance(step(state, VideoStory().progressed(90)), Unchanged)


# --- video.completed -------------------------------------------------------------------------

def test_completed_keeps_processing_and_records_the_provider_copy() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.started()))
    event = story.completed()
    outcome = step(state, event)
    assert isinstance(outcome, Update)
    assert "status" not in outcome.changes  # generated is not stored
    assert outcome.changes["openai_url"] == event.source_url
    assert outcome.changes["expires_at"] == event.expires_at


def test_completed_on_a_queued_row_moves_it_to_processing() -> None:
    story = VideoStory()
    outcome = step(queued(story), story.completed())
    assert isinstance(outcome, Update)
    assert outcome.changes["status"] == "processing"
    assert outcome.changes["provider_job_id"] == "video_job_1"


def test_completed_after_stored_keeps_completed_and_records_the_backup_url() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.stored()))
    outcome = step(state, story.completed())
    assert isinstance(outcome, Update)
    assert "status" not in outcome.changes
    assert outcome.changes["openai_url"]


# --- video.stored ----------------------------------------------------------------------------

def test_stored_completes_the_row() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.started()))
    event = story.stored()
    outcome = step(state, event)
    assert isinstance(outcome, Update)
    changes = outcome.changes
    assert changes["status"] == "completed"
    assert changes["progress"] == 100
    assert changes["video_url"] == f"{BASE}/v1/videos/{story.video_id}/content"
    assert changes["video_url"] == video_link(BASE, story.video_id)
    assert (changes["video_bucket"], changes["video_key"]) == (event.video.bucket, event.video.key)
    assert changes["bytes"] == 1234
    assert changes["sha256"] == sha256_of("video bytes")
    assert changes["thumbnail_bucket"] == "thumbnails"
    assert changes["thumbnail_key"].endswith("/thumbnail.webp")
    assert changes["thumbnail_bytes"] == 99
    # A private thumbnail is served through the gateway's link.
    assert changes["thumbnail_url"] == thumbnail_link(BASE, story.video_id)
    assert changes["stored_at"] == event.occurred_at
    assert changes["updated_at"] == NOW


def test_stored_keeps_a_public_thumbnail_url_and_handles_no_thumbnail() -> None:
    story = VideoStory()
    public = step(queued(story), story.stored(thumbnail_url="http://cdn.test/t.webp"))
    assert isinstance(public, Update)
    assert public.changes["thumbnail_url"] == "http://cdn.test/t.webp"
    none = step(queued(story), story.stored(thumbnail=False))
    assert isinstance(none, Update)
    assert "thumbnail_url" not in none.changes  # already None: nothing to write
    state = written(queued(story), none)
    assert state is not None
    assert state.thumbnail_key is None
    assert state.status == "completed"


@pytest.mark.parametrize("stage", ["archive", "generation"])
def test_stored_wins_over_an_earlier_failure_and_clears_it(stage: str) -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.failed(stage=stage, at=5)))  # type: ignore[arg-type]
    assert state is not None
    assert state.status == "failed"
    assert state.error_code
    outcome = step(state, story.stored(at=9))
    state = written(state, outcome)
    assert state is not None
    assert state.status == "completed"
    assert state.progress == 100
    assert (state.error_stage, state.error_code, state.error_message, state.failed_at) == (
        None, None, None, None)


def test_an_older_stored_report_does_not_replace_a_newer_copy() -> None:
    story = VideoStory()
    newer = written(queued(story), step(queued(story), story.stored(at=20, content="new")))
    assert isinstance(step(newer, story.stored(at=10, content="old")), Unchanged)
    # ...while a newer re-archive updates what the row describes, and it stays completed.
    outcome = step(newer, story.stored(at=30, content="newest", size=777))
    assert isinstance(outcome, Update)
    assert outcome.changes["sha256"] == sha256_of("newest")
    assert outcome.changes["bytes"] == 777
    assert "status" not in outcome.changes


def test_stored_redelivered_changes_nothing() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.stored()))
    assert isinstance(step(state, story.stored()), Unchanged)


# --- video.failed ----------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["queued", "processing"])
def test_failed_records_the_error(status: str) -> None:
    story = VideoStory()
    state = VideoState(status=status, progress=40)  # type: ignore[arg-type]
    event = story.failed(stage="generation", code="moderation_blocked", message="nope")
    outcome = step(state, event)
    assert isinstance(outcome, Update)
    assert outcome.changes["status"] == "failed"
    assert (outcome.changes["error_stage"], outcome.changes["error_code"],
            outcome.changes["error_message"]) == ("generation", "moderation_blocked", "nope")
    assert outcome.changes["failed_at"] == event.occurred_at
    assert "progress" not in outcome.changes


def test_failed_never_touches_a_completed_row() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.stored(at=4)))
    assert isinstance(step(state, story.failed(stage="archive", at=9)), Unchanged)


def test_a_newer_failure_replaces_an_older_one_but_not_the_reverse() -> None:
    story = VideoStory()
    first = written(queued(story), step(queued(story), story.failed(code="first", at=5)))
    later = step(first, story.failed(stage="archive", code="second", at=8))
    assert isinstance(later, Update)
    assert later.changes["error_code"] == "second"
    second = written(first, later)
    assert isinstance(step(second, story.failed(code="first", at=5)), Unchanged)


# --- what is written -------------------------------------------------------------------------

def test_only_changed_columns_and_updated_at_are_written() -> None:
    story = VideoStory()
    state = written(queued(story), step(queued(story), story.started()))
    later = datetime(2026, 3, 2, tzinfo=UTC)
    outcome = step(state, story.progressed(55), now=later)
    assert isinstance(outcome, Update)
    assert outcome.changes == {"progress": 55, "updated_at": later}


# --- order and repetition ----------------------------------------------------------------------

def happy_path(story: VideoStory) -> list[VideoEvent]:
    return [story.requested(), story.started(), story.progressed(40), story.completed(),
            story.stored()]


def test_in_order_happy_path_ends_completed_with_everything_recorded() -> None:
    story = VideoStory()
    state, seen = replay(happy_path(story))
    assert seen == ["queued", "processing", "processing", "processing", "completed"]
    assert state.status == "completed"
    assert state.progress == 100
    assert state.provider == "openai"
    assert state.provider_job_id == "video_job_1"
    assert state.openai_url
    assert state.expires_at
    assert state.video_key
    assert state.sha256


LATER_EVENTS = ["started", "progress", "completed", "stored", "failed_archive", "failed_gen"]


def make_event(story: VideoStory, name: str) -> VideoEvent:
    makers: dict[str, Callable[[], VideoEvent]] = {
        "started": story.started,
        "progress": lambda: story.progressed(40),
        "completed": story.completed,
        "stored": lambda: story.stored(at=6),
        "failed_archive": lambda: story.failed(stage="archive", code="copy_failed", at=5),
        "failed_gen": lambda: story.failed(stage="generation", code="provider_failed", at=5),
    }
    return makers[name]()


def expected_status(names: set[str]) -> str:
    if "stored" in names:
        return "completed"
    if names & {"failed_archive", "failed_gen"}:
        return "failed"
    return "processing"


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(LATER_EVENTS, 2)))
def test_every_pair_in_either_order_never_goes_backwards_and_agrees(
    first: str, second: str
) -> None:
    story = VideoStory()
    forward, seen_forward = replay([story.requested(), make_event(story, first),
                                    make_event(story, second)])
    backward, seen_backward = replay([story.requested(), make_event(story, second),
                                      make_event(story, first)])
    assert_never_backwards(seen_forward)
    assert_never_backwards(seen_backward)
    assert forward.status == backward.status == expected_status({first, second})
    if forward.status == "completed":
        assert forward == backward
    assert forward.provider_job_id == backward.provider_job_id == "video_job_1"


@pytest.mark.parametrize("name", LATER_EVENTS)
def test_each_event_before_its_request_waits_then_applies(name: str) -> None:
    story = VideoStory()
    state, seen = replay([make_event(story, name), story.requested()])
    assert seen[0] == "queued"
    assert state.status == expected_status({name})


def test_every_order_of_the_happy_path_converges_to_the_same_row() -> None:
    story = VideoStory()
    events = happy_path(story)
    reference, _ = replay(events)
    for order in itertools.permutations(events):
        state, seen = replay(order)
        assert_never_backwards(seen)
        assert state == reference, [e.type for e in order]


def test_every_order_with_every_event_delivered_twice_converges() -> None:
    story = VideoStory()
    events = happy_path(story)
    reference, _ = replay(events)
    for order in itertools.permutations(events[1:]):
        doubled = [events[0], *order, *reversed(order), events[0]]
        state, seen = replay(doubled)
        assert_never_backwards(seen)
        assert state == reference


def test_every_order_of_a_generation_failure_ends_failed_with_its_error() -> None:
    story = VideoStory()
    events: list[VideoEvent] = [story.requested(), story.started(), story.progressed(30),
              story.failed(stage="generation", code="provider_failed")]
    for order in itertools.permutations(events):
        state, seen = replay(order)
        assert_never_backwards(seen)
        assert state.status == "failed"
        assert (state.error_stage, state.error_code) == ("generation", "provider_failed")
        assert state.provider_job_id == "video_job_1"


def test_every_order_of_an_archive_failure_then_a_re_archive_ends_completed() -> None:
    story = VideoStory()
    events: list[VideoEvent] = [story.requested(), story.started(), story.completed(),
              story.failed(stage="archive", code="copy_failed", at=5),
              story.archive_requested(at=6), story.stored(at=7)]
    reference, _ = replay(events)
    assert reference.status == "completed"
    assert reference.error_code is None
    for order in itertools.permutations(events):
        state, seen = replay(order)
        assert_never_backwards(seen)
        assert state == reference
