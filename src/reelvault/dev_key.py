"""The default organization's key that ``reelvault up`` prints: created on the first start,
kept in the data folder, and replaced only when it no longer works (revoked, expired, or the
database was reset)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from reelvault_common.contracts.catalog import CreateKey, LookupKey
from reelvault_common.contracts.tenancy import DEFAULT_ORG, Scope, key_matches, public_id_of

from reelvault.admin import CommandFailed, Session, run_with_session
from reelvault.local_system import read_api_key, write_api_key

DEV_KEY_NAME = "reelvault up"


async def _still_valid(session: Session, key: str) -> bool:
    public_id = public_id_of(key)
    if public_id is None:
        return False
    try:
        found = (await session.ask(LookupKey(public_id=public_id))).key_auth
    except CommandFailed:  # not found: a new database
        return False
    if found is None or not key_matches(key, found.key_hash):
        return False
    info = found.key
    expired = info.expires_at is not None and info.expires_at <= datetime.now(UTC)
    return info.revoked_at is None and not expired and info.org == DEFAULT_ORG


def ensure_dev_key(data_dir: Path, env: Mapping[str, str]) -> str:
    """The key in ``data_dir`` if it still works, else a new admin key of the default
    organization (saved there, readable by the owner only)."""
    kept = read_api_key(data_dir)

    async def work(session: Session) -> str:
        if kept is not None and await _still_valid(session, kept):
            return kept
        reply = await session.ask(
            CreateKey(org=DEFAULT_ORG, name=DEV_KEY_NAME, scopes=[Scope.ADMIN])
        )
        if reply.created_key is None:
            raise CommandFailed("the catalog created no key")
        return reply.created_key.secret

    try:
        key = run_with_session(data_dir, work, env)
    except CommandFailed as exc:
        raise RuntimeError(f"could not provide the default organization's key: {exc}") from None
    if key != kept:
        write_api_key(data_dir, key)
    return key
