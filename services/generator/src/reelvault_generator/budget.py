"""A provider account's request budget, shared by every generator replica: exact, fair, and
cheap to wait for.

**Exact.** A GCRA (generic cell rate algorithm) without burst: calls are admitted at least
``T = (window_s + margin_s) / limit`` apart, so any window of ``window_s`` holds at most
``limit`` calls even when each call reaches the provider up to ``margin_s`` after its slot
(event loop and network delays), at a cold start and after a restart alike. The state (the
theoretical arrival time of the next call, ``tat``) lives in one NATS KV key per provider
account, updated with compare-and-set, so replicas share it; a replica that dies after taking
a slot only leaves it unused.

**Waiting costs nothing.** A caller is admitted when its slot is at most ``horizon_s`` away
(it sleeps until the slot), otherwise it is queued: it gets its own position in its lane's
virtual queue and a ``ProviderError(429, retry_after_s=position - now)``, which the consumers
turn into a delayed ``nak``. Positions are spaced by the lane's share of the rate, so waiters
come back one at a time instead of all at the next free slot. A ticket (the video id, the
job id) marks a waiter that comes back from the queue: only those, not new arrivals, take the
slots of a lane that has a queue.

**Lanes, priorities and fairness.** Creates queue per organization (lane ``org:<slug>``),
looks at running jobs in the lane ``poll``. While creates wait, polls get at most
``poll_share`` of the rate (a job's looks back off as the queue grows); with no create
waiting they get ``idle_poll_share``. The organizations with waiting creates share the rest
equally (round-robin by virtual time), and an organization with nothing queued may take the
next slot beyond the horizon: one organization's batch delays another's single video by at
most ``horizon_s`` plus one slot.

**The provider's own signals.** A real 429 (``penalize``) halves the effective rate (down to
``min_factor``), pauses every call until its ``retry-after`` (also from ``x-ratelimit-reset``
or Gemini's ``RetryInfo``, which the clients map onto it), and the rate then recovers
linearly over ``recovery_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from reelvault_common.providers.openai_videos import ProviderError

log = logging.getLogger(__name__)

BUDGET_CODE = "rate_budget_exhausted"
Purpose = Literal["create", "poll"]
POLL_LANE = "poll"
# A lane nobody used for this long is dropped from the state.
LANE_IDLE_S = 120.0


class BudgetRefusal(ProviderError):
    """The budget's refusal: shaped like a provider's 429, so every caller knows to wait;
    ``position``: the waiters of the caller's lane ahead of it, when it was queued."""

    def __init__(self, message: str, *, retry_after_s: float, position: int | None) -> None:
        super().__init__(message, status=429, type="rate_budget", code=BUDGET_CODE,
                         retry_after_s=retry_after_s)
        self.position = position


def exhausted(wait_s: float, limit: int, window_s: float,
              position: int | None = None) -> BudgetRefusal:
    return BudgetRefusal(
        f"provider budget of {limit} requests per {window_s:g}s: next slot in {wait_s:.2f}s",
        retry_after_s=wait_s,
        position=position,
    )


def is_budget_refusal(error: ProviderError) -> bool:
    return error.code == BUDGET_CODE


# --- the policy and the state (pure) ----------------------------------------------------------
@dataclass(frozen=True)
class BudgetPolicy:
    limit: int
    window_s: float = 60.0
    # Lateness of a call after its slot that the spacing still absorbs.
    margin_s: float = 1.0
    # How far ahead a slot may be to be waited for in process (None: one slot).
    horizon_s: float | None = None
    poll_share: float = 0.2
    idle_poll_share: float = 1.0
    min_factor: float = 0.1
    recovery_s: float = 300.0

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_s <= 0 or self.margin_s < 0:
            raise ValueError("a budget needs limit >= 1, window_s > 0 and margin_s >= 0")
        if not 0 < self.poll_share < 1 or not 0 < self.idle_poll_share <= 1:
            raise ValueError("need 0 < poll_share < 1 and 0 < idle_poll_share <= 1")

    @property
    def base_interval_s(self) -> float:
        return (self.window_s + self.margin_s) / self.limit

    def interval_s(self, factor: float) -> float:
        return self.base_interval_s / factor

    def horizon(self, interval_s: float) -> float:
        return interval_s if self.horizon_s is None else max(self.horizon_s, interval_s)


@dataclass
class Lane:
    next: float = 0.0  # the lane's own next slot (its share of the rate)
    end: float = 0.0  # its virtual queue's last position
    waiting: int = 0  # waiters queued (an estimate: a waiter that never returns stays counted)

    def active(self, now: float) -> bool:
        return max(self.next, self.end) > now


@dataclass
class BudgetState:
    tat: float = 0.0
    factor: float = 1.0
    factor_at: float = 0.0
    pause_until: float = 0.0
    lanes: dict[str, Lane] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | None) -> BudgetState:
        if not data:
            return cls()
        raw = json.loads(data)
        lanes = {name: Lane(**lane) for name, lane in raw.pop("lanes", {}).items()}
        return cls(**raw, lanes=lanes)

    def factor_now(self, now: float, policy: BudgetPolicy) -> float:
        """The rate's share in force: lowered by a provider's 429, recovering linearly."""
        recovered = self.factor + max(0.0, now - self.factor_at) / policy.recovery_s
        return min(1.0, recovered)

    def waiting(self, now: float) -> int:
        return sum(lane.waiting for lane in self.lanes.values() if lane.end > now)

    def estimated_wait_s(self, now: float) -> float:
        """How long a new waiter of the busiest lane would wait."""
        ends = [lane.end for lane in self.lanes.values()]
        return max([0.0, self.tat - now, *(end - now for end in ends)])


@dataclass(frozen=True)
class Admit:
    at: float  # the call's slot (now or up to the horizon ahead)


@dataclass(frozen=True)
class Queue:
    at: float  # come back then
    queued: bool  # a position in the lane's queue (False: no ticket, just the next slot)


def lane_share(state: BudgetState, policy: BudgetPolicy, lane: str, now: float) -> float:
    """The share of the rate ``lane`` may use now (see the module's policy)."""
    creates = [name for name, other in state.lanes.items()
               if name != POLL_LANE and (other.active(now) or name == lane)]
    if lane == POLL_LANE:
        return policy.poll_share if creates else policy.idle_poll_share
    poll = state.lanes.get(POLL_LANE)
    rest = 1.0 - policy.poll_share if poll is not None and poll.active(now) else 1.0
    return rest / max(1, len(creates))


def decide(state: BudgetState, policy: BudgetPolicy, now: float, lane: str, *,
           returning: bool, ticketed: bool = True,
           not_before: float | None = None) -> Admit | Queue:
    """Admit a call (and take its slot) or queue it. Mutates ``state``.

    ``returning``: the caller comes back from this lane's queue (or has no ticket, and simply
    competes for the next slot); a new arrival of a lane that has a queue joins its end.
    ``not_before``: the call must not go before then (a first look that waits for a
    webhook): it reserves its position in the same decision instead of coming back once to
    wait and once more to queue."""
    for name in [n for n, other in state.lanes.items()
                 if max(other.next, other.end) < now - LANE_IDLE_S]:
        del state.lanes[name]
    interval = policy.interval_s(state.factor_now(now, policy))
    own = state.lanes.setdefault(lane, Lane())
    spacing = interval / lane_share(state, policy, lane, now)
    start = max(state.tat, now, state.pause_until, own.next, not_before or 0.0)
    empty = own.end <= now
    # An organization with nothing queued may take the slot right after the horizon.
    reach = policy.horizon(interval) + (interval if empty else 0.0)
    if (returning or empty) and start - now <= reach:
        state.tat = start + interval
        own.next = start + spacing
        if returning and ticketed:
            own.waiting = max(0, own.waiting - 1)
        if own.end <= now:
            own.waiting = 0
        return Admit(start)
    if not ticketed:
        return Queue(start, queued=False)
    position = start if empty else max(own.end + spacing, start)
    own.end = position
    own.waiting = own.waiting + 1 if not empty else 1
    return Queue(position, queued=True)


def penalize(state: BudgetState, policy: BudgetPolicy, now: float,
             retry_after_s: float | None) -> None:
    """The provider said 429: halve the rate in force and pause until its retry-after."""
    state.factor = max(policy.min_factor, state.factor_now(now, policy) / 2)
    state.factor_at = now
    pause = retry_after_s if retry_after_s is not None else policy.interval_s(state.factor)
    state.pause_until = max(state.pause_until, now + max(0.0, pause))


# --- the shared budget ------------------------------------------------------------------------
_KEY_SAFE = re.compile(r"[^-_=A-Za-z0-9]")


@dataclass(frozen=True)
class BudgetView:
    """What the budget looks like now (metrics)."""

    waiting: int
    estimated_wait_s: float
    rate_factor: float
    used_per_window: float  # calls the current rate allows per window


Observer = Callable[[str, BudgetView], None]


class KvRequestBudget:
    """``RequestBudget`` over a NATS KV bucket: the state in ``budget.<provider>``, one key
    ``ticket.<provider>.<ticket>`` per queued waiter (its position)."""

    MAX_ROUNDS = 64

    def __init__(
        self,
        kv: KeyValue,
        *,
        provider: str,
        limit: int,
        window_s: float = 60.0,
        margin_s: float | None = None,
        horizon_s: float | None = None,
        poll_share: float = 0.2,
        idle_poll_share: float = 1.0,
        recovery_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observer: Observer | None = None,
    ) -> None:
        if margin_s is None:  # a 60 s window keeps 1 s; a test's 1 s window keeps 20 ms
            margin_s = min(1.0, window_s / 50)
        self.policy = BudgetPolicy(limit=limit, window_s=window_s, margin_s=margin_s,
                                   horizon_s=horizon_s, poll_share=poll_share,
                                   idle_poll_share=idle_poll_share, recovery_s=recovery_s)
        self._kv = kv
        self._provider = provider
        self._key = f"budget.{_KEY_SAFE.sub('_', provider)}"
        self._clock = clock
        self._sleep = sleep
        self._observer = observer

    @property
    def limit(self) -> int:
        return self.policy.limit

    @property
    def window_s(self) -> float:
        return self.policy.window_s

    def _ticket_key(self, ticket: str) -> str:
        safe = _KEY_SAFE.sub("_", ticket)
        if safe != ticket or len(safe) > 128:
            safe = hashlib.sha256(ticket.encode()).hexdigest()
        return f"ticket.{_KEY_SAFE.sub('_', self._provider)}.{safe}"

    async def _read(self) -> tuple[BudgetState, int | None]:
        try:
            entry = await self._kv.get(self._key)
        except KeyNotFoundError:
            return BudgetState(), None
        return BudgetState.from_json(entry.value), entry.revision

    async def _write(self, state: BudgetState, revision: int | None) -> bool:
        try:
            if revision is None:
                await self._kv.create(self._key, state.to_json())
            else:
                await self._kv.update(self._key, state.to_json(), last=revision)
        except KeyWrongLastSequenceError:
            return False  # another replica moved the state: decide again
        return True

    async def _has_ticket(self, key: str) -> bool:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return False
        return entry.value is not None and entry.value != b""

    async def acquire(self, purpose: Purpose = "create", *, ticket: str | None = None,
                      org: str | None = None, not_before: float | None = None) -> None:
        """Returns at the caller's slot, or raises the budget's 429 with the wait until the
        caller's own position (a ticket: the same caller comes back with it). A slot no
        earlier than ``not_before`` (epoch seconds) that is beyond the horizon is reserved
        and refused the same way."""
        lane = POLL_LANE if purpose == "poll" else f"org:{org or ''}"
        ticket_key = self._ticket_key(ticket) if ticket is not None else None
        returning = ticket_key is None or await self._has_ticket(ticket_key)
        for _ in range(self.MAX_ROUNDS):
            state, revision = await self._read()
            now = self._clock()
            outcome = decide(state, self.policy, now, lane, returning=returning,
                             ticketed=ticket_key is not None, not_before=not_before)
            if not await self._write(state, revision):
                continue
            self._observe(state, now)
            if isinstance(outcome, Admit):
                if returning and ticket_key is not None:
                    await self._forget(ticket_key)
                await self._sleep(max(0.0, outcome.at - now))
                return
            position = None
            if outcome.queued and ticket_key is not None:
                await self._kv.put(ticket_key, f"{outcome.at:.3f}".encode())
                position = max(0, state.lanes[lane].waiting - 1)
            raise exhausted(max(outcome.at - now, 0.001), self.limit, self.window_s, position)
        raise exhausted(self.policy.base_interval_s, self.limit, self.window_s)

    async def _forget(self, key: str) -> None:
        try:
            await self._kv.delete(key)
        except Exception as exc:  # a leftover ticket only makes a later arrival "returning"
            log.debug("could not delete budget ticket %s: %r", key, exc)

    async def penalize(self, retry_after_s: float | None) -> None:
        """The provider answered 429 itself: slow down for a while (see the module)."""
        for _ in range(self.MAX_ROUNDS):
            state, revision = await self._read()
            now = self._clock()
            penalize(state, self.policy, now, retry_after_s)
            if await self._write(state, revision):
                log.warning("%s answered 429 (retry-after %s): its budget now runs at %.0f%% "
                            "of %d per %gs", self._provider, retry_after_s,
                            100 * state.factor, self.limit, self.window_s)
                self._observe(state, now)
                return

    async def view(self) -> BudgetView:
        state, _ = await self._read()
        return self._view(state, self._clock())

    def _view(self, state: BudgetState, now: float) -> BudgetView:
        factor = state.factor_now(now, self.policy)
        return BudgetView(waiting=state.waiting(now),
                          estimated_wait_s=state.estimated_wait_s(now), rate_factor=factor,
                          used_per_window=self.policy.window_s / self.policy.interval_s(factor))

    def _observe(self, state: BudgetState, now: float) -> None:
        if self._observer is not None:
            self._observer(self._provider, self._view(state, now))
