"""Authentication: a request's key or session cookie -> its ``Principal``, through the key
cache (the rules are in ``credentials.py`` and ``sessions.py``)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from reelvault_gateway.credentials import (
    Principal,
    bearer_key,
    key_public_id,
    principal_from_key,
    principal_from_session,
    session_expiry,
    unauthorized,
)
from reelvault_gateway.key_cache import KeyCache
from reelvault_gateway.sessions import SessionSigner
from reelvault_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Session:
    principal: Principal
    cookie_value: str
    expires_at: datetime
    max_age_s: int


class Authenticator:
    def __init__(
        self,
        keys: KeyCache,
        sessions: SessionSigner,
        session_ttl_s: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.keys = keys
        self._sessions = sessions
        self._session_ttl_s = session_ttl_s
        self._clock = clock

    async def authenticate(
        self, authorization: Sequence[str], session: str | None, *, session_usable: bool = True
    ) -> Principal:
        """``authorization``: every ``Authorization`` header value; ``session``: the session
        cookie, which counts only when ``session_usable`` (see ``session_may_write``). A header
        wins over a cookie (and a bad header is refused, not passed over)."""
        if authorization or not session:
            return await self.check_key(bearer_key(authorization))
        if not session_usable:
            raise unauthorized(
                "invalid_session",
                "A session makes changes only from the gallery's own pages (its Origin); "
                "elsewhere send `Authorization: Bearer <API key>`.",
            )
        now = self._clock()
        claim = self._sessions.read(session, now)
        if claim is None:
            raise unauthorized("invalid_session", "The session has expired; sign in again.")
        auth = await self.keys.get(claim.key_id)
        return principal_from_session(claim.key_id, claim.expires_at, auth, now)

    async def check_key(self, presented: str) -> Principal:
        public_id = key_public_id(presented)
        return principal_from_key(presented, await self.keys.get(public_id), self._clock())

    async def sign_in(self, presented: str) -> Session:
        """A session for a valid key (the same checks as a request with the key)."""
        principal = await self.check_key(presented)
        now = self._clock()
        expires_at = session_expiry(principal, now, self._session_ttl_s)
        value = self._sessions.issue(principal.key_id, expires_at)
        return Session(principal, value, expires_at, int((expires_at - now).total_seconds()))


def session_signer(settings: GatewaySettings) -> SessionSigner:
    if settings.session_secret is not None:
        return SessionSigner(settings.session_secret.get_secret_value().encode())
    log.warning(
        "REELVAULT_SESSION_SECRET is not set: gallery sessions use a random secret of this "
        "process (they end when it stops and do not work on other replicas)"
    )
    return SessionSigner(secrets.token_bytes(32))
