"""The archiver's durable consumers, declared in one place.

``video.completed`` (``completed``) and ``video.archive.requested`` (``rearchive``), each on its
own durable with its own ``ConsumerSettings`` (``REELVAULT_COMPLETED__*``,
``REELVAULT_REARCHIVE__*``). Both lead to the same copy and share one ``DeadlineScheduler`` of
copy slots.

The archiver itself decides when to stop retrying (the source's ``expires_at``, or an attempt
budget when there is none); ``max_deliver`` is only a high safety net, and a message still
failing on its last delivery is dead-lettered by the runner (the video is then reported failed,
``ArchiveHandler.dead_lettered``), never dropped silently. No server-side backoff
(``ConsumerPolicy.of``): nats-server stretches every ``nak(delay)`` to a backoff list's
schedule, which would turn a 30 s download retry into minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reelvault_common.contracts.events import VideoArchiveRequested, VideoCompleted, VideoDeleted
from reelvault_common.messaging.consumer import Consumer
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime.settings import ConsumerSettings

from reelvault_archiver.handlers import ArchiveEvent, ArchiveHandler
from reelvault_archiver.removal import RemoveDeletedObjects
from reelvault_archiver.settings import ArchiverSettings

SERVICE = "archiver"
# A publish that timed out is an expected hiccup: retried (the copy is idempotent) without a
# traceback in the log.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError,)


@dataclass(frozen=True)
class ArchiveInput:
    """One durable: its purpose (durable name, settings field) and the event it takes."""

    purpose: str
    event: type[VideoCompleted] | type[VideoArchiveRequested]

    def settings(self, settings: ArchiverSettings) -> ConsumerSettings:
        """This consumer's settings, with its intake (``workers``) at least ``max_workers``:
        every copy slot can be busy while the next message already waits for it."""
        rules: ConsumerSettings = getattr(settings, self.purpose)
        return rules.model_copy(update={"workers": max(rules.workers, settings.max_workers)})

    def durable(self, topology: Topology) -> str:
        return topology.durable(SERVICE, self.purpose)

    def subjects(self, topology: Topology) -> tuple[str, ...]:
        return (topology.subject_for(self.event),)


INPUTS = (
    ArchiveInput("completed", VideoCompleted),
    ArchiveInput("rearchive", VideoArchiveRequested),
)


DELETIONS = "deletions"


def deletions_policy(settings: ArchiverSettings, topology: Topology) -> ConsumerPolicy:
    return ConsumerPolicy.of(topology.durable(SERVICE, DELETIONS),
                             (topology.subject_for(VideoDeleted),), settings.deletions)


def consumer_policies(settings: ArchiverSettings, topology: Topology) -> list[ConsumerPolicy]:
    """What ``wait_for_nats`` creates or reconciles before the archiver consumes."""
    return [
        ConsumerPolicy.of(source.durable(topology), source.subjects(topology),
                          source.settings(settings))
        for source in INPUTS
    ] + [deletions_policy(settings, topology)]


def deletions_consumer(
    settings: ArchiverSettings, topology: Topology, removal: RemoveDeletedObjects
) -> Consumer[VideoDeleted]:
    """``video.deleted``: the deleted video's objects removed (idempotently). A message still
    failing on its last delivery is dead-lettered (replayable); the video stays deleted."""
    return Consumer[VideoDeleted].configured(
        settings.deletions,
        durable=topology.durable(SERVICE, DELETIONS),
        subjects=(topology.subject_for(VideoDeleted),),
        decode=VideoDeleted.model_validate_json,
        handle=removal.handle,
        transient=TRANSIENT_ERRORS,
    )


def archive_consumers(
    settings: ArchiverSettings,
    topology: Topology,
    handler_for: Callable[[ConsumerSettings], ArchiveHandler],
) -> list[Consumer[ArchiveEvent]]:
    """The consumers the runner runs; ``handler_for`` builds one consumer's handler from its
    settings (its download retries are paced like its deliveries)."""
    consumers: list[Consumer[ArchiveEvent]] = []
    for source in INPUTS:
        rules = source.settings(settings)
        handler = handler_for(rules)
        consumers.append(Consumer[ArchiveEvent].configured(
            rules,
            durable=source.durable(topology),
            subjects=source.subjects(topology),
            # A payload of another type (or no event at all) does not decode: terminated.
            decode=source.event.model_validate_json,
            handle=handler.archive,
            transient=TRANSIENT_ERRORS,
            on_dead_letter=handler.dead_lettered,
        ))
    return consumers
