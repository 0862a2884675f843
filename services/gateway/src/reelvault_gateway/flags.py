"""What the runtime flags mean for a request. Pure.

The flags themselves are watched in NATS KV (``BrokerLink.flags``); a request reads the
current value, so a change applies to the next request, on every replica, within a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from reelvault_common.contracts.flags import Flags

from reelvault_gateway.errors import ApiError


class FlagSource(Protocol):
    @property
    def current(self) -> Flags: ...


@dataclass
class FixedFlags:
    """Flags that change only when told (tests, or a gateway without a broker yet)."""

    current: Flags = field(default_factory=Flags)


def refuse_writes_in_maintenance(flags: Flags, retry_after_s: int) -> None:
    """Maintenance: every write is a 503 (reads, health and content keep working)."""
    if flags.maintenance:
        raise ApiError(
            503,
            "maintenance",
            "reelvault is in maintenance: nothing can be created or changed right now; "
            "reading works. Retry later.",
            headers={"Retry-After": str(retry_after_s)},
        )


def refuse_unlisted(flags: Flags, org: str) -> None:
    """A whitelist that does not name the organization: it may not create videos."""
    if not flags.may_create(org):
        raise ApiError(
            403,
            "not_whitelisted",
            "Creating videos is open to selected organizations only for now.",
        )
