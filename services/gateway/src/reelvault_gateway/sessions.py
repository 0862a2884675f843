"""The gallery's session cookie. Pure.

A browser signs in once with a key (``POST /v1/session``) and then sends a cookie instead of
the key, so no key is kept in the page, its storage or a URL. The cookie holds the key's public
id, an expiry and an HMAC-SHA256 of both under the gateway's session secret:
``v1.<public id>.<unix expiry>.<signature>``. It proves that this gateway (or a replica with
the same secret) saw the whole key; each request still looks the key up, so a revocation
ends its sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

COOKIE_NAME = "reelvault_session"
_VERSION = "v1"
# Far longer than any cookie this module makes: refused before any work.
MAX_COOKIE_CHARS = 160
_SHAPE = re.compile(r"^v1\.([0-9a-f]{16})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class SessionClaim:
    key_id: str
    expires_at: datetime


class SessionSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, key_id: str, expires_at: datetime) -> str:
        body = f"{_VERSION}.{key_id}.{int(expires_at.timestamp())}"
        return f"{body}.{self._sign(body)}"

    def read(self, value: str, now: datetime) -> SessionClaim | None:
        """The claim of a cookie this secret signed and that has not expired; None for
        anything else (malformed, tampered, signed with another secret, expired)."""
        if len(value) > MAX_COOKIE_CHARS:
            return None
        match = _SHAPE.fullmatch(value)
        if match is None:
            return None
        key_id, expires, signature = match.groups()
        expected = self._sign(f"{_VERSION}.{key_id}.{expires}")
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return None
        try:
            expires_at = datetime.fromtimestamp(int(expires), UTC)
        except (OverflowError, OSError, ValueError):
            return None
        if expires_at <= now:
            return None
        return SessionClaim(key_id, expires_at)


# Methods that change nothing: a session cookie is enough for them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lowercase, without the scheme's default port."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    where = parts.hostname if port in (None, default) else f"{parts.hostname}:{port}"
    return f"{parts.scheme}://{where}"


def session_may_write(origin: str | None, host: str | None, public_base_url: str) -> bool:
    """May a session cookie authenticate a change? Only from the gateway's own pages: the
    browser's ``Origin`` must name the gateway (its public URL, or the host the request was
    sent to). SameSite=Strict keeps other sites' requests from carrying the cookie, but a
    sibling subdomain counts as the same site; its pages still have another origin."""
    given = _origin_of(origin) if origin else None
    if given is None:
        return False
    scheme = given.split("://", 1)[0]
    own = {_origin_of(public_base_url)}
    if host:
        own.add(_origin_of(f"{scheme}://{host}"))
    return given in own


def session_cookie(value: str, max_age_s: int, *, secure: bool) -> str:
    """The ``Set-Cookie`` value: script-proof (HttpOnly), never sent by another site's pages
    (SameSite=Strict, which is also what keeps cookie-authenticated writes safe from
    cross-site requests), and Secure whenever the gateway is served over https."""
    parts = [
        f"{COOKIE_NAME}={value}",
        f"Max-Age={max(max_age_s, 0)}",
        "Path=/",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def cleared_cookie(*, secure: bool) -> str:
    return session_cookie("", 0, secure=secure)
