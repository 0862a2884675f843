"""The catalog's configuration: the shared service settings plus where Postgres is."""

from __future__ import annotations

from pydantic import Field, field_validator
from reelvault_common.runtime.metrics import MetricsSettings
from reelvault_common.runtime.settings import ConsumerSettings, PriceSettings, ServiceSettings
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from reelvault_catalog.webhooks.settings import Deployment, WebhookDeliverySettings

ASYNCPG_DRIVER = "postgresql+asyncpg"
_ACCEPTED_DRIVERS = {"postgres", "postgresql", ASYNCPG_DRIVER}


def normalise_database_url(url: str) -> str:
    """Accept ``postgres://``, ``postgresql://`` and ``postgresql+asyncpg://`` URLs (TCP or unix
    socket via ``?host=/dir``) and return the SQLAlchemy asyncpg form.

    libpq's ``sslmode`` becomes asyncpg's ``ssl`` (hosted Postgres URLs usually carry it).
    Error messages never include the password.
    """
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise ValueError("DATABASE_URL is not a valid database URL") from None
    if parsed.drivername not in _ACCEPTED_DRIVERS:
        raise ValueError(
            f"DATABASE_URL must be a PostgreSQL URL (postgres://, postgresql:// or "
            f"postgresql+asyncpg://), not {parsed.drivername}://"
        )
    if "sslmode" in parsed.query:
        sslmode = parsed.query["sslmode"]
        parsed = parsed.set(drivername=ASYNCPG_DRIVER).difference_update_query(["sslmode"])
        if "ssl" not in parsed.query:
            parsed = parsed.update_query_dict({"ssl": sslmode})
        return parsed.render_as_string(hide_password=False)
    # Only the scheme changes: the rest stays byte for byte (e.g. ``?host=/run/pg`` unescaped).
    text = url.strip()
    return ASYNCPG_DRIVER + text[text.index("://"):]


def redact_database_url(url: str) -> str:
    """The URL as it may appear in logs: the password replaced by ``***``."""
    try:
        parsed: URL = make_url(url)
    except ArgumentError:
        return "<unparseable database url>"
    return parsed.render_as_string(hide_password=True)


class CatalogSettings(ServiceSettings, MetricsSettings, PriceSettings):
    # repr=False: settings objects end up in logs and tracebacks; the URL may carry a password.
    database_url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/reelvault",
        validation_alias="DATABASE_URL",
        repr=False,
    )
    # The gateway's base URL: ``video_url`` is the permanent ``{base}/v1/videos/{id}/content``.
    public_base_url: str = "http://127.0.0.1:8000"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    db_statement_timeout_s: float = Field(default=30.0, gt=0)
    # Events handled at the same moment are applied in one transaction, up to this many (a
    # lone event goes at once: no added latency when the stream is quiet). 1: one each.
    projection_batch_size: int = Field(default=64, ge=1, le=1000)
    # The projection consumer (durable, shared by replicas; ``REELVAULT_PROJECTION__<FIELD>``,
    # e.g. ``REELVAULT_PROJECTION__WORKERS=32``): ``workers`` handlers at once per replica (they
    # share transactions, see ``projection_batch_size``); a handler that neither acks nor naks
    # (crashed, stuck) is redelivered after ``ack_wait_s``; an event that failed while the
    # database answered is retried after ``retry_base_s`` doubling up to ``retry_max_s``
    # (jittered), and one still failing on its ``max_deliver``-th delivery goes to the
    # dead-letter stream while its video is marked failed. Deliveries are spent only while the
    # database answers: during an outage the event is held, not retried (see handlers.py), so a
    # long outage dead-letters nothing. A plain default (not a factory) so that setting one
    # field keeps the others' catalog defaults (``nested_model_default_partial_update``).
    projection: ConsumerSettings = ConsumerSettings(
        ack_wait_s=30.0,
        max_deliver=20,
        max_ack_pending=1000,
        workers=64,
        retry_base_s=1.0,
        retry_max_s=30.0,
    )
    # While the database is down, a held event looks again at most this often.
    db_outage_poll_s: float = Field(default=5.0, gt=0)
    # Concurrent request/reply handlers per RPC subject (per replica).
    rpc_workers: int = Field(default=16, ge=1, le=256)
    ping_timeout_s: float = Field(default=2.0, gt=0)
    # Outbound webhooks: ``REELVAULT_DEPLOYMENT=dev`` (what ``reelvault up`` sets) lets
    # endpoints be on loopback; delivery rules as ``REELVAULT_WEBHOOKS__<FIELD>``; the consumer
    # recording deliveries from the stream as ``REELVAULT_WEBHOOK_RECORDER__<FIELD>``.
    deployment: Deployment = "production"
    webhooks: WebhookDeliverySettings = WebhookDeliverySettings()
    webhook_recorder: ConsumerSettings = ConsumerSettings(
        ack_wait_s=30.0, max_deliver=20, max_ack_pending=1000, workers=8,
        retry_base_s=1.0, retry_max_s=30.0,
    )
    # The retention sweeper (every replica runs one; they take disjoint batches): how often it
    # looks for expired videos, how many it deletes per transaction, and at most how many per
    # second while it works through a backlog. 0: no sweeper in this process.
    retention_sweep_interval_s: float = Field(default=60.0, ge=0)
    retention_batch_size: int = Field(default=100, ge=1, le=10000)
    retention_max_deletions_per_s: float = Field(default=50.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def database_url_for_logs(self) -> str:
        return redact_database_url(self.database_url)
