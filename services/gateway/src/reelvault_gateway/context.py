"""Everything a request handler may use, built once by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import anyio
from reelvault_common.providers.models import DEFAULT_CATALOG, ModelCatalog
from reelvault_common.storage import ObjectStorage
from reelvault_common.storage.layout import Buckets

from reelvault_gateway.auth import Authenticator
from reelvault_gateway.broker import EventSink
from reelvault_gateway.catalog import CatalogClient
from reelvault_gateway.flags import FixedFlags, FlagSource
from reelvault_gateway.idempotency import IdempotencyStore
from reelvault_gateway.settings import GatewaySettings
from reelvault_gateway.visibility import RecordedWatch


class ModelSource(Protocol):
    @property
    def current(self) -> ModelCatalog: ...

    @property
    def published(self) -> bool:
        """Is ``current`` what the generator published (not a stand-in until it does)?"""
        ...


@dataclass
class FixedModels:
    """A catalog that changes only when told (tests, or a gateway without a broker yet)."""

    current: ModelCatalog = DEFAULT_CATALOG
    published: bool = True


class BrokerHealth(Protocol):
    @property
    def connected(self) -> bool: ...


@dataclass
class GatewayContext:
    settings: GatewaySettings
    buckets: Buckets
    storage: ObjectStorage
    events: EventSink
    catalog: CatalogClient
    broker: BrokerHealth
    # Who is asking: API keys (through the key cache) and session cookies.
    auth: Authenticator
    # The runtime flags (maintenance, whitelist, coming soon) as currently set.
    flags: FlagSource = field(default_factory=FixedFlags)
    # What can be generated (the generator's published catalog, else the built-in default).
    models: ModelSource = field(default_factory=FixedModels)
    # Idempotency-Key records (None: requests with a key are answered 503).
    idempotency: IdempotencyStore | None = None
    # The catalog's announcements of new rows (None: creates poll the catalog instead).
    recorded: RecordedWatch | None = None
    # Decoding a large image takes memory; only a few at a time.
    image_decoders: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(2))
