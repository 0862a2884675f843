"""Generator configuration, from the environment (``REELVAULT_*`` plus the well-known
``NATS_URL``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``)."""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from reelvault_common.runtime.metrics import MetricsSettings
from reelvault_common.runtime.settings import (
    ConsumerSettings,
    PriceSettings,
    ProviderSettings,
    ServiceSettings,
    StorageSettings,
)

from reelvault_generator.polling import MIN_POLL_DELAY_S

# Extra deliveries of a poll message beyond what its deadline can use.
POLL_DELIVERY_SLACK = 20

# The defaults of each consumer's delivery rules. A field not set (``REELVAULT_REQUESTS__*``,
# ``REELVAULT_POLL__*`` or a partial dict in code) keeps these, not ConsumerSettings' generic
# ones: setting REELVAULT_REQUESTS__WORKERS alone must not drop max_deliver from 150 to 20.
CONSUMER_DEFAULTS: dict[str, dict[str, Any]] = {
    # Deliveries of one VideoRequested before it is dead-lettered (video failed,
    # ``dead_lettered``; replayable). Retries (a create the provider refused for now without a
    # retry-after, a handler that failed) back off from retry_base_s up to retry_max_s, so
    # 150 deliveries cover about two hours of a provider refusing or failing. Each worker
    # mostly waits on the provider and KV; max_ack_pending counts retries waiting too.
    "requests": {"ack_wait_s": 120.0, "max_deliver": 150, "max_ack_pending": 10000,
                 "workers": 16, "retry_base_s": 1.0, "retry_max_s": 60.0},
    # Every delivery is one look at a provider job; max_ack_pending bounds the jobs followed
    # at once (a nak'd look counts until it is acked). max_deliver and retry_max_s are derived
    # unless set (see ``_derive_poll``): from job_deadline_s and from poll_max_interval_s.
    "poll": {"ack_wait_s": 120.0, "max_ack_pending": 10000, "workers": 16,
             "retry_base_s": 1.0},
    # A cancel is one ledger write and one event.
    "cancel": {"ack_wait_s": 30.0, "max_deliver": 50, "max_ack_pending": 1000, "workers": 2,
               "retry_base_s": 1.0, "retry_max_s": 30.0},
}


def min_poll_gap_s(retry_base_s: float) -> float:
    """The shortest wait between two looks at a job (a poll-after of 0, or the first backoff
    of a failed look: full jitter between half the base and the base)."""
    return min(MIN_POLL_DELAY_S, retry_base_s / 2)


def poll_max_deliver(job_deadline_s: float, retry_base_s: float) -> int:
    """The poll consumer's derived ``max_deliver``: every delivery is one scheduled look, and
    looks are never closer than ``min_poll_gap_s``, so a job reaches its deadline (where the
    handler ends it) long before this many deliveries. It only bounds a look that keeps
    failing -- and such a look is dead-lettered at the deadline anyway (``give_up``)."""
    return math.ceil(job_deadline_s / min_poll_gap_s(retry_base_s)) + POLL_DELIVERY_SLACK


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class GeneratorSettings(
    ServiceSettings, ProviderSettings, StorageSettings, MetricsSettings, PriceSettings
):
    """One flat settings object: it is also the ``ProviderSettings`` and ``StorageSettings`` the
    shared helpers take (``open_storage(settings)``)."""


    # Who holds a ledger claim (logs and the KV entry; never used for decisions).
    instance_id: str = Field(default_factory=_default_instance_id)
    provider_name: str = "openai"

    # --- creating jobs --------------------------------------------------------------------
    # Hard bound on one create call (upload included). A claim older than this plus
    # ``claim_margin_s`` belongs to an owner that died mid-create: it is recovered.
    create_timeout_s: float = Field(default=60.0, gt=0)
    claim_margin_s: float = Field(default=30.0, ge=0)
    # Recovery lists provider jobs created since ``claimed_at - recovery_margin_s`` (clock
    # skew between us and the provider) and no later than the end of the create window.
    recovery_margin_s: float = Field(default=60.0, ge=0)
    recovery_max_pages: int = Field(default=20, ge=1)
    # Waiting for a fixed configuration problem (401: bad key) before trying again.
    unauthorized_retry_s: float = Field(default=60.0, gt=0)
    # Uploaded reference images larger than this are refused (the images bucket allows 10 MB).
    reference_max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)

    # --- following jobs -------------------------------------------------------------------
    poll_interval_s: float = Field(default=2.0, gt=0)
    poll_max_interval_s: float = Field(default=15.0, gt=0)
    poll_backoff_factor: float = Field(default=1.5, ge=1.0)
    poll_jitter: float = Field(default=0.2, ge=0, lt=1)
    # The provider's ``openai-poll-after-ms`` is honoured up to this (a sane upper bound).
    poll_after_max_s: float = Field(default=120.0, gt=0)
    job_deadline_s: float = Field(default=3600.0, gt=0)

    # --- consumers ------------------------------------------------------------------------
    # Declared after the settings their derived values come from (``_derive_poll`` reads
    # them). Defaults: CONSUMER_DEFAULTS.
    # ``video.requested`` (``REELVAULT_REQUESTS__*``): retry_base_s/retry_max_s also pace a
    # create the provider refused for now (429/5xx) without a retry-after.
    requests: ConsumerSettings = Field(
        default_factory=lambda: ConsumerSettings(**CONSUMER_DEFAULTS["requests"]),
        validate_default=True,
    )
    # ``video.generation.started`` (``REELVAULT_POLL__*``): retry_base_s/retry_max_s also pace
    # a look whose retrieve failed without a retry-after.
    poll: ConsumerSettings = Field(
        default_factory=lambda: ConsumerSettings(**CONSUMER_DEFAULTS["poll"]),
        validate_default=True,
    )
    # ``video.cancel.requested`` (``REELVAULT_CANCEL__*``).
    cancel: ConsumerSettings = Field(
        default_factory=lambda: ConsumerSettings(**CONSUMER_DEFAULTS["cancel"]),
        validate_default=True,
    )

    # --- provider webhooks ----------------------------------------------------------------
    webhook_secret: SecretStr | None = None
    # Each provider's own signing secret where it differs (JSON, provider -> secret): OpenAI's
    # endpoint secret, OpenRouter's workspace secret, a Gemini webhook's signing secret.
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    webhook_host: str = "127.0.0.1"
    # 0: an ephemeral port (tests); None: no webhook endpoint.
    webhook_port: int | None = Field(default=None, ge=0, le=65535)
    webhook_tolerance_s: float = Field(default=300.0, gt=0)
    webhook_dedupe_ttl_s: float = Field(default=72 * 3600.0, gt=0)
    # With the endpoint on, the first poll of a job waits until this long after its creation:
    # the webhook normally ends the job first, and polling stays the safety net for a lost
    # one (0: poll at once, as without webhooks).
    webhook_first_poll_delay_s: float = Field(default=30.0, ge=0)

    # Where providers reach the webhook endpoint from outside (e.g. https://hooks.example.com);
    # jobs then carry a callback URL naming their video, so a webhook can adopt the job of a
    # create whose answer was lost (OpenRouter, Gemini). None: no per-job callback.
    webhook_public_url: str | None = None
    # How long finished videos stay downloadable where the protocol does not say: OpenRouter
    # does not document it; Gemini keeps them two days (an hour's margin here).
    openrouter_content_ttl_s: float = Field(default=3600.0, gt=0)
    gemini_content_ttl_s: float = Field(default=47 * 3600.0, gt=0)
    # Each provider's documented polling cadence (OpenRouter: 10-30 s; Gemini's docs poll every
    # 10 s); with webhooks the first look waits longer (``webhook_first_poll_delay_s``).
    openrouter_poll_interval_s: float = Field(default=15.0, gt=0)
    gemini_poll_interval_s: float = Field(default=10.0, gt=0)
    # How often the model catalog is refreshed from the providers' capability data.
    models_refresh_s: float = Field(default=3600.0, gt=0)
    # How long a stale claim at a provider that cannot list jobs waits for such a webhook.
    adoption_window_s: float = Field(default=900.0, gt=0)

    # --- shared request budget ------------------------------------------------------------
    # Requests per minute to the provider, shared by every replica; None: unlimited.
    provider_rpm: int | None = Field(default=None, ge=1)
    # The budget's sliding window (tests shorten it); the allowance scales with it.
    provider_budget_window_s: float = Field(default=60.0, gt=0)
    # The share of the budget polls may use while creates wait (None: 0.2 with webhooks, the
    # safety net; 0.5 without, so every job is still looked at often enough).
    provider_poll_share: float | None = Field(default=None, gt=0, lt=1)
    # How far ahead a slot is waited for in process (None: one slot); later ones are queued.
    provider_budget_horizon_s: float | None = Field(default=None, gt=0)

    @field_validator("requests", "poll", "cancel", mode="before")
    @classmethod
    def _over_consumer_defaults(cls, value: object, info: ValidationInfo) -> object:
        """The fields given (env, dict or ConsumerSettings) over this consumer's defaults.

        Done here rather than by pydantic-settings' partial update (what the other services
        use): that marks every field as given, and the poll's derived fields must know which
        ones really were."""
        if isinstance(value, ConsumerSettings):
            value = value.model_dump(exclude_unset=True)
        if isinstance(value, Mapping):
            return {**CONSUMER_DEFAULTS[info.field_name or ""], **value}
        return value

    @field_validator("poll", mode="after")
    @classmethod
    def _derive_poll(cls, poll: ConsumerSettings, info: ValidationInfo) -> ConsumerSettings:
        """Unless set: ``max_deliver`` from ``job_deadline_s`` (``poll_max_deliver``), and
        ``retry_max_s`` = ``poll_max_interval_s`` (a failed look never waits longer than a
        running job between looks)."""
        derived: dict[str, Any] = {}
        if "max_deliver" not in poll.model_fields_set and "job_deadline_s" in info.data:
            derived["max_deliver"] = poll_max_deliver(info.data["job_deadline_s"],
                                                      poll.retry_base_s)
        if "retry_max_s" not in poll.model_fields_set and "poll_max_interval_s" in info.data:
            derived["retry_max_s"] = max(info.data["poll_max_interval_s"], poll.retry_base_s)
        if not derived:
            return poll
        return ConsumerSettings.model_validate({**poll.model_dump(exclude_unset=True),
                                                **derived})

    @model_validator(mode="after")
    def _check(self) -> GeneratorSettings:
        if self.poll_max_interval_s < self.poll_interval_s:
            raise ValueError("poll_max_interval_s must be >= poll_interval_s")
        if self.webhook_port is not None and not (
            self.webhook_secret and self.webhook_secret.get_secret_value()
        ):
            raise ValueError("a webhook endpoint needs REELVAULT_WEBHOOK_SECRET (unsigned "
                             "deliveries would let anyone finish videos)")
        return self

    def webhook_secret_for(self, provider: str) -> str | None:
        secret = self.webhook_secrets.get(provider) or self.webhook_secret
        return secret.get_secret_value() if secret is not None else None

    @property
    def min_poll_gap_s(self) -> float:
        """The shortest wait between two looks at a job (see ``min_poll_gap_s``)."""
        return min_poll_gap_s(self.poll.retry_base_s)

    @property
    def webhooks_enabled(self) -> bool:
        """Is the webhook endpoint configured (port and secret)?"""
        return self.webhook_port is not None and self.webhook_secret is not None

    @property
    def first_poll_delay_s(self) -> float:
        """How long after its creation a job is first polled."""
        return self.webhook_first_poll_delay_s if self.webhooks_enabled else 0.0

    @property
    def claim_stale_after_s(self) -> float:
        return self.create_timeout_s + self.claim_margin_s

    @property
    def poll_share(self) -> float:
        """The budget's share for polls while creates wait (see ``provider_poll_share``)."""
        if self.provider_poll_share is not None:
            return self.provider_poll_share
        return 0.2 if self.webhooks_enabled else 0.5

    @property
    def provider_budget_limit(self) -> int | None:
        """Requests allowed per budget window, or None without a budget."""
        if self.provider_rpm is None:
            return None
        return max(1, round(self.provider_rpm * self.provider_budget_window_s / 60.0))
