"""The storage side of a backup: describe every object the catalog refers to, and check them
later against that description.

Both go through the storage interface's ``stat``, which is cheap on every backend: the
filesystem keeps each object's sha256 in its metadata (and computes it from the bytes when the
metadata is missing or of another length), Supabase in the object's user metadata. An object
that storage keeps no sha256 for (e.g. put into Supabase by hand) is hashed from its bytes
when the backup is made; ``verify`` then checks its presence and size only, unless ``--deep``,
which reads and hashes every object (the only check that also finds bytes changed in place
behind unchanged metadata).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from reelvault_common.storage import BucketNotFound, ObjectNotFound, ObjectStorage

from reelvault.backup.manifest import ObjectRecord
from reelvault.backup.rules import Observed, object_problem, sha256_checked

# Objects looked at at once (each a request on Supabase).
CONCURRENCY = 16
T = TypeVar("T")
U = TypeVar("U")


async def _bounded(items: Sequence[T], work: Callable[[T], Awaitable[U]]) -> list[U]:
    """``work`` over ``items``, CONCURRENCY at a time, answers in the order of ``items``
    (a few workers share one iterator: no task per object, however many there are)."""
    answers: dict[int, U] = {}
    pending = iter(enumerate(items))

    async def worker() -> None:
        for index, item in pending:
            answers[index] = await work(item)

    await asyncio.gather(*(worker() for _ in range(min(CONCURRENCY, len(items)))))
    return [answers[index] for index in range(len(items))]


async def _observe(storage: ObjectStorage, bucket: str, key: str) -> Observed | None:
    try:
        info = await storage.stat(bucket, key)
    except BucketNotFound:
        return None
    return None if info is None else Observed(info.size, info.sha256)


async def hash_object(storage: ObjectStorage, bucket: str, key: str) -> Observed | None:
    """Size and sha256 from the object's bytes; None if it is missing."""
    digest, size = hashlib.sha256(), 0
    try:
        async for chunk in storage.read(bucket, key):
            digest.update(chunk)
            size += len(chunk)
    except (ObjectNotFound, BucketNotFound):
        return None
    return Observed(size, digest.hexdigest())


@dataclass
class Described:
    records: list[ObjectRecord] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


async def describe_objects(
    storage: ObjectStorage, references: Iterable[tuple[str, str]]
) -> Described:
    """A manifest entry for every referenced object; the ones storage lacks, by name."""

    async def describe(reference: tuple[str, str]) -> ObjectRecord | str:
        bucket, key = reference
        found = await _observe(storage, bucket, key)
        if found is not None and found.sha256 is None:
            found = await hash_object(storage, bucket, key)
        if found is None:
            return f"{bucket}/{key}"
        return ObjectRecord(bucket=bucket, key=key, size=found.size, sha256=found.sha256)

    described = Described()
    for outcome in await _bounded(sorted(set(references)), describe):
        if isinstance(outcome, str):
            described.missing.append(outcome)
        else:
            described.records.append(outcome)
    return described


def write_objects(path: Path, records: Iterable[ObjectRecord]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.model_dump_json() + "\n")


def read_objects(path: Path) -> list[ObjectRecord]:
    """The manifest's objects (the caller has checked the file's sha256 already)."""
    with path.open(encoding="utf-8") as handle:
        return [ObjectRecord.model_validate(json.loads(line)) for line in handle if line.strip()]


@dataclass
class ObjectsChecked:
    checked: int = 0
    sha256_checked: int = 0
    problems: list[str] = field(default_factory=list)


async def check_objects(
    storage: ObjectStorage, records: Sequence[ObjectRecord], *, deep: bool
) -> ObjectsChecked:
    """Every object against its manifest entry: present, same size, same sha256 (from
    storage's metadata; from the bytes with ``deep``)."""

    async def check(record: ObjectRecord) -> tuple[str | None, bool]:
        if deep:
            found = await hash_object(storage, record.bucket, record.key)
        else:
            found = await _observe(storage, record.bucket, record.key)
        problem = object_problem(record.bucket, record.key, record.size, record.sha256, found)
        return problem, sha256_checked(record.sha256, found)

    result = ObjectsChecked()
    for problem, hashed in await _bounded(records, check):
        result.checked += 1
        result.sha256_checked += int(hashed)
        if problem is not None:
            result.problems.append(problem)
    return result
