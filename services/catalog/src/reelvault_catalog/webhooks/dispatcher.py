"""Sends due deliveries, apart from the pipeline: a loop claims what is due (new deliveries at
once when the recorder wakes it, retries when their time comes, looked for every ``poll_s``)
and starts one task per attempt.

A slow or dead endpoint never delays another: each endpoint has at most
``per_endpoint_concurrency`` attempts in flight per replica (an endpoint at its limit is not
claimed for; anything claimed beyond it is given back at once), every attempt ends after
``timeout_s``, and the replica's ``workers`` are shared, so one endpoint holds only its share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

from reelvault_catalog.webhooks.repository import Claimed, Disabled, WebhookRepository
from reelvault_catalog.webhooks.sender import WebhookSender
from reelvault_catalog.webhooks.settings import WebhookDeliverySettings

log = logging.getLogger(__name__)

OnDisabled = Callable[[Disabled], Awaitable[None]]
# After a failed claim (the database away), wait this long before the next.
CLAIM_FAILURE_PAUSE_S = 2.0


class WebhookDispatcher:
    def __init__(self, repository: WebhookRepository, sender: WebhookSender,
                 settings: WebhookDeliverySettings, on_disabled: OnDisabled) -> None:
        self._repository = repository
        self._sender = sender
        self._settings = settings
        self._on_disabled = on_disabled
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight: Counter[uuid.UUID] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._loop = asyncio.create_task(self._run(), name="webhook-dispatcher")

    def wake(self) -> None:
        """Look for due deliveries now (new ones were recorded)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def stop(self, grace_s: float) -> None:
        """No new attempts; attempts in flight get ``grace_s``, then are cancelled (their
        leases run out and another replica, or the next start, tries again)."""
        self._stopping.set()
        self._wake.set()
        loop, self._loop = self._loop, None
        if loop is not None:
            await loop
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                started = await self._claim_and_start()
            except Exception as exc:
                log.warning("webhooks: could not claim due deliveries: %r", exc)
                await self._pause(CLAIM_FAILURE_PAUSE_S)
                continue
            if not started:
                await self._pause(self._settings.poll_s)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _claim_and_start(self) -> int:
        """Claim and start what may start now; how many started."""
        limit = self._settings.per_endpoint_concurrency
        free = self._settings.workers - len(self._tasks)
        if free <= 0:
            return 0
        busy = [endpoint for endpoint, n in self._in_flight.items() if n >= limit]
        claimed = await self._repository.claim(total=free, per_endpoint=limit, busy=busy)
        surplus: list[uuid.UUID] = []
        started = 0
        for delivery in claimed:
            if self._in_flight[delivery.endpoint_id] >= limit or len(self._tasks) >= \
                    self._settings.workers:
                surplus.append(delivery.id)
                continue
            self._start(delivery)
            started += 1
        await self._repository.release(surplus)
        return started

    def _start(self, delivery: Claimed) -> None:
        self._in_flight[delivery.endpoint_id] += 1
        task = asyncio.create_task(self._attempt(delivery), name=f"webhook-{delivery.id}")
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._in_flight[delivery.endpoint_id] -= 1
            if self._in_flight[delivery.endpoint_id] <= 0:
                del self._in_flight[delivery.endpoint_id]
            self._wake.set()  # a slot is free: more of this endpoint may be due

        task.add_done_callback(done)

    async def _attempt(self, delivery: Claimed) -> None:
        attempt = await self._sender.send(delivery.url, delivery.secret, str(delivery.id),
                                          delivery.payload)
        if not attempt.succeeded:
            log.info("webhook %s to endpoint %s of %s failed (attempt %d): %s", delivery.id,
                     delivery.endpoint_id, delivery.org, delivery.attempts + 1, attempt.error)
        try:
            disabled = await self._repository.finish(delivery, attempt)
        except Exception as exc:  # its lease runs out: the delivery is tried again
            log.warning("webhooks: could not record an attempt of %s: %r", delivery.id, exc)
            return
        if disabled is not None:
            log.warning("webhook endpoint %s of %s disabled after %d failed attempts",
                        disabled.endpoint_id, disabled.org, disabled.consecutive_failures)
            try:
                await self._on_disabled(disabled)
            except Exception as exc:
                log.error("webhooks: could not announce that endpoint %s was disabled: %r",
                          disabled.endpoint_id, exc)
