"""The orphaned-uploads rules and sweeper without a broker or storage server: only uploads
older than the grace that no video references are removed, in batches, at a bounded rate, with
the lease, and nothing at all when the catalog does not answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from reelvault_archiver.orphans import (
    CatalogUnavailable,
    OrphanSweeper,
    lease_free,
    old_enough,
    orphans,
    uploads_prefix,
)
from reelvault_common.storage.interface import ListedObject

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(hours=24)
BUCKET = "hug-images"


class MemoryStorage:
    """The two calls the sweeper makes, over a dict of key -> created_at."""

    def __init__(self, objects: dict[str, datetime | None]) -> None:
        self.objects = dict(objects)
        self.deleted: list[str] = []
        self.listed_prefixes: list[str] = []

    async def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ListedObject]:
        assert bucket == BUCKET
        self.listed_prefixes.append(prefix)
        for key, created in list(self.objects.items()):
            if key.startswith(prefix):
                yield ListedObject(key=key, size=10, created_at=created)

    async def delete(self, bucket: str, key: str) -> bool:
        assert bucket == BUCKET
        self.deleted.append(key)
        return self.objects.pop(key, "gone") != "gone"


class FakeCatalog:
    def __init__(self, orgs: list[str], referenced: set[str], *, fail: bool = False) -> None:
        self.orgs = orgs
        self.referenced_keys = referenced
        self.fail = fail
        self.asked: list[tuple[str, list[str]]] = []

    async def organizations(self) -> list[str]:
        return list(self.orgs)

    async def referenced(self, org: str, keys: Sequence[str]) -> list[str]:
        self.asked.append((org, list(keys)))
        if self.fail:
            raise CatalogUnavailable("no catalog answered")
        return [key for key in keys if key in self.referenced_keys]


class MemoryLease:
    def __init__(self, every: timedelta) -> None:
        self.every = every
        self.last: datetime | None = None

    async def acquire(self, now: datetime) -> bool:
        if not lease_free(self.last, now, self.every):
            return False
        self.last = now
        return True


def upload(org: str, name: str) -> str:
    return f"{uploads_prefix(org)}{name[:2]}/{name}.png"


def sweeper(storage: MemoryStorage, catalog: FakeCatalog, **options: object) -> OrphanSweeper:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    built = OrphanSweeper(storage, BUCKET, catalog, options.pop("lease", MemoryLease(DAY)),  # type: ignore[arg-type]
                          clock=lambda: NOW, sleep=sleep, **options)  # type: ignore[arg-type]
    built.pauses = pauses  # type: ignore[attr-defined]
    return built


def test_old_enough_needs_the_grace_the_org_folder_and_a_known_age() -> None:
    key = upload("acme", "aa11")
    assert old_enough(ListedObject(key, 1, NOW - DAY), "acme", NOW, DAY)
    assert not old_enough(ListedObject(key, 1, NOW - DAY + timedelta(seconds=1)), "acme", NOW,
                          DAY)
    assert not old_enough(ListedObject(key, 1, None), "acme", NOW, DAY)
    assert not old_enough(ListedObject(key, 1, NOW - 2 * DAY), "globex", NOW, DAY)
    assert not old_enough(ListedObject("acme/2026/01/x/video.mp4", 1, NOW - 2 * DAY), "acme",
                          NOW, DAY)


def test_orphans_are_the_unreferenced_candidates_in_order() -> None:
    assert orphans(["a", "b", "c", "d"], ["c", "a", "zz"]) == ["b", "d"]
    assert orphans([], ["a"]) == []


def test_the_lease_is_free_once_an_interval_passed() -> None:
    assert lease_free(None, NOW, DAY)
    assert not lease_free(NOW - DAY + timedelta(seconds=1), NOW, DAY)
    assert lease_free(NOW - DAY, NOW, DAY)


async def test_only_old_unreferenced_uploads_are_removed() -> None:
    old, young = NOW - DAY - timedelta(minutes=1), NOW - timedelta(hours=23)
    objects: dict[str, datetime | None] = {
        upload("acme", "aa01"): old,  # orphan
        upload("acme", "aa02"): old,  # referenced
        upload("acme", "aa03"): young,  # too young
        upload("acme", "aa04"): None,  # age unknown
        upload("globex", "bb01"): old,  # orphan of another org
        upload("globex", "bb02"): old,  # referenced by globex
    }
    storage = MemoryStorage(objects)
    catalog = FakeCatalog(["acme", "globex"], {upload("acme", "aa02"), upload("globex", "bb02")})
    result = await sweeper(storage, catalog).sweep_once()
    assert sorted(storage.deleted) == [upload("acme", "aa01"), upload("globex", "bb01")]
    assert (result.orgs, result.listed, result.candidates, result.referenced, result.removed) \
        == (2, 6, 4, 2, 2)
    # Each organization was asked only about its own uploads, and only the old ones.
    assert {org: sorted(keys) for org, keys in catalog.asked} == {
        "acme": [upload("acme", "aa01"), upload("acme", "aa02")],
        "globex": [upload("globex", "bb01"), upload("globex", "bb02")],
    }
    assert storage.listed_prefixes == ["acme/uploads/", "globex/uploads/"]


async def test_batches_and_a_bounded_rate() -> None:
    old = NOW - 2 * DAY
    storage = MemoryStorage({upload("acme", f"aa{i:02}"): old for i in range(7)})
    catalog = FakeCatalog(["acme"], set())
    sweep = sweeper(storage, catalog, batch_size=3, max_deletions_per_s=4.0)
    result = await sweep.sweep_once()
    assert [len(keys) for _, keys in catalog.asked] == [3, 3, 1]
    assert result.removed == 7 and storage.objects == {}
    assert sweep.pauses == [0.25] * 7  # type: ignore[attr-defined]


async def test_a_catalog_that_does_not_answer_removes_nothing() -> None:
    storage = MemoryStorage({upload("acme", "aa01"): NOW - 2 * DAY})
    with pytest.raises(CatalogUnavailable):
        await sweeper(storage, FakeCatalog(["acme"], set(), fail=True)).sweep_once()
    assert storage.deleted == [] and len(storage.objects) == 1


async def test_without_the_lease_a_replica_skips_the_pass() -> None:
    storage = MemoryStorage({upload("acme", "aa01"): NOW - 2 * DAY})
    lease = MemoryLease(DAY)
    lease.last = NOW - timedelta(hours=1)  # another replica swept an hour ago
    result = await sweeper(storage, FakeCatalog(["acme"], set()), lease=lease).sweep_once()
    assert result.skipped and storage.deleted == []
