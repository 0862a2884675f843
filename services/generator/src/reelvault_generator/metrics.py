"""The generator's metrics: every HTTP call to the provider (route and answer), the estimated
cost of each job it created, and the lag of its consumers.

The cost is an estimate from the price table (``REELVAULT_PRICES_USD_PER_SECOND``, the same
setting and defaults as the catalog's quota prices): the model's price per second times the
requested seconds, counted when the provider accepted the create.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Literal

import httpx2
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge
from pydantic import SecretStr
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.openai_videos import (
    ProviderError,
    ReferenceUpload,
    VideoJob,
    VideoList,
    VideosClient,
)
from reelvault_common.runtime.metrics import (
    PeriodicCollectors,
    count_provider_request,
    watch_jetstream,
)

from reelvault_generator import consumers
from reelvault_generator.budget import BudgetView
from reelvault_generator.settings import GeneratorSettings

log = logging.getLogger(__name__)

PROVIDER_COST = Counter(
    "reelvault_provider_cost_usd",
    "Estimated USD cost of the jobs created at the provider (price per second of the model "
    "times the requested seconds).",
    ["provider"],
)
# Every success of the OpenAI Videos API protocol is a 200 (create included).
SUCCESS = 200

BUDGET_WAITING = Gauge(
    "reelvault_provider_budget_waiting",
    "Creates and polls queued for the provider's request budget (as last seen here).",
    ["provider"],
)
BUDGET_WAIT = Gauge(
    "reelvault_provider_budget_wait_seconds",
    "Estimated wait of a new request for the provider's budget (its longest queue).",
    ["provider"],
)
BUDGET_RATE = Gauge(
    "reelvault_provider_budget_rate_ratio",
    "The budget's rate in force over its configured rate (below 1 after a provider's 429).",
    ["provider"],
)


def observe_budget(provider: str, view: BudgetView) -> None:
    """The budget's ``observer``: its state after each decision, as gauges."""
    BUDGET_WAITING.labels(provider=provider).set(view.waiting)
    BUDGET_WAIT.labels(provider=provider).set(view.estimated_wait_s)
    BUDGET_RATE.labels(provider=provider).set(view.rate_factor)


def job_cost(model: str, seconds: str, prices: Mapping[str, Decimal]) -> Decimal | None:
    """What a job of ``model`` and ``seconds`` costs; None when the model has no price."""
    price = prices.get(model)
    if price is None or not price.is_finite() or price < 0:
        return None
    try:
        return price * Decimal(int(seconds))
    except (ValueError, InvalidOperation):
        return None


class MeteredVideosClient(VideosClient):
    """The provider client, counting each call (``reelvault_provider_requests_total``) and the
    estimated cost of each job it created (``reelvault_provider_cost_usd_total``)."""

    def __init__(
        self, base_url: str, api_key: SecretStr, *, provider: str,
        prices: Mapping[str, Decimal], timeout_s: float = 30.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s=timeout_s, transport=transport)
        self._provider = provider
        self._prices = dict(prices)
        self._unpriced: set[str] = set()
        PROVIDER_COST.labels(provider=provider)  # exported from the start, at 0

    @contextmanager
    def _calling(self, route: str) -> Iterator[None]:
        try:
            yield
        except ProviderError as exc:
            count_provider_request(self._provider, route, exc.status)
            raise
        except BaseException:  # an answer that does not decode, a timeout, a cancel
            count_provider_request(self._provider, route, None)
            raise
        count_provider_request(self._provider, route, SUCCESS)

    def _count_cost(self, model: str, seconds: str) -> None:
        cost = job_cost(model, seconds, self._prices)
        if cost is None:
            if model not in self._unpriced:
                self._unpriced.add(model)
                log.warning("no price for model %r (REELVAULT_PRICES_USD_PER_SECOND): its jobs "
                            "are not in reelvault_provider_cost_usd_total", model)
            return
        PROVIDER_COST.labels(provider=self._provider).inc(float(cost))

    async def create(
        self, *, prompt: str, model: str, seconds: str, size: str,
        input_reference: ReferenceUpload | None = None,
    ) -> VideoJob:
        with self._calling("create"):
            job = await super().create(prompt=prompt, model=model, seconds=seconds, size=size,
                                       input_reference=input_reference)
        self._count_cost(model, seconds)
        return job

    async def retrieve(self, video_id: str) -> tuple[VideoJob, float | None]:
        with self._calling("retrieve"):
            return await super().retrieve(video_id)

    async def list(
        self, *, limit: int = 20, order: Literal["asc", "desc"] = "desc", after: str | None = None
    ) -> VideoList:
        with self._calling("list"):
            return await super().list(limit=limit, order=order, after=after)

    async def delete(self, video_id: str) -> None:
        with self._calling("delete"):
            await super().delete(video_id)


def start_collectors(
    settings: GeneratorSettings, js: JetStreamContext, topology: Topology
) -> PeriodicCollectors:
    """The lag of the generator's consumers and the dead-letter count, until ``stop()``."""
    collectors = PeriodicCollectors(settings.metrics_interval_s)
    watch_jetstream(collectors, js, topology,
                    [policy.durable for policy in consumers.policies(settings, topology)])
    return collectors
