"""Removing a deleted video's objects: only inside the video's own folder of its organization,
idempotently."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from reelvault_archiver.removal import RemoveDeletedObjects, removable
from reelvault_common.contracts.events import ObjectRef, VideoDeleted
from reelvault_common.storage.interface import ListedObject

VIDEO = uuid.UUID("7d1f0a52-7f37-4c55-9a7c-5a0f5c2f8e01")


def deleted(*keys: str, org: str = "acme") -> VideoDeleted:
    return VideoDeleted.new(video_id=VIDEO, org=org, correlation_id="c",
                            objects=tuple(ObjectRef(bucket="videos", key=k) for k in keys))


def test_only_the_videos_own_objects_are_removable() -> None:
    event = deleted()
    assert removable(event, ObjectRef(bucket="videos", key=f"acme/2026/01/{VIDEO}/video.mp4"))
    assert not removable(event, ObjectRef(bucket="videos",
                                          key=f"globex/2026/01/{VIDEO}/video.mp4"))
    assert not removable(event, ObjectRef(bucket="videos", key=f"acme/2026/01/{uuid.uuid4()}/v"))
    assert not removable(event, ObjectRef(bucket="videos", key=f"acme/{VIDEO}"))


class Storage:
    def __init__(self, keys: set[str]) -> None:
        self.keys = keys

    async def delete(self, bucket: str, key: str) -> bool:
        if key in self.keys:
            self.keys.remove(key)
            return True
        return False

    def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ListedObject]:
        raise NotImplementedError


async def test_removal_is_idempotent_and_refuses_foreign_keys() -> None:
    mine = f"acme/2026/01/{VIDEO}/video.mp4"
    foreign = f"globex/2026/01/{VIDEO}/video.mp4"
    storage = Storage({mine, foreign})
    handler = RemoveDeletedObjects(storage)  # type: ignore[arg-type]
    event = deleted(mine, foreign)
    await handler.handle(event, None)  # type: ignore[arg-type]
    await handler.handle(event, None)  # type: ignore[arg-type]
    assert storage.keys == {foreign}
