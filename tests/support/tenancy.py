"""Organizations and keys for tests that run whole systems: asked of the real catalog over
NATS, as the ``reelvault`` operator commands do."""

from __future__ import annotations

from collections.abc import Sequence

import nats
from pydantic import BaseModel
from reelvault_common.contracts.catalog import CreateKey, CreateOrg, RpcReply
from reelvault_common.contracts.tenancy import DEFAULT_ORG, Scope
from reelvault_common.messaging.topology import Topology


async def ask_catalog(nats_url: str | Sequence[str], namespace: str, message: BaseModel,
                      timeout_s: float = 10.0) -> RpcReply:
    servers = [nats_url] if isinstance(nats_url, str) else list(nats_url)
    connection = await nats.connect(servers=servers)
    try:
        subject = Topology(namespace).rpc_subject(message)
        raw = await connection.request(subject, message.model_dump_json().encode(),
                                       timeout=timeout_s)
    finally:
        await connection.close()
    reply = RpcReply.model_validate_json(raw.data)
    assert reply.ok, reply.error
    return reply


async def create_org(nats_url: str | Sequence[str], namespace: str, slug: str) -> None:
    await ask_catalog(nats_url, namespace, CreateOrg(slug=slug, name=slug))


async def create_key(nats_url: str | Sequence[str], namespace: str, org: str = DEFAULT_ORG,
                     scopes: Sequence[Scope] = (Scope.VIDEOS_READ, Scope.VIDEOS_WRITE)) -> str:
    """A new key of ``org``; the whole key (its secret)."""
    reply = await ask_catalog(nats_url, namespace,
                              CreateKey(org=org, name="test", scopes=list(scopes)))
    assert reply.created_key is not None
    return reply.created_key.secret
