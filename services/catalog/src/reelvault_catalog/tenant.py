"""Tenant transactions: reads on behalf of one organization, under row-level security.

The catalog connects as the tables' owner, who bypasses row-level security; a tenant read first
becomes the NOLOGIN role ``reelvault_tenant`` and names its organization, both for this
transaction only (``set_config(..., true)`` is ``SET LOCAL``: a pooled connection forgets both
at commit or rollback). The policies of migration ``0002_organizations`` then show the rows of
that organization and no other, whatever the query asks for: a forgotten ``WHERE org = ...``
leaks nothing. One statement, so a tenant read costs one round trip more, not two.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

TENANT_ROLE = "reelvault_tenant"
# The setting the policies read (``current_setting('reelvault.org', true)``).
ORG_SETTING = "reelvault.org"

AS_TENANT = text(
    f"SELECT set_config('role', '{TENANT_ROLE}', true), set_config('{ORG_SETTING}', :org, true)"
)


async def enter_tenant(target: AsyncConnection | AsyncSession, org: str) -> None:
    """Make the rest of ``target``'s current transaction read as ``org``."""
    await target.execute(AS_TENANT, {"org": org})


@contextlib.asynccontextmanager
async def tenant_transaction(engine: AsyncEngine, org: str) -> AsyncIterator[AsyncConnection]:
    """A transaction that sees ``org``'s rows only (committed, i.e. ended, on exit)."""
    async with engine.begin() as conn:
        await enter_tenant(conn, org)
        yield conn
