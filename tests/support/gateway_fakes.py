"""In-memory stand-ins for the gateway's adapters (catalog, event sink, broker health) and image
bytes in every format, for the gateway's unit tests."""

from __future__ import annotations

import io
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.js.api import PubAck
from PIL import Image
from pydantic import BaseModel
from reelvault_common.contracts.catalog import VideoPage, VideoRecord, VideoStatus
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.layout import Buckets
from reelvault_gateway.broker import BrokerUnavailable
from reelvault_gateway.catalog import CatalogUnavailable, InvalidCursor
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.settings import GatewaySettings


def image_bytes(fmt: str, width: int = 32, height: int = 24, color: Any = (10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    mode = "P" if fmt == "GIF" else "RGB"
    Image.new(mode, (width, height), color if mode == "RGB" else 3).save(buffer, format=fmt)
    return buffer.getvalue()


def noisy_image_bytes(fmt: str, width: int = 64, height: int = 64, seed: int = 1) -> bytes:
    """An image that does not compress away (so cutting it in half really truncates it)."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def make_record(**overrides: Any) -> VideoRecord:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "status": "queued",
        "progress": 0,
        "prompt": "a cat",
        "model": "sora-2",
        "seconds": "4",
        "size": "720x1280",
        "org": "default",
        "image1_url": None,
        "image2_url": None,
        "reference_image_keys": [],
        "provider": None,
        "provider_job_id": None,
        "video_url": None,
        "openai_url": None,
        "video_bucket": None,
        "video_key": None,
        "thumbnail_url": None,
        "thumbnail_bucket": None,
        "thumbnail_key": None,
        "bytes": None,
        "sha256": None,
        "error_stage": None,
        "error_code": None,
        "error_message": None,
        "expires_at": None,
        "stored_at": None,
        "created_at": now,
        "updated_at": now,
    }
    fields.update(overrides)
    return VideoRecord(**fields)


@dataclass
class FakeCatalog:
    records: dict[uuid.UUID, VideoRecord] = field(default_factory=dict)
    down: bool = False
    failure: Exception | None = None

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self.down:
            raise CatalogUnavailable("fake catalog is down")

    async def get(
        self, video_id: uuid.UUID, *, timeout_s: float | None = None
    ) -> VideoRecord | None:
        self._check()
        return self.records.get(video_id)

    async def list(
        self, *, status: VideoStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> VideoPage:
        self._check()
        rows = sorted(self.records.values(), key=lambda r: (r.created_at, r.id), reverse=True)
        rows = [r for r in rows if status is None or r.status == status]
        start = 0
        if cursor is not None:
            ids = [str(r.id) for r in rows]
            if cursor not in ids:
                raise InvalidCursor("unknown cursor")
            start = ids.index(cursor) + 1
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        return VideoPage(items=page, next_cursor=str(page[-1].id) if more and page else None)

    async def ping(self, *, timeout_s: float | None = None) -> None:
        self._check()


@dataclass
class FakeEvents:
    published: list[BaseModel] = field(default_factory=list)
    down: bool = False
    # Called after a publish is "acked" (e.g. to project it into the fake catalog).
    on_publish: Any = None

    async def publish(self, event: BaseModel) -> PubAck:
        if self.down:
            raise BrokerUnavailable("fake broker is down")
        self.published.append(event)
        if self.on_publish is not None:
            self.on_publish(event)
        return PubAck(stream="FAKE", seq=len(self.published))


@dataclass
class FakeBroker:
    connected: bool = True


def fake_settings(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "storage_dir": tmp_path / "storage",
        "public_base_url": "http://testserver",
        "create_visibility_timeout_s": 0.2,
        "max_upload_bytes": 200_000,
    }
    values.update(overrides)
    return GatewaySettings(**values)


async def fake_context(settings: GatewaySettings) -> GatewayContext:
    buckets = Buckets.from_settings(settings)
    storage = FilesystemStorage(settings.storage_dir, settings.public_base_url, b"k" * 32)
    await storage.ensure_buckets(buckets.all())
    return GatewayContext(
        settings=settings,
        buckets=buckets,
        storage=storage,
        events=FakeEvents(),
        catalog=FakeCatalog(),
        broker=FakeBroker(),
    )
