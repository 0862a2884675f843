"""What the OpenAI Videos API accepts, as documented: the simulator's own copy.

Deliberately not imported from the product: the simulator stands in for the provider, so if
it read the product's own table a mistake there would be invisible to every test run against
it. A unit test compares the two copies and names any difference.

Sources: OpenAI's OpenAPI spec and SDK types for ``POST /videos`` (models ``sora-2`` and
``sora-2-pro`` and the dated snapshots they list; ``seconds`` the string "4", "8" or "12",
default "4"; ``size`` default "720x1280") and the video-generation guide for the sizes per
model (``sora-2`` at 720p only; ``sora-2-pro`` also 1024x1792 / 1792x1024 and 1080p).
"""

from __future__ import annotations

MODELS: tuple[str, ...] = ("sora-2", "sora-2-pro")

# Dated snapshot slugs the spec and SDKs list, and the model each one is.
SNAPSHOTS: dict[str, str] = {
    "sora-2-2025-10-06": "sora-2",
    "sora-2-2025-12-08": "sora-2",
    "sora-2-pro-2025-10-06": "sora-2-pro",
}

# Order matters: error messages list the supported values in this order, as the API does.
SIZES_BY_MODEL: dict[str, tuple[str, ...]] = {
    "sora-2": ("1280x720", "720x1280"),
    "sora-2-pro": ("1280x720", "720x1280", "1024x1792", "1792x1024", "1920x1080", "1080x1920"),
}

# The guide also names "16" and "20", but the spec's enum (create's and an extension's
# ``seconds`` alike) has only these: the simulator follows the spec.
SECONDS: tuple[str, ...] = ("4", "8", "12")
EXTENSION_SECONDS: tuple[str, ...] = SECONDS

DEFAULT_MODEL = "sora-2"
DEFAULT_SECONDS = "4"
DEFAULT_SIZE = "720x1280"
PROMPT_MAX_CHARS = 32000


def model_family(model: str) -> str | None:
    """``sora-2`` or ``sora-2-pro`` for a model name or one of its snapshots; None if unknown."""
    if model in SIZES_BY_MODEL:
        return model
    return SNAPSHOTS.get(model)


def frame_size(size: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``: width, height."""
    width, _, height = size.partition("x")
    return int(width), int(height)
