"""What the OpenAI Videos API accepts (models, sizes, durations), as documented.

Both the gateway (to reject bad requests before anything is paid for) and the simulator (to
behave like the real API) read these tables, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "sora-2"
DEFAULT_SECONDS = "4"
DEFAULT_SIZE = "720x1280"
PROMPT_MAX_CHARS = 32000
MAX_REFERENCE_IMAGES = 2

SECONDS_ALLOWED: tuple[str, ...] = ("4", "8", "12")

_SORA2_SIZES = ("1280x720", "720x1280")
_PRO_SIZES = (*_SORA2_SIZES, "1024x1792", "1792x1024", "1920x1080", "1080x1920")

SIZES_BY_MODEL: dict[str, tuple[str, ...]] = {
    "sora-2": _SORA2_SIZES,
    "sora-2-pro": _PRO_SIZES,
}


def base_model(model: str) -> str | None:
    """Map dated slugs (``sora-2-2025-10-06``) to their family; None if unknown."""
    for family in sorted(SIZES_BY_MODEL, key=len, reverse=True):
        if model == family:
            return family
        rest = model.removeprefix(family + "-")
        if rest != model and rest[:4].isdigit():
            return family
    return None


def quote_choices(choices: tuple[str, ...]) -> str:
    """``'4', '8', and '12'``: the way the API lists supported values."""
    quoted = [f"'{c}'" for c in choices]
    if len(quoted) < 3:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


@dataclass(frozen=True)
class SpecProblem:
    param: str
    message: str


def check_video_spec(model: str, seconds: str, size: str) -> SpecProblem | None:
    """The first problem with a (model, seconds, size) triple, or None if the API accepts it."""
    family = base_model(model)
    if family is None:
        models = quote_choices(tuple(SIZES_BY_MODEL))
        return SpecProblem("model", f"Invalid value: '{model}'. Supported values are: {models}.")
    if seconds not in SECONDS_ALLOWED:
        return SpecProblem(
            "seconds",
            f"Invalid value: '{seconds}'. Supported values are: {quote_choices(SECONDS_ALLOWED)}.",
        )
    sizes = SIZES_BY_MODEL[family]
    if size not in sizes:
        return SpecProblem(
            "size",
            f"Invalid value: '{size}'. Supported values are: {quote_choices(sizes)}.",
        )
    return None


def parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)
