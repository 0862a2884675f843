"""Removing a deleted video's objects: the archiver owns writes to storage, so it takes
``video.deleted`` and removes each object the event names.

Idempotent: an object already gone counts as removed, so a redelivery (or a second
announcement of the same deletion) changes nothing. An object is removed only inside the
deleted video's own prefix of its organization (``<org>/...``): an event can never make the
archiver remove another organization's objects.
"""

from __future__ import annotations

import logging

from reelvault_common.contracts.events import ObjectRef, VideoDeleted
from reelvault_common.messaging.consumer import Delivery
from reelvault_common.storage.interface import ObjectStorage

log = logging.getLogger(__name__)


def removable(event: VideoDeleted, ref: ObjectRef) -> bool:
    """Only objects of the event's organization, under the deleted video's own folder."""
    parts = ref.key.split("/")
    return parts[0] == event.org and str(event.video_id) in parts[1:-1]


class RemoveDeletedObjects:
    def __init__(self, storage: ObjectStorage) -> None:
        self._storage = storage

    async def handle(self, event: VideoDeleted, delivery: Delivery) -> None:
        """Returns once every object is gone (a storage failure raises: retried)."""
        for ref in event.objects:
            if not removable(event, ref):
                log.warning("video %s: not removing %s/%s, outside the video's folder",
                            event.video_id, ref.bucket, ref.key)
                continue
            removed = await self._storage.delete(ref.bucket, ref.key)
            log.info("video %s deleted: %s/%s %s", event.video_id, ref.bucket, ref.key,
                     "removed" if removed else "already gone")
