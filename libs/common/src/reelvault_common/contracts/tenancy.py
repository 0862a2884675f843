"""Organizations, scopes and API keys: the pure rules every service and the CLI share.

An API key reads ``rvk_<public id>_<secret>``. The public id names the key (in lists, logs and
revocations); the secret is 32 random bytes. Only ``key_hash`` (SHA-256 of the whole key) is
stored: the secret has 256 bits of entropy, so a slow password hash would add cost per check
and no protection (nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import StringConstraints

# Lowercase letters, digits and hyphens, 3 to 40 characters, no hyphen at either end: a slug is
# a segment of every storage key and a token of every event subject.
ORG_SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$"
_SLUG = re.compile(ORG_SLUG_PATTERN)
OrgSlug = Annotated[str, StringConstraints(pattern=ORG_SLUG_PATTERN)]

# The organization every deployment starts with (and that owns every row made before
# organizations existed).
DEFAULT_ORG = "default"


def is_valid_slug(slug: str) -> bool:
    return bool(_SLUG.fullmatch(slug))


class Scope(StrEnum):
    VIDEOS_READ = "videos:read"
    VIDEOS_WRITE = "videos:write"
    ADMIN = "admin"  # everything, including the organization's keys and settings


DEFAULT_SCOPES: tuple[Scope, ...] = (Scope.VIDEOS_READ, Scope.VIDEOS_WRITE)


def grants(held: Iterable[str], needed: Scope) -> bool:
    """Does a key with scopes ``held`` may do what needs ``needed``? ``admin`` grants all."""
    have = set(held)
    return needed in have or Scope.ADMIN in have


KEY_PREFIX = "rvk"
_PUBLIC_ID_BYTES = 8  # 16 hex characters
_SECRET_BYTES = 32  # 43 url-safe base64 characters
_KEY = re.compile(rf"^{KEY_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})$")
# Longer than any key: cheap to refuse before any work.
MAX_KEY_CHARS = 128


@dataclass(frozen=True)
class NewKey:
    public_id: str
    key: str  # shown once, never stored
    key_hash: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> NewKey:
    public_id = secrets.token_hex(_PUBLIC_ID_BYTES)
    key = f"{KEY_PREFIX}_{public_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return NewKey(public_id=public_id, key=key, key_hash=hash_key(key))


def public_id_of(presented: str) -> str | None:
    """The public id of a well-formed key, None for anything else (wrong prefix, length,
    characters)."""
    if len(presented) > MAX_KEY_CHARS:
        return None
    match = _KEY.fullmatch(presented)
    return match.group(1) if match else None


def key_matches(presented: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_key(presented), key_hash)


def looks_like_public_id(value: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{16}", value))
