"""Runtime flags: switched without a restart, the same for every replica. Pure.

- ``maintenance``: writes answer 503 with ``Retry-After``; reads, health and content work;
- ``whitelist``: when it lists organizations, only they may create videos;
- ``coming_soon``: the gallery shows a holding page (the API is unaffected).

Each flag is one key of a NATS KV bucket (``Topology.flags_bucket``); its value is JSON.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reelvault_common.contracts.tenancy import OrgSlug

FlagName = Literal["maintenance", "coming_soon", "whitelist"]
FLAG_NAMES: tuple[FlagName, ...] = ("maintenance", "coming_soon", "whitelist")


class Flags(BaseModel):
    model_config = ConfigDict(frozen=True)

    maintenance: bool = False
    coming_soon: bool = False
    # Empty: no whitelist, every organization may create.
    whitelist: tuple[OrgSlug, ...] = Field(default=())

    def may_create(self, org: str) -> bool:
        return not self.whitelist or org in self.whitelist

    def with_value(self, name: FlagName, raw: bytes | None) -> Flags:
        """These flags with ``name`` set from its stored value (None or unreadable: off, so a
        damaged value never locks a deployment)."""
        try:
            value = json.loads(raw) if raw else None
            return self.model_validate({**self.model_dump(), name: value or _OFF[name]})
        except ValueError:
            return self.model_validate({**self.model_dump(), name: _OFF[name]})


_OFF: dict[FlagName, object] = {"maintenance": False, "coming_soon": False, "whitelist": ()}


def encode_flag(value: bool | list[str] | tuple[str, ...]) -> bytes:
    return json.dumps(list(value) if isinstance(value, list | tuple) else value).encode()
