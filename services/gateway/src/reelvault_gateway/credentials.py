"""Who is asking, and what they may do. Pure: the caller passes the key's record (from the key
cache) and the time.

A request presents an API key (``Authorization: Bearer rvk_...``) or the gallery's session
cookie. The key is checked against its hash (constant time), then against its revocation and
expiry; the organization and scopes come from the key's record, never from the request.
Every failure is a 401 in the error envelope with ``WWW-Authenticate: Bearer``; a key without
the scope a route needs is a 403 ``insufficient_scope``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from reelvault_common.contracts.catalog import ApiKeyInfo, KeyAuth
from reelvault_common.contracts.tenancy import Scope, grants, key_matches, public_id_of

from reelvault_gateway.errors import ApiError

REALM = 'Bearer realm="reelvault"'
# "Bearer ", the longest key and some spaces: anything longer is refused before it is parsed.
MAX_AUTHORIZATION_CHARS = 256
HOW_TO = "Send `Authorization: Bearer <API key>`, or sign in to the gallery."


@dataclass(frozen=True)
class Principal:
    """The caller: an organization and what its key may do."""

    org: str
    scopes: frozenset[str]
    key_id: str  # the key's public id (never secret)
    # When the credential stops working: the key's expiry, or the session's.
    expires_at: datetime | None
    via: Literal["key", "session"]


def unauthorized(code: str, message: str) -> ApiError:
    challenge = REALM if code == "missing_credentials" else f'{REALM}, error="invalid_token"'
    return ApiError(401, code, message, headers={"WWW-Authenticate": challenge})


def _invalid_key(why: str) -> ApiError:
    return unauthorized("invalid_key", f"{why} {HOW_TO}")


def bearer_key(values: Sequence[str]) -> str:
    """The key of the request's ``Authorization`` header (all of its values, as received).

    A missing header is ``missing_credentials``; two headers, another scheme, no key or an
    oversized value are ``invalid_key``. The key itself is not judged here."""
    if not values:
        raise unauthorized("missing_credentials", f"This route needs credentials. {HOW_TO}")
    if len(values) > 1:
        raise _invalid_key("Send one Authorization header.")
    value = values[0]
    if len(value) > MAX_AUTHORIZATION_CHARS:
        raise _invalid_key("The Authorization header is too long to hold an API key.")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "bearer":  # RFC 7235: the scheme is case-insensitive
        raise _invalid_key("Only Bearer API keys are accepted.")
    key = rest.strip()
    if not key:
        raise _invalid_key("The Authorization header holds no key.")
    return key


def key_public_id(presented: str) -> str:
    """The public id of a well-formed key (``rvk_<16 hex>_<43 url-safe>``); 401 otherwise."""
    public_id = public_id_of(presented)
    if public_id is None:
        raise _invalid_key("This is not a reelvault API key (rvk_...).")
    return public_id


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _check_usable(key: ApiKeyInfo, now: datetime) -> None:
    if key.revoked_at is not None:
        raise unauthorized("key_revoked", "This API key was revoked; ask for a new one.")
    if key.expires_at is not None and aware(key.expires_at) <= now:
        raise unauthorized("key_expired", "This API key has expired; ask for a new one.")


def principal_from_key(presented: str, auth: KeyAuth | None, now: datetime) -> Principal:
    """The caller a presented key names. Revocation and expiry are told only to someone who
    holds the whole key (the hash matched)."""
    if auth is None or not key_matches(presented, auth.key_hash):
        raise _invalid_key("Unknown API key.")
    _check_usable(auth.key, now)
    key = auth.key
    expires = aware(key.expires_at) if key.expires_at is not None else None
    return Principal(key.org, frozenset(key.scopes), key.public_id, expires, "key")


def principal_from_session(
    key_id: str, session_expires_at: datetime, auth: KeyAuth | None, now: datetime
) -> Principal:
    """The caller of a (verified, unexpired) session cookie: the key that signed in must
    still work, so a revocation ends its sessions too."""
    if auth is None or auth.key.public_id != key_id:
        raise unauthorized("invalid_session", "The session is no longer valid; sign in again.")
    _check_usable(auth.key, now)
    return Principal(auth.key.org, frozenset(auth.key.scopes), key_id, session_expires_at,
                     "session")


def session_expiry(principal: Principal, now: datetime, ttl_s: float) -> datetime:
    """A new session lasts ``ttl_s``, never longer than its key."""
    ends = now + timedelta(seconds=ttl_s)
    if principal.expires_at is not None:
        ends = min(ends, principal.expires_at)
    return ends


def authorize(principal: Principal, needed: Scope) -> None:
    """403 ``insufficient_scope`` unless the principal's scopes grant ``needed``."""
    if grants(principal.scopes, needed):
        return
    raise ApiError(
        403,
        "insufficient_scope",
        f"This API key does not have the {needed.value} scope.",
        details={"required_scope": needed.value},
        headers={
            "WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{needed.value}"'
        },
    )
