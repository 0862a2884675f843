"""The chaos run's accounting, from three independent records: what the client was told (its
submissions), what the catalog holds (rows) and what the provider saw (the simulator's jobs),
plus the re-hashed stored files. Pure: no I/O, so the rules are unit-tested on their own.

Each request carries a unique prompt, which is how rows and provider jobs are attributed to it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

TERMINAL = frozenset({"completed", "failed"})

# Which failures an injected fault explains: (stage, code) -> (fault kind, the planned outcome
# of the video's provider job that must be behind it).
EXPLAINED_FAILURES: dict[tuple[str, str], tuple[str, str]] = {
    # The OpenAI protocol.
    ("generation", "moderation_blocked"): ("job_failed", "failed"),
    ("generation", "video_expired"): ("job_expired", "expired"),
    # OpenRouter: the job's own status is the code.
    ("generation", "failed"): ("job_failed", "failed"),
    ("generation", "expired"): ("job_expired", "expired"),
    # Gemini: a failed job is a safety block; an expired one completed but its file is gone.
    ("generation", "content_blocked"): ("job_failed", "failed"),
    ("archive", "source_not_found"): ("job_expired", "expired"),
}
# A create whose answer was lost at a provider that cannot list jobs fails rather than paying
# twice: explained when no job was made for the prompt (nothing paid, nothing to adopt).
OUTCOME_UNKNOWN = ("generation", "create_outcome_unknown")
PAID_WITHOUT_VIDEO = "paid_without_video"


def job_key(provider_job_id: str | None) -> str:
    """The simulator's id of a job: Gemini's jobs are operations, named
    ``models/<model>/operations/<id>``."""
    return (provider_job_id or "").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Submission:
    """One client request: every attempt carried the same ``Idempotency-Key``."""

    prompt: str
    key: str
    attempts: int
    # Every video id a 202 named (more than one: the retries made new videos).
    video_ids: tuple[str, ...] = ()
    # Why the client gave up (None: accepted), or the 4xx it got.
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return bool(self.video_ids)


@dataclass(frozen=True)
class CatalogRow:
    id: str
    prompt: str
    status: str
    provider_job_id: str | None = None
    error_stage: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class SimJob:
    id: str
    prompt: str
    status: str
    planned_outcome: str
    protocol: str = "openai"


@dataclass(frozen=True)
class StoredObjectCheck:
    """One stored object compared with its source; ``problem`` None when the bytes match.

    ``derived`` marks a thumbnail that is not the provider's but a frame the archiver extracted
    from the stored video (its fallback when the provider's thumbnail keeps failing); its
    source is then the stored video, and the check re-derived it from there."""

    video_id: str
    variant: str
    problem: str | None
    derived: bool = False


@dataclass
class Audit:
    submitted: int = 0
    accepted: int = 0
    unaccepted: list[str] = field(default_factory=list)
    client_errors: list[str] = field(default_factory=list)
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    explained: Counter[str] = field(default_factory=Counter)
    unexplained: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicate_jobs: dict[str, int] = field(default_factory=dict)
    # Provider jobs of this run per protocol, and the duplicates among them.
    jobs_by_protocol: Counter[str] = field(default_factory=Counter)
    duplicates_by_protocol: Counter[str] = field(default_factory=Counter)
    duplicate_rows: dict[str, int] = field(default_factory=dict)
    # Rows for a request whose client never got a 202 (created although the client gave up).
    orphan_rows: list[str] = field(default_factory=list)
    objects_checked: int = 0
    derived_thumbnails: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def duplicate_job_count(self) -> int:
        return sum(count - 1 for count in self.duplicate_jobs.values())

    @property
    def duplicate_row_count(self) -> int:
        return sum(count - 1 for count in self.duplicate_rows.values())

    @property
    def problems(self) -> list[str]:
        """Why the run fails (empty: it passes)."""
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} lost")
        if self.duplicate_jobs:
            found.append(f"{self.duplicate_job_count} duplicate provider jobs")
        if self.duplicate_rows:
            found.append(f"{self.duplicate_row_count} duplicate catalog rows")
        if self.mismatches:
            found.append(f"{len(self.mismatches)} sha256 mismatches")
        if self.unexplained:
            found.append(f"{len(self.unexplained)} unexplained failures")
        if self.unaccepted:
            found.append(f"{len(self.unaccepted)} requests never accepted")
        if self.client_errors:
            found.append(f"{len(self.client_errors)} client errors")
        if self.orphan_rows:
            found.append(f"{len(self.orphan_rows)} videos created for requests never accepted")
        return found

    @property
    def passed(self) -> bool:
        return not self.problems


def _group(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for key, value in items:
        grouped[key].append(value)
    return grouped


def audit(
    submissions: Iterable[Submission],
    rows: Iterable[CatalogRow],
    jobs: Iterable[SimJob],
    checks: Iterable[StoredObjectCheck],
    *,
    prompt_prefix: str,
) -> Audit:
    """Only rows and jobs whose prompt starts with ``prompt_prefix`` belong to this run."""
    submissions = list(submissions)
    rows = [row for row in rows if row.prompt.startswith(prompt_prefix)]
    jobs = [job for job in jobs if job.prompt.startswith(prompt_prefix)]
    result = Audit(submitted=len(submissions))

    rows_by_id = {row.id: row for row in rows}
    rows_by_prompt = _group((row.prompt, row.id) for row in rows)
    jobs_by_id = {job.id: job for job in jobs}
    jobs_by_prompt = _group((job.prompt, job.id) for job in jobs)

    for sub in submissions:
        if sub.accepted:
            result.accepted += 1
        elif sub.error is not None and sub.error.startswith("HTTP 4"):
            result.client_errors.append(f"{sub.prompt!r}: {sub.error}")
        else:
            result.unaccepted.append(f"{sub.prompt!r}: {sub.error}")
            result.orphan_rows.extend(rows_by_prompt.get(sub.prompt, []))
        # Every id the client was given must reach a terminal state.
        for video_id in dict.fromkeys(sub.video_ids):
            row = rows_by_id.get(video_id)
            if row is None:
                result.lost.append(f"{video_id} ({sub.prompt!r}): no catalog row")
            elif row.status not in TERMINAL:
                result.lost.append(f"{video_id} ({sub.prompt!r}): still {row.status}")

    result.duplicate_rows = {p: len(ids) for p, ids in rows_by_prompt.items() if len(ids) > 1}
    result.duplicate_jobs = {p: len(ids) for p, ids in jobs_by_prompt.items() if len(ids) > 1}
    protocol_of = {job.prompt: job.protocol for job in jobs}
    result.jobs_by_protocol = Counter(job.protocol for job in jobs)
    result.duplicates_by_protocol = Counter({protocol: 0 for protocol in result.jobs_by_protocol})
    for prompt, count in result.duplicate_jobs.items():
        result.duplicates_by_protocol[protocol_of[prompt]] += count - 1

    for row in rows:
        if row.status == "completed":
            result.completed += 1
            job = jobs_by_id.get(job_key(row.provider_job_id))
            if job is None or job.prompt != row.prompt:
                # The stored bytes must come from this request's own generation.
                whose = "never created for this run" if job is None else f"made for {job.prompt!r}"
                result.mismatches.append(
                    f"{row.id}: completed with provider job {row.provider_job_id}, {whose}"
                )
        elif row.status == "failed":
            reason = f"{row.error_stage}/{row.error_code}"
            result.failed[reason] += 1
            fault = explain_failure(row, jobs_by_id, jobs_by_prompt)
            if fault is None:
                result.unexplained.append(
                    f"{row.id} ({row.prompt!r}): {reason}: {row.error_message}"
                )
            else:
                result.explained[fault] += 1

    for check in checks:
        result.objects_checked += 1
        result.derived_thumbnails += check.derived and check.problem is None
        if check.problem is not None:
            result.mismatches.append(f"{check.video_id} {check.variant}: {check.problem}")
    return result


def explain_failure(
    row: CatalogRow, jobs_by_id: Mapping[str, SimJob], jobs_by_prompt: Mapping[str, list[str]]
) -> str | None:
    """The injected fault behind a failed row, or None when no fault explains it: the code must
    be one a fault produces AND the video's own provider job must have been planned to end so."""
    if (row.error_stage, row.error_code) == OUTCOME_UNKNOWN:
        made = [jobs_by_id[job_id] for job_id in jobs_by_prompt.get(row.prompt, [])
                if job_id in jobs_by_id]
        if not made:
            return "create_outcome_unknown"
        # Gemini's answer to a create was lost (its generator killed mid-create): the job exists
        # and may be charged, but nothing can find or adopt it. Counted apart ("paid without a
        # video"); at OpenRouter its webhook must have adopted it.
        return PAID_WITHOUT_VIDEO if all(job.protocol == "gemini" for job in made) else None
    expected = EXPLAINED_FAILURES.get((row.error_stage or "", row.error_code or ""))
    if expected is None:
        return None
    fault, outcome = expected
    job_ids = ([job_key(row.provider_job_id)] if row.provider_job_id
               else jobs_by_prompt.get(row.prompt, []))
    for job_id in job_ids:
        job = jobs_by_id.get(job_id or "")
        if job is not None and job.prompt == row.prompt and job.planned_outcome == outcome:
            return fault
    return None


def format_counter(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{name}={count}" for name, count in sorted(counter.items())) or "-"
