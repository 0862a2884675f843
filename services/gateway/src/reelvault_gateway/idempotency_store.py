"""``IdempotencyStore`` on the gateway's NATS KV bucket (``Topology.idempotency_bucket``).

Atomic ``create`` decides which of two racing requests reserves a key; ``update`` with the
last revision marks it done. Broker trouble is ``BrokerUnavailable`` (a 503: nothing decided).
"""

from __future__ import annotations

from collections.abc import Callable

from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from reelvault_gateway.broker import TRANSIENT_BROKER_ERRORS, BrokerUnavailable
from reelvault_gateway.idempotency import IdempotencyRecord

# nats-py turns JetStream's "wrong last sequence" answers (a compare-and-set lost the race)
# into KeyWrongLastSequenceError for create and update; any other API error is broker trouble.
_BROKER_ERRORS: tuple[type[BaseException], ...] = (APIError, *TRANSIENT_BROKER_ERRORS)


class KvIdempotencyStore:
    def __init__(self, bucket: Callable[[], KeyValue]) -> None:
        self._bucket = bucket  # raises BrokerUnavailable while there is none

    async def reserve(self, scope: str, record: IdempotencyRecord) -> int | None:
        try:
            return int(await self._bucket().create(scope, record.to_bytes()))
        except KeyWrongLastSequenceError:
            return None
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"idempotency record not written: {exc!r}") from exc

    async def read(self, scope: str) -> tuple[IdempotencyRecord, int] | None:
        try:
            entry = await self._bucket().get(scope)
        except KeyNotFoundError:
            return None
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"idempotency record not read: {exc!r}") from exc
        if entry.value is None or entry.revision is None:
            return None
        return IdempotencyRecord.from_bytes(entry.value), int(entry.revision)

    async def complete(self, scope: str, record: IdempotencyRecord, *, last: int) -> bool:
        try:
            await self._bucket().update(scope, record.to_bytes(), last=last)
        except KeyWrongLastSequenceError:
            return False
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"idempotency record not updated: {exc!r}") from exc
        return True
