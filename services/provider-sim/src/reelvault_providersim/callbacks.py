"""Per-request webhook URLs (OpenRouter's ``callback_url``, Gemini's ``webhookConfig.uris``):
which ones a create accepts, and which ones the simulator really calls."""

from __future__ import annotations

from urllib.parse import urlsplit

from reelvault_providersim.create_params import is_loopback_url
from reelvault_providersim.settings import SimSettings

NOT_LOOPBACK = "not_sent:not_loopback"


def callback_problem(url: str, settings: SimSettings) -> str | None:
    """Why this callback URL is refused (the providers require https), or None."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        if settings.allow_http_loopback_callbacks and is_loopback_url(url):
            return None
        return "must be an https URL"
    return "must be an absolute https URL"


def should_send(url: str, settings: SimSettings) -> bool:
    """Loopback hosts always; others only when allowed (the simulator stays off the network)."""
    return settings.deliver_non_loopback_callbacks or is_loopback_url(url)
