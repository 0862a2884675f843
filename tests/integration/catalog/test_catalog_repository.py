"""The repository under concurrency: two replicas (two connection pools) applying events to the
same video at the same moment neither duplicate the row nor lose or regress an update."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from reelvault_catalog.migrate import migrate
from reelvault_catalog.models import VideoRow
from reelvault_catalog.projection import Insert, Unchanged, Wait
from reelvault_catalog.repository import CatalogRepository
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.catalog_events import VideoStory

pytestmark = pytest.mark.integration

BASE = "http://gateway.test"


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[list[AsyncEngine]]:
    engines = [create_async_engine(database_url, pool_size=10) for _ in range(2)]
    await migrate(engines[0])
    yield engines
    for engine in engines:
        await engine.dispose()


@pytest.fixture
def replicas(engines: list[AsyncEngine]) -> list[CatalogRepository]:
    return [CatalogRepository(engine, BASE) for engine in engines]


async def count_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(VideoRow))).scalar_one())


async def test_the_same_request_applied_at_once_by_two_replicas_makes_one_row(
    engines: list[AsyncEngine], replicas: list[CatalogRepository]
) -> None:
    for _ in range(5):
        event = VideoStory().requested()
        results = await asyncio.gather(*(r.apply(event) for r in replicas * 2))
        # All decided to insert or saw the row; exactly one insert wrote it.
        assert sum(result.written for result in results) == 1
        assert all(isinstance(result.outcome, Insert | Unchanged) for result in results)
    assert await count_rows(engines[0]) == 5


async def test_concurrent_progress_never_loses_the_highest_value(
    replicas: list[CatalogRepository],
) -> None:
    story = VideoStory()
    await replicas[0].apply(story.requested())
    values = list(range(1, 61))
    random.Random(7).shuffle(values)
    await asyncio.gather(*(
        replicas[i % 2].apply(story.progressed(value)) for i, value in enumerate(values)
    ))
    video = await replicas[1].get(story.org, story.video_id)
    assert video is not None
    assert video.progress == 60
    assert video.status == "processing"


async def test_stored_and_failed_racing_end_completed(replicas: list[CatalogRepository]) -> None:
    for _ in range(5):
        story = VideoStory()
        await replicas[0].apply(story.requested())
        await asyncio.gather(
            replicas[0].apply(story.stored(at=4)),
            replicas[1].apply(story.failed(stage="archive", at=5)),
            replicas[1].apply(story.progressed(70)),
            replicas[0].apply(story.started()),
        )
        video = await replicas[0].get(story.org, story.video_id)
        assert video is not None
        assert video.status == "completed"
        assert video.progress == 100
        assert video.error_code is None


async def test_an_event_without_its_row_waits_and_writes_nothing(
    engines: list[AsyncEngine], replicas: list[CatalogRepository]
) -> None:
    result = await replicas[0].apply(VideoStory().stored())
    assert isinstance(result.outcome, Wait)
    assert not result.written
    assert await count_rows(engines[0]) == 0


async def test_ping(replicas: list[CatalogRepository]) -> None:
    assert await replicas[0].ping() is True
