"""Fault injection: the failures the real API shows, on demand and repeatable.

Two sources, consulted by the routes and by job creation:
- rates in ``FaultSettings`` (env ``PROVIDER_SIM_FAULTS__*`` or ``PUT /_sim/faults/config``),
  drawn from a random stream seeded by the simulator seed;
- one-shot rules queued through ``POST /_sim/faults`` ("the next 2 creates get a 429"),
  consumed in order by the first matching request. Rules win over rates.

Every decision draws the same count of random numbers whatever the rates are, so a run with
the same seed and the same request sequence makes the same decisions.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reelvault_providersim.errors import ApiError
from reelvault_providersim.jobs import JobError, Outcome, Protocol

# "models": OpenRouter's model listing and Gemini's model health check.
Route = Literal[
    "create", "retrieve", "list", "delete", "content", "remix", "edit", "extend", "models"
]
ALL_ROUTES: tuple[Route, ...] = (
    "create",
    "retrieve",
    "list",
    "delete",
    "content",
    "remix",
    "edit",
    "extend",
    "models",
)
RuleKind = Literal[
    "rate_limit",
    "quota",
    "server_error",
    "job_failed",
    "job_expired",
    "job_cancelled",
    "slow_job",
    "content_error",
    "content_cut",
    "slow_response",
]
Rate = float

RPM_WINDOW_S = 60.0


class FaultSettings(BaseModel):
    """Standing fault rates (each 0..1, the share of requests or jobs hit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: tuple[Route, ...] = ALL_ROUTES  # where rate_limit/server_error rates apply
    rate_limit_rate: Rate = Field(default=0.0, ge=0, le=1)
    # Requests per rolling minute over all /v1 routes; beyond it -> 429 (None: no limit).
    rate_limit_rpm: int | None = Field(default=None, ge=1)
    retry_after_s: float = Field(default=1.0, ge=0)
    server_error_rate: Rate = Field(default=0.0, ge=0, le=1)
    server_error_status: int = Field(default=500, ge=500, le=599)
    job_failed_rate: Rate = Field(default=0.0, ge=0, le=1)
    job_failed_code: str = "moderation_blocked"
    job_failed_message: str = (
        "Your request was blocked by our moderation system when checking the prompt."
    )
    job_expired_rate: Rate = Field(default=0.0, ge=0, le=1)
    slow_job_rate: Rate = Field(default=0.0, ge=0, le=1)
    slow_job_factor: float = Field(default=10.0, ge=1)
    # How generation time varies around generation_s.
    generation_distribution: Literal["fixed", "uniform", "lognormal"] = "fixed"
    generation_spread: float = Field(default=0.5, ge=0, le=5)
    content_error_rate: Rate = Field(default=0.0, ge=0, le=1)
    content_error_status: int = Field(default=502, ge=500, le=599)
    content_cut_rate: Rate = Field(default=0.0, ge=0, le=1)
    # Where a cut download stops, as a share of the bytes it should have sent.
    content_cut_fraction: float = Field(default=0.5, ge=0, lt=1)


class FaultRule(BaseModel):
    """A one-shot fault for the next ``times`` matching requests or jobs."""

    model_config = ConfigDict(extra="forbid")

    kind: RuleKind
    # Request faults: which route (None: any API route). Job faults apply to create/remix.
    route: Route | None = None
    # Which protocol's requests or jobs it hits (None: any).
    protocol: Protocol | None = None
    times: int = Field(default=1, ge=1)
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after_s: float | None = Field(default=None, ge=0)
    code: str | None = None
    message: str | None = None
    generation_s: float | None = Field(default=None, ge=0)
    cut_after_bytes: int | None = Field(default=None, ge=0)
    cut_fraction: float | None = Field(default=None, ge=0, lt=1)
    # slow_response: how long the matching request waits before it is served.
    delay_s: float | None = Field(default=None, ge=0, le=600)


_REQUEST_KINDS = {"rate_limit", "quota", "server_error"}
_JOB_KINDS = {"job_failed", "job_expired", "job_cancelled", "slow_job"}
_CONTENT_KINDS = {"content_error", "content_cut"}
_DELAY_KINDS = {"slow_response"}
DEFAULT_SLOW_RESPONSE_S = 5.0


@dataclass(frozen=True)
class JobPlan:
    generation_s: float
    outcome: Outcome
    error: JobError | None


@dataclass(frozen=True)
class ContentCut:
    """Send the headers of the full body, then only this many bytes, then drop the line."""

    after_bytes: int | None
    fraction: float


class FaultPolicy:
    def __init__(self, settings: FaultSettings, *, seed: int, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._seed = seed
        self._start()

    def _start(self) -> None:
        seed = self._seed
        self._requests = random.Random(f"{seed}:faults:requests")
        self._jobs = random.Random(f"{seed}:faults:jobs")
        self._content = random.Random(f"{seed}:faults:content")
        self._rules: deque[FaultRule] = deque()
        self._recent: deque[float] = deque()
        self.injected: dict[str, int] = {}

    # -- control (admin routes) --

    def configure(self, settings: FaultSettings) -> None:
        self.settings = settings

    def push(self, rules: list[FaultRule]) -> None:
        self._rules.extend(rule.model_copy() for rule in rules)

    def reset(self) -> None:
        """Back to no faults, and to the start of every random stream."""
        self.settings = FaultSettings()
        self._start()

    def pending(self) -> list[FaultRule]:
        return list(self._rules)

    # -- decisions --

    def on_request(
        self, route: Route, *, model: str | None = None, protocol: Protocol = "openai"
    ) -> ApiError | None:
        """A fault answer for this API request, or None to serve it normally (in OpenAI's
        envelope: the other protocols translate it into theirs)."""
        now = self._clock()
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - RPM_WINDOW_S:
            self._recent.popleft()
        draw_limit, draw_error = self._requests.random(), self._requests.random()

        rule = self._take(route, _REQUEST_KINDS, protocol)
        if rule is not None:
            return self._request_error(rule, model)
        s = self.settings
        if s.rate_limit_rpm is not None and len(self._recent) > s.rate_limit_rpm:
            oldest = self._recent[0]
            wait = max(s.retry_after_s, oldest + RPM_WINDOW_S - now)
            return self._fail("rate_limit", rate_limited(s.rate_limit_rpm, 0, wait, model))
        if route in s.routes and draw_limit < s.rate_limit_rate:
            limit = s.rate_limit_rpm or 25
            return self._fail("rate_limit", rate_limited(limit, 0, s.retry_after_s, model))
        if route in s.routes and draw_error < s.server_error_rate:
            return self._fail("server_error", server_error(s.server_error_status))
        return None

    def plan_job(self, generation_s: float, protocol: Protocol = "openai") -> JobPlan:
        """Decide at create time how long a job takes and how it ends."""
        s = self.settings
        draws = [self._jobs.random() for _ in range(4)]
        gauss = self._jobs.gauss(0.0, 1.0)
        duration = _spread(
            generation_s, s.generation_distribution, s.generation_spread, draws[0], gauss
        )
        rule = self._take("create", _JOB_KINDS, protocol)
        if rule is not None:
            if rule.kind == "slow_job":
                self._hit("slow_job")
                slow = (
                    rule.generation_s
                    if rule.generation_s is not None
                    else duration * s.slow_job_factor
                )
                return JobPlan(slow, "completed", None)
            if rule.kind == "job_failed":
                self._hit("job_failed")
                error = JobError(
                    rule.code or s.job_failed_code, rule.message or s.job_failed_message
                )
                return JobPlan(duration, "failed", error)
            if rule.kind == "job_cancelled":
                self._hit("job_cancelled")
                error = JobError(rule.code or "cancelled", rule.message or "Job was cancelled")
                return JobPlan(duration, "cancelled", error)
            self._hit("job_expired")
            return JobPlan(duration, "expired", _expired_error(rule.code, rule.message))
        if draws[1] < s.job_failed_rate:
            self._hit("job_failed")
            return JobPlan(duration, "failed", JobError(s.job_failed_code, s.job_failed_message))
        if draws[2] < s.job_expired_rate:
            self._hit("job_expired")
            return JobPlan(duration, "expired", _expired_error(None, None))
        if draws[3] < s.slow_job_rate:
            self._hit("slow_job")
            return JobPlan(duration * s.slow_job_factor, "completed", None)
        return JobPlan(duration, "completed", None)

    def response_delay(self, route: Route, protocol: Protocol = "openai") -> float:
        """Seconds to hold this request before serving it (a ``slow_response`` rule; only
        rules, no standing rate: it draws nothing, so seeded decisions stay the same)."""
        rule = self._take(route, _DELAY_KINDS, protocol)
        if rule is None:
            return 0.0
        self._hit("slow_response")
        return rule.delay_s if rule.delay_s is not None else DEFAULT_SLOW_RESPONSE_S

    def on_content(self, protocol: Protocol = "openai") -> ApiError | ContentCut | None:
        """A failed or cut download for this content request, or None."""
        s = self.settings
        draw_error, draw_cut = self._content.random(), self._content.random()
        rule = self._take("content", _CONTENT_KINDS, protocol)
        if rule is not None:
            if rule.kind == "content_error":
                return self._fail(
                    "content_error", server_error(rule.status or s.content_error_status)
                )
            self._hit("content_cut")
            fraction = (
                rule.cut_fraction if rule.cut_fraction is not None else s.content_cut_fraction
            )
            return ContentCut(rule.cut_after_bytes, fraction)
        if draw_error < s.content_error_rate:
            return self._fail("content_error", server_error(s.content_error_status))
        if draw_cut < s.content_cut_rate:
            self._hit("content_cut")
            return ContentCut(None, s.content_cut_fraction)
        return None

    def _take(self, route: Route, kinds: set[str], protocol: Protocol) -> FaultRule | None:
        for rule in self._rules:
            if rule.kind not in kinds:
                continue
            if rule.protocol is not None and rule.protocol != protocol:
                continue
            if rule.kind in _JOB_KINDS:
                if route not in ("create", "remix", "edit", "extend"):
                    continue
            elif rule.route is not None and rule.route != route:
                continue
            rule.times -= 1
            if rule.times <= 0:
                self._rules.remove(rule)
            return rule
        return None

    def _request_error(self, rule: FaultRule, model: str | None) -> ApiError:
        if rule.kind == "rate_limit":
            wait = (
                rule.retry_after_s
                if rule.retry_after_s is not None
                else self.settings.retry_after_s
            )
            limit = self.settings.rate_limit_rpm or 25
            return self._fail("rate_limit", rate_limited(limit, 0, wait, model, rule.message))
        if rule.kind == "quota":
            return self._fail("quota", quota_exceeded())
        return self._fail("server_error", server_error(rule.status or 500, rule.message))

    def _hit(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def _fail(self, kind: str, error: ApiError) -> ApiError:
        self._hit(kind)
        return error


def _spread(base: float, distribution: str, spread: float, uniform: float, gauss: float) -> float:
    if base <= 0 or distribution == "fixed":
        return base
    if distribution == "uniform":
        return max(0.0, base * (1 + spread * (2 * uniform - 1)))
    # Lognormal with the given sigma and median ``base``: long tail, like real queues.
    return base * math.exp(spread * gauss)


def _expired_error(code: str | None, message: str | None) -> JobError:
    return JobError(
        code or "video_expired", message or "The video expired before it was retrieved."
    )


def rate_limited(
    limit: int, remaining: int, retry_after_s: float, model: str | None, message: str | None = None
) -> ApiError:
    model_name = model or "sora-2"
    text = message or (
        f"Rate limit reached for {model_name} in organization org-simulator on requests per min "
        f"(RPM): Limit {limit}, Used {limit}, Requested 1. "
        f"Please try again in {retry_after_s:g}s."
    )
    headers = {
        "retry-after": str(max(0, math.ceil(retry_after_s))),
        "retry-after-ms": str(int(retry_after_s * 1000)),
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": f"{retry_after_s:g}s",
    }
    return ApiError(429, text, type="requests", code="rate_limit_exceeded", headers=headers)


def quota_exceeded() -> ApiError:
    return ApiError(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        type="insufficient_quota",
        code="insufficient_quota",
    )


def server_error(status: int, message: str | None = None) -> ApiError:
    default = {
        502: "Bad gateway.",
        503: "The server is overloaded or not ready yet.",
    }.get(status, "The server had an error while processing your request. Sorry about that!")
    return ApiError(status, message or default, type="server_error")
