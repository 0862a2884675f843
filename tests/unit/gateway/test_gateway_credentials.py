"""The pure rules of credentials: reading ``Authorization`` headers (every malformed shape is a
401, never an exception of another kind), checking a key against its record, and scopes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from reelvault_common.contracts.catalog import ApiKeyInfo, KeyAuth
from reelvault_common.contracts.tenancy import Scope, generate_key
from reelvault_gateway.credentials import (
    Principal,
    authorize,
    bearer_key,
    key_public_id,
    principal_from_key,
    principal_from_session,
    session_expiry,
)
from reelvault_gateway.errors import ApiError

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NEW = generate_key()
KEY = NEW.key


def record(scopes: tuple[Scope, ...] = (Scope.VIDEOS_READ,), **fields: object) -> KeyAuth:
    info = ApiKeyInfo.model_validate({
        "id": uuid.uuid4(), "public_id": NEW.public_id, "org": "acme", "name": "k",
        "scopes": list(scopes), "expires_at": None, "created_at": NOW, "last_used_at": None,
        "revoked_at": None, **fields,
    })
    return KeyAuth(key=info, key_hash=NEW.key_hash)


def refused(call: object, *args: object) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(*args)  # type: ignore[operator]
    return info.value


def test_a_bearer_key_is_read_from_the_header() -> None:
    assert bearer_key([f"Bearer {KEY}"]) == KEY
    # The scheme is case-insensitive and spaces around the key do not matter.
    assert bearer_key([f"bearer   {KEY} "]) == KEY
    assert key_public_id(KEY) == NEW.public_id


def test_no_header_is_missing_credentials_with_a_bearer_challenge() -> None:
    error = refused(bearer_key, [])
    assert (error.status_code, error.code) == (401, "missing_credentials")
    assert error.headers == {"WWW-Authenticate": 'Bearer realm="reelvault"'}


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Token " + KEY,
        "Bearer " + "a" * 10_000,  # a 10 kB header
        "Bearer " + KEY + "x" * 300,
    ],
)
def test_malformed_headers_are_invalid_keys(header: str) -> None:
    error = refused(bearer_key, [header])
    assert (error.status_code, error.code) == (401, "invalid_key")
    assert error.headers is not None
    assert error.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "a" * 50 not in error.message  # nothing of the header is echoed


def test_two_authorization_headers_are_refused() -> None:
    assert refused(bearer_key, [f"Bearer {KEY}", f"Bearer {KEY}"]).code == "invalid_key"


@pytest.mark.parametrize(
    "presented",
    [
        KEY.replace("rvk_", "sk_", 1),  # wrong prefix
        KEY[:-1],  # one character short
        KEY + "A",  # one too many
        KEY.replace(NEW.public_id, NEW.public_id.upper()),  # public id not lowercase hex
        "rvk_" + "é" * 16 + "_" + "A" * 43,  # non-ASCII
        "rvk_0123456789abcdef_" + "ÿ" * 43,  # Latin-1 bytes as a server decodes them
        "rvk_0123456789abcdef_" + "A" * 42 + "=",
        "x" * 10_000,
    ],
)
def test_keys_of_the_wrong_shape_are_refused_before_any_lookup(presented: str) -> None:
    error = refused(key_public_id, presented)
    assert (error.status_code, error.code) == (401, "invalid_key")


def test_a_key_is_checked_against_its_hash() -> None:
    principal = principal_from_key(KEY, record(), NOW)
    assert principal == Principal("acme", frozenset({"videos:read"}), NEW.public_id, None, "key")
    other = generate_key().key
    assert refused(principal_from_key, other, record(), NOW).code == "invalid_key"
    assert refused(principal_from_key, KEY, None, NOW).code == "invalid_key"  # unknown


def test_revoked_and_expired_keys_are_401_told_only_to_the_holder() -> None:
    revoked = record(revoked_at=NOW - timedelta(seconds=1))
    assert refused(principal_from_key, KEY, revoked, NOW).code == "key_revoked"
    expired = record(expires_at=NOW)
    assert refused(principal_from_key, KEY, expired, NOW).code == "key_expired"
    naive = record(expires_at=(NOW - timedelta(hours=1)).replace(tzinfo=None))
    assert refused(principal_from_key, KEY, naive, NOW).code == "key_expired"
    # Someone without the secret learns nothing of the key's state.
    other = generate_key().key
    assert refused(principal_from_key, other, revoked, NOW).code == "invalid_key"
    later = NOW + timedelta(days=1)
    assert principal_from_key(KEY, record(expires_at=later), NOW).expires_at == later


def test_a_session_follows_its_key() -> None:
    ends = NOW + timedelta(hours=1)
    principal = principal_from_session(NEW.public_id, ends, record(), NOW)
    assert (principal.org, principal.via, principal.expires_at) == ("acme", "session", ends)
    revoked = record(revoked_at=NOW)
    assert refused(principal_from_session, NEW.public_id, ends, revoked, NOW).code == "key_revoked"
    assert refused(principal_from_session, NEW.public_id, ends, None, NOW).code == "invalid_session"


def test_a_session_never_outlives_its_key() -> None:
    key_ends = NOW + timedelta(minutes=5)
    principal = principal_from_key(KEY, record(expires_at=key_ends), NOW)
    assert session_expiry(principal, NOW, 3600) == key_ends
    forever = principal_from_key(KEY, record(), NOW)
    assert session_expiry(forever, NOW, 3600) == NOW + timedelta(hours=1)


@pytest.mark.parametrize(
    ("held", "needed", "allowed"),
    [
        ({"videos:read"}, Scope.VIDEOS_READ, True),
        ({"videos:read"}, Scope.VIDEOS_WRITE, False),
        ({"videos:write"}, Scope.VIDEOS_READ, False),
        ({"videos:read", "videos:write"}, Scope.VIDEOS_WRITE, True),
        ({"admin"}, Scope.VIDEOS_WRITE, True),
        ({"admin"}, Scope.VIDEOS_READ, True),
        (set(), Scope.VIDEOS_READ, False),
    ],
)
def test_scopes(held: set[str], needed: Scope, allowed: bool) -> None:
    principal = Principal("acme", frozenset(held), NEW.public_id, None, "key")
    if allowed:
        authorize(principal, needed)
        return
    error = refused(authorize, principal, needed)
    assert (error.status_code, error.code) == (403, "insufficient_scope")
    assert error.headers is not None
    assert f'scope="{needed.value}"' in error.headers["WWW-Authenticate"]
