"""Pure decisions about backups: names, retention, the order tables are restored in, what
makes a database empty, and what a stored object must look like to match its manifest entry."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# ``20260102T030405Z``, and ``-2``, ``-3``... for a second backup within the same second.
NAME_PATTERN = re.compile(r"^(\d{8}T\d{6}Z)(?:-(\d+))?$")
NAME_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
# A folder without ``backup.json`` this old is what a crashed backup left behind; a younger
# one may be a backup still being written.
STALE_AFTER = timedelta(days=1)


def backup_name(moment: datetime, taken: Collection[str]) -> str:
    """The folder name for a backup started at ``moment`` (UTC), not one of ``taken``."""
    base = moment.astimezone(UTC).strftime(NAME_TIME_FORMAT)
    name, suffix = base, 1
    while name in taken:
        suffix += 1
        name = f"{base}-{suffix}"
    return name


def name_time(name: str) -> datetime | None:
    """When the backup called ``name`` started; None for a name that is no backup's."""
    match = NAME_PATTERN.fullmatch(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), NAME_TIME_FORMAT).replace(tzinfo=UTC)


def order_key(name: str) -> tuple[str, int]:
    """Oldest first: by time, then by the same-second suffix."""
    match = NAME_PATTERN.fullmatch(name)
    if match is None:
        return (name, 0)
    return (match.group(1), int(match.group(2) or 1))


@dataclass(frozen=True)
class FolderEntry:
    """A folder in the backup directory whose name is a backup's."""

    name: str
    complete: bool  # it has its backup.json


def choose_deletions(entries: Iterable[FolderEntry], keep: int, now: datetime) -> list[str]:
    """What ``--keep N`` deletes after a successful backup: the complete backups older than the
    newest ``keep`` ones, and unfinished folders that a crash left (older than STALE_AFTER and
    older than the newest kept backup). Folders whose names are not backups' are never touched.
    """
    if keep < 1:
        raise ValueError("keep at least one backup")
    ordered = sorted((e for e in entries if name_time(e.name) is not None),
                     key=lambda e: order_key(e.name))
    complete = [e.name for e in ordered if e.complete]
    doomed = complete[: max(len(complete) - keep, 0)]
    newest_kept = order_key(complete[-1]) if complete else None
    for entry in ordered:
        started = name_time(entry.name)
        assert started is not None
        if (not entry.complete and newest_kept is not None
                and order_key(entry.name) < newest_kept and now - started > STALE_AFTER):
            doomed.append(entry.name)
    return sorted(doomed, key=order_key)


def newest_complete(entries: Iterable[FolderEntry]) -> str | None:
    names = [e.name for e in entries if e.complete and name_time(e.name) is not None]
    return max(names, key=order_key) if names else None


def dependency_order(tables: Iterable[str], references: Iterable[tuple[str, str]]) -> list[str]:
    """``tables`` with every table after the tables it refers to (``references``: pairs of
    (referring table, referred table)); ties alphabetical. A cycle is an error: rows of tables
    that refer to each other cannot be copied in one after the other."""
    remaining = sorted(set(tables))
    needs: dict[str, set[str]] = {table: set() for table in remaining}
    for child, parent in references:
        if child in needs and parent in needs and child != parent:
            needs[child].add(parent)
    ordered: list[str] = []
    while remaining:
        ready = [table for table in remaining if not needs[table] - set(ordered)]
        if not ready:
            raise ValueError(f"tables refer to each other in a cycle: {', '.join(remaining)}")
        ordered.append(ready[0])
        remaining.remove(ready[0])
    return ordered


def non_empty_reason(schema: str, relations: Sequence[str]) -> str | None:
    """Why a database whose schema ``schema`` holds ``relations`` (tables, views, sequences...)
    may not receive a restore, or None when it may."""
    if not relations:
        return None
    shown = ", ".join(relations[:5]) + (", ..." if len(relations) > 5 else "")
    return (f"it is not empty (schema {schema} holds {len(relations)} relation(s): {shown}); "
            "restore only into an empty database")


@dataclass(frozen=True)
class Observed:
    """What storage says about an object now (``sha256`` None: the backend keeps none)."""

    size: int
    sha256: str | None


def object_problem(
    bucket: str, key: str, size: int, sha256: str | None, found: Observed | None
) -> str | None:
    """What is wrong with the object ``bucket/key`` recorded with ``size`` and ``sha256`` when
    storage shows ``found``, or None. An unknown sha256 on either side is not checked (the
    caller counts those)."""
    where = f"{bucket}/{key}"
    if found is None:
        return f"{where}: missing"
    if found.size != size:
        return f"{where}: {found.size} bytes, the backup recorded {size}"
    if sha256 is not None and found.sha256 is not None and found.sha256 != sha256:
        return f"{where}: sha256 {found.sha256}, the backup recorded {sha256}"
    return None


def sha256_checked(sha256: str | None, found: Observed | None) -> bool:
    return found is not None and sha256 is not None and found.sha256 is not None


def failure_value(moment: datetime, reason: str, limit: int = 200) -> str:
    """``backup.last_failure``: the unix time, a space, and a short reason on one line."""
    line = " ".join(reason.split())
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return f"{int(moment.timestamp())} {line}"


def success_value(moment: datetime) -> str:
    """``backup.last_success``: the unix time in whole seconds, as text."""
    return str(int(moment.timestamp()))
