"""What this deployment can generate: one ``ModelSpec`` per model a client may ask for. Pure.

The generator builds the deployment's ``ModelCatalog`` (routes from its settings, capabilities
from each provider's own data where it has some, else the built-in tables below) and publishes
it in KV; the gateway validates every request against it and serves it as ``GET /v1/models``.

Requests keep one shape whatever the provider: ``size`` as ``WxH`` and ``seconds`` as a string.
Each provider adapter maps them onto its protocol (``resolution_of`` for resolution-and-aspect
APIs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from math import gcd
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from reelvault_common.providers.video_spec import SpecProblem, base_model, quote_choices

ProviderKind = Literal["openai", "openrouter", "gemini"]
PROVIDER_KINDS: tuple[ProviderKind, ...] = ("openai", "openrouter", "gemini")

# How a model takes still images: as the first frame, as the last frame (with a first one), or
# as references the video should resemble (not a frame of it).
ImageInput = Literal["first_frame", "last_frame", "reference"]


class ModelSpec(BaseModel):
    """One model as clients see it (``GET /v1/models``) and as requests are checked."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(description="What a request's `model` names.")
    provider: str = Field(description="The provider that generates it (openai, openrouter, "
                          "gemini).")
    sizes: tuple[str, ...] = Field(description="Frame sizes, `WxH`.")
    seconds: tuple[str, ...] = Field(description="Durations in seconds.")
    seconds_by_size: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Sizes that allow fewer durations than `seconds` (e.g. 1080p only at 8 s).",
    )
    image_inputs: tuple[ImageInput, ...] = Field(
        default=(), description="How reference images reach the model."
    )
    max_images: int = Field(default=2, ge=0, le=2, description="Reference images accepted.")
    usd_per_second: Decimal | None = Field(default=None, description="List price per second "
                                           "of video (the smallest size), when known.")
    usd_per_second_by_size: dict[str, Decimal] = Field(default_factory=dict)
    default: bool = Field(default=False, description="Used when a request names no model.")

    def allowed_seconds(self, size: str) -> tuple[str, ...]:
        return self.seconds_by_size.get(size, self.seconds)

    def price_per_second(self, size: str) -> Decimal | None:
        return self.usd_per_second_by_size.get(size, self.usd_per_second)

    def estimate_usd(self, size: str, seconds: str) -> Decimal | None:
        price = self.price_per_second(size)
        return None if price is None else price * Decimal(seconds)


_specs_adapter: TypeAdapter[list[ModelSpec]] = TypeAdapter(list[ModelSpec])


class ModelCatalog:
    """The models of one deployment, in a stable order (the default first)."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        ordered = sorted(specs, key=lambda s: (not s.default, s.id))
        self._by_id = {spec.id: spec for spec in ordered}

    @property
    def specs(self) -> tuple[ModelSpec, ...]:
        return tuple(self._by_id.values())

    @property
    def default_model(self) -> str | None:
        for spec in self._by_id.values():
            if spec.default:
                return spec.id
        return next(iter(self._by_id), None)

    def get(self, model: str) -> ModelSpec | None:
        """The spec of ``model``; a dated OpenAI slug (``sora-2-2025-10-06``) is its family's."""
        spec = self._by_id.get(model)
        if spec is None and (family := base_model(model)) is not None:
            spec = self._by_id.get(family)
        return spec

    def check(self, model: str, seconds: str, size: str, images: int = 0) -> SpecProblem | None:
        """The first problem with a request, naming the allowed values; None if it is fine."""
        spec = self.get(model)
        if spec is None:
            return SpecProblem(
                "model",
                f"Invalid value: '{model}'. Supported values are: "
                f"{quote_choices(tuple(self._by_id)) or 'none (no provider is configured)'}.",
            )
        if size not in spec.sizes:
            return SpecProblem(
                "size",
                f"Invalid value: '{size}'. Supported values are: {quote_choices(spec.sizes)} "
                f"(model {spec.id}).",
            )
        allowed = spec.allowed_seconds(size)
        if seconds not in allowed:
            at = f" at {size}" if size in spec.seconds_by_size else ""
            return SpecProblem(
                "seconds",
                f"Invalid value: '{seconds}'. Supported values are: {quote_choices(allowed)} "
                f"(model {spec.id}{at}).",
            )
        # A model without image inputs takes none, whatever ``max_images`` says.
        limit = spec.max_images if spec.image_inputs else 0
        if images > limit:
            return SpecProblem(
                "reference_images",
                f"{spec.id} takes at most {limit} reference image"
                f"{'' if limit == 1 else 's'}; got {images}.",
            )
        return None

    def to_json(self) -> bytes:
        return _specs_adapter.dump_json(list(self.specs))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ModelCatalog:
        return cls(_specs_adapter.validate_json(raw))

    def __len__(self) -> int:
        return len(self._by_id)


# --- images -------------------------------------------------------------------------------
ImageMode = Literal["none", "first_frame", "frames", "references", "composed"]


@dataclass(frozen=True)
class ImagePlan:
    """How a request's images go to its model: natively where the model takes them, composed
    into one first frame only where it takes a single frame."""

    mode: ImageMode

    @property
    def frames_needed(self) -> int:
        return {"none": 0, "first_frame": 1, "composed": 1, "frames": 2, "references": 2}[
            self.mode
        ]


def image_plan(spec: ModelSpec, images: int) -> ImagePlan:
    kinds = set(spec.image_inputs)
    if images == 0:
        return ImagePlan("none")
    if images == 1:
        if "first_frame" in kinds:
            return ImagePlan("first_frame")
        if "reference" in kinds:
            return ImagePlan("references")
        raise ValueError(f"{spec.id} takes no images")
    if {"first_frame", "last_frame"} <= kinds:
        return ImagePlan("frames")
    if "reference" in kinds:
        return ImagePlan("references")
    if "first_frame" in kinds:
        return ImagePlan("composed")
    raise ValueError(f"{spec.id} takes no images")


# --- sizes as resolution and aspect ratio ---------------------------------------------------
_RESOLUTIONS = {480: "480p", 720: "720p", 768: "768p", 1080: "1080p", 2160: "4k"}


def resolution_of(size: str) -> tuple[str, str]:
    """``1920x1080`` -> (``1080p``, ``16:9``): the shorter side names the resolution."""
    width, _, height = size.partition("x")
    w, h = int(width), int(height)
    short = min(w, h)
    divisor = gcd(w, h)
    return _RESOLUTIONS.get(short, f"{short}p"), f"{w // divisor}:{h // divisor}"


# --- built-in capability tables -------------------------------------------------------------
_LANDSCAPE_PORTRAIT = ("1280x720", "720x1280", "1920x1080", "1080x1920")
_VEO_SIZES = (*_LANDSCAPE_PORTRAIT, "3840x2160", "2160x3840")
_EIGHT_ONLY = {size: ("8",) for size in ("1920x1080", "1080x1920", "3840x2160", "2160x3840")}


def _veo(model_id: str, provider: str, prices: tuple[str, str, str | None], *,
         four_k: bool = True, references: bool = True) -> ModelSpec:
    hd, full_hd, uhd = prices
    sizes = _VEO_SIZES if four_k else _LANDSCAPE_PORTRAIT
    by_size = {s: Decimal(full_hd) for s in ("1920x1080", "1080x1920")}
    if four_k and uhd is not None:
        by_size |= {s: Decimal(uhd) for s in ("3840x2160", "2160x3840")}
    inputs: tuple[ImageInput, ...] = ("first_frame", "last_frame")
    if references:
        inputs = (*inputs, "reference")
    return ModelSpec(
        id=model_id, provider=provider, sizes=sizes, seconds=("4", "6", "8"),
        seconds_by_size={s: t for s, t in _EIGHT_ONLY.items() if s in sizes},
        image_inputs=inputs, usd_per_second=Decimal(hd), usd_per_second_by_size=by_size,
    )


# The OpenAI Videos API (Sora 2 and compatible gateways): one input_reference frame, so two
# images are composed into it.
OPENAI_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(id="sora-2", provider="openai", sizes=("1280x720", "720x1280"),
              seconds=("4", "8", "12"), image_inputs=("first_frame",),
              usd_per_second=Decimal("0.10")),
    ModelSpec(id="sora-2-pro", provider="openai",
              sizes=("1280x720", "720x1280", "1024x1792", "1792x1024", "1920x1080", "1080x1920"),
              seconds=("4", "8", "12"), image_inputs=("first_frame",),
              usd_per_second=Decimal("0.30")),
)

# Veo through the Gemini API (prices per second of output, audio included).
GEMINI_MODELS: tuple[ModelSpec, ...] = (
    _veo("veo-3.1-generate-preview", "gemini", ("0.40", "0.40", "0.60")),
    _veo("veo-3.1-fast-generate-preview", "gemini", ("0.10", "0.12", "0.30")),
    _veo("veo-3.1-lite-generate-preview", "gemini", ("0.05", "0.08", None), four_k=False,
         references=False),
)

# OpenRouter's video models as last seen; its ``/videos/models`` replaces these when reachable.
OPENROUTER_MODELS: tuple[ModelSpec, ...] = (
    _veo("google/veo-3.1", "openrouter", ("0.50", "0.75", None), four_k=False,
         references=False),
    _veo("google/veo-3.1-fast", "openrouter", ("0.15", "0.20", None), four_k=False,
         references=False),
    _veo("google/veo-3.1-lite", "openrouter", ("0.05", "0.08", None), four_k=False,
         references=False),
)

BUILT_IN_MODELS: Mapping[str, tuple[ModelSpec, ...]] = {
    "openai": OPENAI_MODELS,
    "gemini": GEMINI_MODELS,
    "openrouter": OPENROUTER_MODELS,
}


def built_in(model_id: str) -> ModelSpec | None:
    for specs in BUILT_IN_MODELS.values():
        for spec in specs:
            if spec.id == model_id:
                return spec
    return None


DEFAULT_CATALOG = ModelCatalog(
    spec.model_copy(update={"default": spec.id == "sora-2"}) for spec in OPENAI_MODELS
)
