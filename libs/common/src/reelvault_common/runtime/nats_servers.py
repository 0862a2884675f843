"""``NATS_URL``: one server or a comma-separated list of them (a cluster's seed nodes).

Parsed once (by the settings) into ``NatsServer`` values. The clients get the URLs as given
(they may carry ``user:password@`` or a token); everything that is shown -- logs, error
messages, ``str()`` and ``repr()`` of a server -- uses the redacted form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

NATS_SCHEMES = ("nats", "tls", "ws", "wss")
_WEBSOCKET_SCHEMES = {"ws", "wss"}
# ``scheme://userinfo@``: what a credential looks like inside any URL-ish text.
# Greedy up to the last ``@`` of the authority: a raw ``@`` in a password is hidden too.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s,'\"]*@")


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


@dataclass(frozen=True)
class NatsServer:
    """One NATS server URL. ``url`` (possibly with credentials) is for the client only."""

    url: str = field(repr=False)
    scheme: str
    host: str
    port: int | None

    @property
    def redacted(self) -> str:
        """The URL as it may be shown: credentials replaced by ``***``."""
        return redact_url(self.url)

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"NatsServer({self.redacted!r})"


def parse_nats_server(entry: str, *, position: int = 1) -> NatsServer:
    """One URL of ``NATS_URL``; ``ValueError`` (never showing a password) if it is unusable."""
    text = entry.strip()
    where = f"NATS_URL entry {position}"
    if not text:
        raise ValueError(f"{where} is empty (expected e.g. nats://127.0.0.1:4222)")
    shown = redact_url(text)
    scheme, sep, _ = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in NATS_SCHEMES:
        raise ValueError(
            f"{where} ({shown!r}) must start with nats://, tls://, ws:// or wss://"
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{where} ({shown!r}) has an invalid port") from None
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"{where} ({shown!r}) has no host")
    return NatsServer(url=text, scheme=scheme, host=host, port=port)


def parse_nats_servers(value: str | Iterable[str]) -> tuple[NatsServer, ...]:
    """``NATS_URL`` (``"nats://a:4222,nats://b:4222"``, or already a list) -> its servers."""
    entries = value.split(",") if isinstance(value, str) else list(value)
    if not entries:
        raise ValueError("NATS_URL is empty (expected e.g. nats://127.0.0.1:4222)")
    servers = tuple(
        parse_nats_server(entry, position=index) for index, entry in enumerate(entries, start=1)
    )
    websocket = {server.scheme in _WEBSOCKET_SCHEMES for server in servers}
    if len(websocket) > 1:
        # nats-py refuses such a pool when connecting; say so at start-up instead.
        raise ValueError("NATS_URL mixes websocket (ws/wss) and plain (nats/tls) servers")
    return servers


def servers_for_logs(servers: Sequence[NatsServer]) -> str:
    """The servers as one line that is safe to log."""
    return ",".join(server.redacted for server in servers)
