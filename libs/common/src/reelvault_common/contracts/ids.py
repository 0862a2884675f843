"""Identifiers. Event ids are derived from what the event says, so a republish after a crash
carries the same ``Nats-Msg-Id`` and JetStream's duplicate window drops it."""

from __future__ import annotations

import uuid

_EVENT_NAMESPACE = uuid.UUID("6f1c7c1e-3a43-4f43-9d8e-2f5b8f0e4a11")


def new_video_id() -> uuid.UUID:
    return uuid.uuid4()


def event_id_for(video_id: uuid.UUID, kind: str, *parts: object) -> uuid.UUID:
    """The same video, kind and parts always give the same event id."""
    name = ":".join([str(video_id), kind, *(str(p) for p in parts)])
    return uuid.uuid5(_EVENT_NAMESPACE, name)


def org_event_id_for(org: str, kind: str, *parts: object) -> uuid.UUID:
    """The same organization, kind and parts always give the same event id."""
    name = ":".join(["org", org, kind, *(str(p) for p in parts)])
    return uuid.uuid5(_EVENT_NAMESPACE, name)
