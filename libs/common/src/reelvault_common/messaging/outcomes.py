"""What a handler can say about a message besides "done", and how long a retry waits.

A handler returns normally when its effect is durable (the message is acked), raises
``RetryLater`` to see the message again after a delay, or ``Reject`` when the message can never
be handled (it is terminated). Any other exception is a failure: retried with ``nak_delay``
until the consumer's ``max_deliver``, then dead-lettered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from reelvault_common.runtime.settings import ConsumerSettings


class RetryLater(Exception):  # an instruction, not an error
    """Hand the message back and see it again after ``delay`` seconds."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay:.1f}s")
        self.delay = delay
        self.reason = reason


class Reject(Exception):  # an instruction, not an error
    """The message can never be handled (unreadable, meant for another consumer): terminate it,
    so JetStream never redelivers it."""


def nak_delay(
    attempt: int, *, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """How long a failed delivery waits before the next one: exponential in ``attempt``
    (counting from 1) up to ``cap``, with jitter over the upper half so replicas that failed
    together do not retry together."""
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class RetryPacing:
    """The delays of one consumer's failed deliveries (``nak_delay``'s base and cap)."""

    base_s: float = 1.0
    max_s: float = 60.0

    @classmethod
    def of(cls, settings: ConsumerSettings) -> RetryPacing:
        return cls(base_s=settings.retry_base_s, max_s=settings.retry_max_s)

    def delay(self, attempt: int) -> float:
        return nak_delay(attempt, base=self.base_s, cap=self.max_s)
