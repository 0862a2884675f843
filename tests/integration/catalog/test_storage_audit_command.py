"""``reelvault audit`` and ``--repair`` against a running catalog (real JetStream and
PostgreSQL, rows over NATS) and filesystem storage: objects without a live row, rows whose
object is missing, sha256 mismatches; what the repair removes, marks and leaves; exit codes."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reelvault_catalog.app import CatalogService
from reelvault_catalog.settings import CatalogSettings
from reelvault_catalog.tenancy_repository import TenancyRepository
from reelvault_common.runtime.settings import ServiceSettings, StorageSettings
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.layout import Buckets
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.catalog_events import VideoStory, sha256_of

pytestmark = pytest.mark.integration

DAYS_AGO = datetime.now(UTC) - timedelta(days=2)


@dataclass
class Setup:
    catalog: CatalogService
    storage: FilesystemStorage
    root: Path
    data_dir: Path
    engine: AsyncEngine
    err: str = ""

    async def put(self, bucket: str, key: str, data: bytes, *, old: bool = True) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield data

        kind = "video/mp4" if bucket == "videos" else "image/webp"
        await self.storage.put(bucket, key, chunks(), kind)
        if old:
            stamp = DAYS_AGO.timestamp()
            os.utime(self.root / bucket / key, (stamp, stamp))

    async def stored_video(self, org: str, content: str, *, objects: bool = True,
                           stored_bytes: bytes | None = None) -> VideoStory:
        story = VideoStory(org=org)
        stored = story.stored(content=content)
        for event in (story.requested(images=0), story.started(), story.completed(), stored):
            await self.catalog.repository.apply(event)
        if objects:
            await self.put("videos", stored.video.key,
                           content.encode() if stored_bytes is None else stored_bytes)
            assert stored.thumbnail is not None
            await self.put("thumbnails", stored.thumbnail.key, b"thumb")
        return story

    def exists(self, bucket: str, key: str) -> bool:
        return (self.root / bucket / key).is_file()


@pytest.fixture
async def setup(service_settings: ServiceSettings, database_url: str, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    settings = CatalogSettings(
        NATS_URL=service_settings.nats_url, namespace=service_settings.namespace,
        stream_duplicate_window_s=60, DATABASE_URL=database_url, retention_sweep_interval_s=0,
    )
    catalog = CatalogService(settings)
    await catalog.start()
    root = tmp_path / "storage"
    storage = FilesystemStorage(root, "http://127.0.0.1:8000", b"k" * 32)
    await storage.ensure_buckets(Buckets.from_settings(StorageSettings()).all())
    engine = create_async_engine(database_url)
    for org in ("acme", "globex"):
        await TenancyRepository(engine).create_org(org)
    monkeypatch.setenv("NATS_URL", service_settings.nats_url)
    monkeypatch.setenv("REELVAULT_NAMESPACE", service_settings.namespace)
    monkeypatch.setenv("REELVAULT_STORAGE_BACKEND", "filesystem")
    monkeypatch.setenv("REELVAULT_STORAGE_DIR", str(root))
    try:
        yield Setup(catalog, storage, root, tmp_path / "no-system", engine)
    finally:
        await engine.dispose()
        await storage.aclose()
        await catalog.stop()


async def audit(setup: Setup, capsys: pytest.CaptureFixture[str], *args: str
                ) -> tuple[int, str]:
    """Exit code and standard output (standard error is kept in ``setup.err``)."""
    from reelvault.cli import main

    def run() -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(["audit", "--data-dir", str(setup.data_dir), *args])
        out, setup.err = capsys.readouterr()
        return int(exit_info.value.code or 0), out

    return await asyncio.to_thread(run)


def by_key(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {finding["key"]: finding for finding in report["findings"]}


async def test_audit_reports_then_repairs_what_is_safe(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    good = await setup.stored_video("acme", "good bytes")
    missing = await setup.stored_video("acme", "lost bytes", objects=False)
    corrupt = await setup.stored_video("acme", "original", stored_bytes=b"bit rot")
    deleted = await setup.stored_video("acme", "deleted bytes")
    assert await setup.catalog.deletions.delete("acme", deleted.video_id, "k1") is not None
    stray_old = "acme/2026/01/5f0c9d6e-0000-4000-8000-000000000001/video.mp4"
    stray_young = "acme/2026/01/5f0c9d6e-0000-4000-8000-000000000002/video.mp4"
    await setup.put("videos", stray_old, b"old stray")
    await setup.put("videos", stray_young, b"young stray", old=False)
    missing_key = missing.stored().video.key
    missing_thumb = f"{missing_key.rsplit('/', 1)[0]}/thumbnail.webp"
    deleted_key = deleted.stored().video.key
    deleted_thumb = f"{deleted_key.rsplit('/', 1)[0]}/thumbnail.webp"
    corrupt_key = corrupt.stored().video.key

    code, out = await audit(setup, capsys, "--json")
    report = json.loads(out)
    found = by_key(report)
    assert code == 1
    assert report["rows"] == 4 and report["objects"] == 8 and report["hashed"] == 2
    assert {k: (f["problem"], f["action"]) for k, f in found.items()} == {
        missing_key: ("object_missing", "mark"),
        missing_thumb: ("object_missing", "mark"),
        corrupt_key: ("sha256_mismatch", "report_only"),
        deleted_key: ("object_without_row", "remove"),
        deleted_thumb: ("object_without_row", "remove"),
        stray_old: ("object_without_row", "remove"),
        stray_young: ("object_without_row", "too_recent"),
    }
    assert found[deleted_key]["video_id"] == str(deleted.video_id)
    assert found[corrupt_key]["video_id"] == str(corrupt.video_id)
    # A report changes nothing.
    assert setup.exists("videos", stray_old) and setup.exists("videos", deleted_key)

    code, out = await audit(setup, capsys, "--repair")
    assert code == 1  # the mismatch and the young object remain
    assert "PROBLEM" in out and "removed" in out and "marked" in out
    assert "2 left to repair" in out
    assert not setup.exists("videos", stray_old)
    assert not setup.exists("videos", deleted_key) and not setup.exists("thumbnails",
                                                                         deleted_thumb)
    assert setup.exists("videos", stray_young) and setup.exists("videos", corrupt_key)
    good_key = good.stored().video.key
    assert setup.exists("videos", good_key)
    async with setup.engine.connect() as conn:
        marked = dict((await conn.execute(text(
            "SELECT id, storage_missing_at FROM videos WHERE storage_missing_at IS NOT NULL"
        ))).all())
    assert set(marked) == {missing.video_id}

    # Again: the marked row stays marked (its date kept), and is no longer to repair.
    code, out = await audit(setup, capsys, "--json", "--repair", "--grace-hours", "0")
    report = json.loads(out)
    found = by_key(report)
    assert found[missing_key]["action"] == "already_marked"
    assert found[stray_young]["action"] == "removed"
    assert not setup.exists("videos", stray_young)
    assert report["remaining"] == 1 and code == 1  # the sha256 mismatch, report only
    async with setup.engine.connect() as conn:
        again = (await conn.execute(text(
            "SELECT storage_missing_at FROM videos WHERE id = :id"),
            {"id": missing.video_id})).scalar_one()
    assert again == marked[missing.video_id]


async def test_a_clean_organization_exits_zero_and_quick_reads_metadata(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    await setup.stored_video("globex", "fine")
    await setup.stored_video("acme", "original", stored_bytes=b"bit rot")
    code, out = await audit(setup, capsys, "--org", "globex")
    assert code == 0, out
    assert "no problems found" in out and "checked 1 rows, 2 objects (1 hashed)" in out
    # --quick trusts the sha256 the object's metadata records (the stored bytes' own).
    code, out = await audit(setup, capsys, "--org", "acme", "--quick", "--json")
    report = json.loads(out)
    assert code == 1 and [f["problem"] for f in report["findings"]] == ["sha256_mismatch"]
    assert sha256_of("original")[:12] in report["findings"][0]["detail"]


async def test_audit_refuses_a_missing_storage_folder(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("REELVAULT_STORAGE_DIR", str(tmp_path / "nowhere"))
    code, _ = await audit(setup, capsys)
    assert code == 1 and "does not exist" in setup.err
