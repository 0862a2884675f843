"""Dead letters: a message that keeps failing ends here instead of being retried forever.

On its last allowed delivery (the consumer's ``max_deliver``) a failing message is copied, with
its original subject, payload, headers and the last error, to the namespace's dead-letter
stream; the video is marked failed (``code="dead_lettered"``) and the original is terminated.
``reelvault dead-letters`` lists them and replays them onto their original subject (which
names the event's organization).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from reelvault_common.contracts.events import (
    EVENT_TYPES,
    ORG_EVENT_TYPES,
    event_type_name,
    utcnow,
)
from reelvault_common.contracts.tenancy import DEFAULT_ORG, is_valid_slug
from reelvault_common.messaging.nats_client import connect_nats
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.nats_servers import NatsServer

# ``NATS_URL`` as given (one URL or a comma-separated list) or already parsed.
NatsServers = str | Sequence[str] | Sequence[NatsServer]

DEAD_LETTER_MAX_AGE_S = 30 * 86400


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    consumer: str
    subject: str
    stream_sequence: int
    deliveries: int
    payload_b64: str
    headers: dict[str, str] = Field(default_factory=dict)
    error: str
    video_id: uuid.UUID | None = None
    dead_at: AwareDatetime = Field(default_factory=utcnow)

    @property
    def payload(self) -> bytes:
        return base64.b64decode(self.payload_b64)

    @classmethod
    def of(
        cls,
        *,
        consumer: str,
        subject: str,
        stream_sequence: int,
        deliveries: int,
        payload: bytes,
        headers: dict[str, str] | None,
        error: str,
        video_id: uuid.UUID | None,
    ) -> DeadLetter:
        return cls(
            consumer=consumer,
            subject=subject,
            stream_sequence=stream_sequence,
            deliveries=deliveries,
            payload_b64=base64.b64encode(payload).decode(),
            headers=dict(headers or {}),
            error=error[:4000],
            video_id=video_id,
        )


def dead_letter_stream_config(topology: Topology) -> StreamConfig:
    return StreamConfig(
        name=topology.dead_letter_stream,
        subjects=[topology.dead_letter_subject],
        retention=RetentionPolicy.LIMITS,
        max_age=DEAD_LETTER_MAX_AGE_S,
        storage=StorageType.FILE,
        num_replicas=topology.stream_replicas,
        duplicate_window=topology.duplicate_window_s,
    )


async def ensure_dead_letter_stream(js: JetStreamContext, topology: Topology) -> None:
    config = dead_letter_stream_config(topology)
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


async def publish_dead_letter(js: JetStreamContext, topology: Topology, letter: DeadLetter) -> None:
    # One dead letter per (consumer, stream sequence): a crash after this publish and before
    # the term is deduplicated when the message comes back.
    await js.publish(
        topology.dead_letter_subject,
        letter.model_dump_json().encode(),
        stream=topology.dead_letter_stream,
        headers={"Nats-Msg-Id": f"dl:{letter.consumer}:{letter.stream_sequence}"},
    )


class StoredDeadLetter(BaseModel):
    sequence: int
    letter: DeadLetter
    stored_at: datetime | None = None


async def list_dead_letters(
    nats_url: NatsServers, topology: Topology, limit: int = 1000
) -> list[StoredDeadLetter]:
    nc = await connect_nats(nats_url, name="reelvault-dead-letters", max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(topology.dead_letter_stream)
        except NotFoundError:
            return []
        letters: list[StoredDeadLetter] = []
        seq = info.state.first_seq
        while seq and seq <= info.state.last_seq and len(letters) < limit:
            try:
                raw = await js.get_msg(topology.dead_letter_stream, seq)
            except NotFoundError:
                seq += 1
                continue
            letters.append(
                StoredDeadLetter(
                    sequence=seq, letter=DeadLetter.model_validate_json(raw.data or b"")
                )
            )
            seq += 1
        return letters
    finally:
        await nc.close()


async def replay_dead_letters(
    nats_url: NatsServers, topology: Topology, sequences: list[int] | None = None
) -> list[int]:
    """Publish each chosen dead letter's payload to its original subject (with a fresh
    ``Nats-Msg-Id``, so the duplicate window lets it through) and delete it from the
    dead-letter stream. Returns the sequences replayed."""
    chosen = [
        stored
        for stored in await list_dead_letters(nats_url, topology)
        if sequences is None or stored.sequence in sequences
    ]
    nc = await connect_nats(nats_url, name="reelvault-dead-letters", max_reconnect_attempts=1)
    replayed: list[int] = []
    try:
        js = nc.jetstream()
        for stored in chosen:
            headers = {k: v for k, v in stored.letter.headers.items() if not k.startswith("Nats-")}
            headers["Nats-Msg-Id"] = f"replay:{uuid.uuid4()}"
            headers["Reelvault-Replay-Of"] = str(stored.sequence)
            await js.publish(
                replay_subject(topology, stored.letter),
                stored.letter.payload,
                stream=topology.stream,
                headers=headers,
            )
            await js.delete_msg(topology.dead_letter_stream, stored.sequence)
            replayed.append(stored.sequence)
        return replayed
    finally:
        await nc.close()


_KNOWN_TYPES = frozenset(map(event_type_name, EVENT_TYPES)) | frozenset(
    map(event_type_name, ORG_EVENT_TYPES)
)


def replay_subject(topology: Topology, letter: DeadLetter) -> str:
    """Where a replay publishes ``letter``: its original subject. A letter stored before
    subjects carried the organization (``<namespace>.<event type>``) names a subject the
    stream no longer takes, so it goes to that event's subject now, in the organization its
    payload names (the default one for payloads written before organizations existed)."""
    legacy_prefix = f"{topology.namespace}."
    kind = letter.subject.removeprefix(legacy_prefix)
    if kind == letter.subject or kind not in _KNOWN_TYPES:
        return letter.subject
    return topology.subject(kind, _org_of(letter.payload))


def _org_of(payload: bytes) -> str:
    try:
        org = json.loads(payload).get("org", DEFAULT_ORG)
    except (ValueError, AttributeError):
        return DEFAULT_ORG
    return org if isinstance(org, str) and is_valid_slug(org) else DEFAULT_ORG
