"""The chaos run's accounting rules (pure): what counts as lost, duplicated, mismatched and
explained, so a chaos run cannot pass by miscounting."""

from __future__ import annotations

from tests.support.chaos_audit import (
    CatalogRow,
    SimJob,
    StoredObjectCheck,
    Submission,
    audit,
)

P = "chaos run1 single #"


def sub(n: int, *ids: str, error: str | None = None) -> Submission:
    return Submission(prompt=f"{P}{n}", key=f"k{n}", attempts=1, video_ids=ids, error=error)


def row(vid: str, n: int, status: str = "completed", job: str | None = None,
        stage: str | None = None, code: str | None = None) -> CatalogRow:
    return CatalogRow(id=vid, prompt=f"{P}{n}", status=status, provider_job_id=job or f"job{n}",
                      error_stage=stage, error_code=code, error_message="m" if code else None)


def job(n: int, outcome: str = "completed", job_id: str | None = None) -> SimJob:
    status = {"completed": "completed", "failed": "failed", "expired": "expired"}[outcome]
    return SimJob(id=job_id or f"job{n}", prompt=f"{P}{n}", status=status, planned_outcome=outcome)


def ok_check(vid: str) -> StoredObjectCheck:
    return StoredObjectCheck(vid, "video", None)


def test_a_clean_run_passes_and_counts_everything() -> None:
    result = audit(
        [sub(1, "v1"), sub(2, "v2"), sub(3, "v3")],
        [row("v1", 1), row("v2", 2, "failed", stage="generation", code="moderation_blocked"),
         row("v3", 3, "failed", stage="generation", code="video_expired")],
        [job(1), job(2, "failed"), job(3, "expired")],
        [ok_check("v1")],
        prompt_prefix=P,
    )
    assert result.passed, result.problems
    assert (result.submitted, result.accepted, result.completed) == (3, 3, 1)
    assert result.failed == {"generation/moderation_blocked": 1, "generation/video_expired": 1}
    assert result.explained == {"job_failed": 1, "job_expired": 1}
    assert result.objects_checked == 1


def test_an_accepted_video_without_a_terminal_row_is_lost() -> None:
    result = audit([sub(1, "v1"), sub(2, "v2")], [row("v1", 1, "processing")], [job(1)], [],
                   prompt_prefix=P)
    assert len(result.lost) == 2
    assert not result.passed


def test_two_provider_jobs_or_two_rows_for_one_request_are_duplicates() -> None:
    result = audit(
        [sub(1, "v1", "v1b")],
        [row("v1", 1), row("v1b", 1, job="job1b")],
        [job(1), job(1, job_id="job1b")],
        [],
        prompt_prefix=P,
    )
    assert result.duplicate_job_count == 1
    assert result.duplicate_row_count == 1
    assert not result.passed


def test_a_failure_code_alone_does_not_explain_a_failure() -> None:
    # moderation_blocked, but the video's job was planned to complete: not our fault injection.
    result = audit(
        [sub(1, "v1"), sub(2, "v2")],
        [row("v1", 1, "failed", stage="generation", code="moderation_blocked"),
         row("v2", 2, "failed", stage="archive", code="verification_failed")],
        [job(1), job(2)],
        [],
        prompt_prefix=P,
    )
    assert len(result.unexplained) == 2
    assert not result.passed


def test_stored_bytes_must_match_and_come_from_the_videos_own_job() -> None:
    result = audit(
        [sub(1, "v1"), sub(2, "v2")],
        [row("v1", 1), row("v2", 2, job="job1")],  # v2 kept the bytes of v1's job
        [job(1), job(2)],
        [StoredObjectCheck("v1", "video", "stored sha256 a != served b")],
        prompt_prefix=P,
    )
    assert len(result.mismatches) == 2
    assert not result.passed


def test_a_request_never_accepted_fails_the_run_and_its_rows_are_orphans() -> None:
    result = audit([sub(1, error="ReadTimeout: timed out")], [row("v9", 1)], [job(1)], [],
                   prompt_prefix=P)
    assert result.unaccepted and result.orphan_rows == ["v9"]
    assert not result.passed


def test_other_runs_rows_and_jobs_are_ignored() -> None:
    stranger = CatalogRow(id="x", prompt="chaos other probe", status="queued")
    result = audit([sub(1, "v1")], [row("v1", 1), stranger, stranger],
                   [job(1), SimJob("j", "chaos other probe", "completed", "completed")] * 1,
                   [], prompt_prefix=P)
    assert result.passed, result.problems


def test_a_thumbnail_re_derived_from_the_stored_video_is_counted_not_a_mismatch() -> None:
    result = audit(
        [sub(1, "v1")], [row("v1", 1)], [job(1)],
        [ok_check("v1"), StoredObjectCheck("v1", "thumbnail", None, derived=True)],
        prompt_prefix=P,
    )
    assert result.passed, result.problems
    assert (result.objects_checked, result.derived_thumbnails) == (2, 1)


def test_a_lost_create_answer_is_explained_only_where_nothing_can_find_the_job() -> None:
    unknown = {"stage": "generation", "code": "create_outcome_unknown"}
    gemini = SimJob(id="op3", prompt=f"{P}3", status="completed", planned_outcome="completed",
                    protocol="gemini")
    openrouter = SimJob(id="or4", prompt=f"{P}4", status="completed",
                        planned_outcome="completed", protocol="openrouter")
    result = audit(
        [sub(1, "v1"), sub(3, "v3"), sub(4, "v4")],
        [row("v1", 1, "failed", job="", **unknown),  # refused before any job: nothing paid
         row("v3", 3, "failed", job="", **unknown),  # a Gemini job nobody can find: counted
         row("v4", 4, "failed", job="", **unknown)],  # OpenRouter's webhook had to adopt it
        [gemini, openrouter],
        [],
        prompt_prefix=P,
    )
    assert result.explained == {"create_outcome_unknown": 1, "paid_without_video": 1}
    assert [line.split(" ")[0] for line in result.unexplained] == ["v4"]
    assert result.jobs_by_protocol == {"gemini": 1, "openrouter": 1}
