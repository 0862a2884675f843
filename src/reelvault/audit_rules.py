"""What ``reelvault audit`` decides, in plain Python: which stored objects have no live row,
which live rows miss their object or disagree with its sha256, and what ``--repair`` may do
about each.

- An object without a live row (no row names it, or only a deleted video's) is removed by
  ``--repair`` once it is older than the grace period: a younger one may belong to an archive
  still in progress (its row not projected yet) and is left alone. Its age unknown: left alone.
- A live row whose object is missing is marked (``storage_missing_at``), never deleted: the
  row is the record that the video existed. A row already marked is reported, not a problem
  left to repair.
- A sha256 that differs is only reported: which side is right needs a person.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from reelvault_common.contracts.catalog import StoredRow
from reelvault_common.storage.interface import ListedObject

DELETED = "deleted"

Problem = Literal["object_without_row", "object_missing", "sha256_mismatch"]
# What was (or, without --repair, would be) done about a finding.
Action = Literal[
    "remove",  # --repair removes the object
    "removed",
    "too_recent",  # younger than the grace period (or of unknown age): left alone
    "mark",  # --repair marks the row
    "marked",
    "already_marked",
    "report_only",
    "failed",  # the repair was tried and failed (the detail says why)
]
# Nothing left to do about these.
SETTLED: frozenset[Action] = frozenset({"removed", "marked", "already_marked"})

ObjectId = tuple[str, str]  # (bucket, key)


@dataclass(frozen=True)
class Finding:
    problem: Problem
    bucket: str
    key: str
    org: str | None
    video_id: uuid.UUID | None
    action: Action
    detail: str = ""

    @property
    def remains(self) -> bool:
        return self.action not in SETTLED

    def as_json(self) -> dict[str, str | None]:
        return {"problem": self.problem, "bucket": self.bucket, "key": self.key,
                "org": self.org, "video_id": str(self.video_id) if self.video_id else None,
                "action": self.action, "detail": self.detail}


def row_objects(row: StoredRow) -> list[tuple[ObjectId, str | None]]:
    """The objects a row names, each with the sha256 the row records for it (the video's
    only: the catalog keeps no thumbnail sha256)."""
    named: list[tuple[ObjectId, str | None]] = []
    if row.video_bucket and row.video_key:
        named.append(((row.video_bucket, row.video_key), row.sha256))
    if row.thumbnail_bucket and row.thumbnail_key:
        named.append(((row.thumbnail_bucket, row.thumbnail_key), None))
    return named


def live_objects(rows: Iterable[StoredRow]) -> dict[ObjectId, StoredRow]:
    """Every object a live (not deleted) row names, with its row."""
    return {object_id: row for row in rows if row.status != DELETED
            for object_id, _ in row_objects(row)}


def old_enough(listed: ListedObject, now: datetime, grace: timedelta) -> bool:
    return listed.created_at is not None and listed.created_at <= now - grace


def org_of_key(key: str) -> str | None:
    head, _, rest = key.partition("/")
    return head if rest else None


def objects_without_row(
    listed: Mapping[str, Iterable[ListedObject]], rows: Iterable[StoredRow], now: datetime,
    grace: timedelta,
) -> list[Finding]:
    """Listed objects (by bucket) that no live row names."""
    rows = list(rows)
    live = live_objects(rows)
    deleted = {object_id: row for row in rows if row.status == DELETED
               for object_id, _ in row_objects(row)}
    found = []
    for bucket, items in listed.items():
        for item in items:
            object_id = (bucket, item.key)
            if object_id in live:
                continue
            tombstone = deleted.get(object_id)
            found.append(Finding(
                problem="object_without_row", bucket=bucket, key=item.key,
                org=tombstone.org if tombstone else org_of_key(item.key),
                video_id=tombstone.id if tombstone else None,
                action="remove" if old_enough(item, now, grace) else "too_recent",
                detail=("its video was deleted" if tombstone else "no row names it")
                + (f", stored {item.created_at:%Y-%m-%d %H:%M:%SZ}" if item.created_at else ""),
            ))
    return found


def missing_candidates(
    rows: Iterable[StoredRow], listed: Mapping[str, Iterable[ListedObject]],
) -> list[tuple[StoredRow, ObjectId]]:
    """Live rows' objects the listing did not show (to be confirmed: the listing is older
    than the rows, so an object stored since is confirmed present)."""
    seen = {(bucket, item.key) for bucket, items in listed.items() for item in items}
    listed_buckets = set(listed)
    return [(row, object_id) for row in rows if row.status != DELETED
            for object_id, _ in row_objects(row)
            if object_id[0] in listed_buckets and object_id not in seen]


def object_missing(row: StoredRow, object_id: ObjectId) -> Finding:
    bucket, key = object_id
    marked = row.storage_missing_at
    return Finding(
        problem="object_missing", bucket=bucket, key=key, org=row.org, video_id=row.id,
        action="already_marked" if marked else "mark",
        detail=f"{row.status} video" + (f", marked {marked:%Y-%m-%d %H:%M:%SZ}" if marked else ""),
    )


def sha256_mismatch(row: StoredRow, object_id: ObjectId, actual: str) -> Finding | None:
    """None when the row records no sha256 or the same one."""
    if row.sha256 is None or row.sha256 == actual:
        return None
    bucket, key = object_id
    return Finding(problem="sha256_mismatch", bucket=bucket, key=key, org=row.org,
                   video_id=row.id, action="report_only",
                   detail=f"row {row.sha256[:12]}..., object {actual[:12]}...")


def after_repair(finding: Finding, ok: bool, error: str = "") -> Finding:
    """The finding once its repair was tried."""
    if finding.action == "remove":
        action: Action = "removed" if ok else "failed"
    elif finding.action == "mark":
        action = "marked" if ok else "failed"
    else:
        return finding
    detail = finding.detail if ok else f"{finding.detail}; {error}"
    return Finding(finding.problem, finding.bucket, finding.key, finding.org,
                   finding.video_id, action, detail)
