"""The video models the simulated OpenRouter serves: what ``GET /api/v1/videos/models``
lists and what create validates against.

Shapes follow OpenRouter's VideoModel schema; the values are the simulator's own, modelled on
OpenRouter's published entries (durations, resolutions, aspect ratios, frame images) with
illustrative prices. ``max_input_references`` is not part of the schema (OpenRouter publishes
no limit); it is how many image references the simulator accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# The simulator's examples of retired ids (Google retired Veo 3.0 on 2026-06-30).
RETIRED: tuple[str, ...] = ("google/veo-3.0", "google/veo-3.0-fast")

_VEO_PASSTHROUGH = ("personGeneration", "aspectRatio", "negativePrompt", "enhancePrompt")


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    created: int
    description: str
    # (resolution, aspect ratio) -> "WIDTHxHEIGHT", in listing order.
    sizes: dict[tuple[str, str], str]
    durations: tuple[int, ...]
    default_duration: int
    frame_images: tuple[str, ...]
    pricing_skus: dict[str, str]
    generate_audio: bool | None = None
    seed: bool | None = None
    max_input_references: int = 0
    # Honours audio and video references (others ignore them, as OpenRouter documents).
    media_references: bool = False
    allowed_passthrough_parameters: tuple[str, ...] = ()
    default_resolution: str = "720p"
    default_aspect_ratio: str = "16:9"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resolutions(self) -> list[str]:
        return list(dict.fromkeys(resolution for resolution, _ in self.sizes))

    @property
    def aspect_ratios(self) -> list[str]:
        return list(dict.fromkeys(ratio for _, ratio in self.sizes))

    @property
    def size_list(self) -> list[str]:
        return list(self.sizes.values())

    def resolution_of(self, size: str) -> str:
        return next(res for (res, _), value in self.sizes.items() if value == size)

    def price_per_second(self, resolution: str) -> Decimal:
        sku = self.pricing_skus.get(f"per-video-second-{resolution}")
        return Decimal(sku if sku is not None else self.pricing_skus["per-video-second"])

    def cost(self, resolution: str, seconds: int) -> float:
        return float(self.price_per_second(resolution) * seconds)

    def as_video_model(self) -> dict[str, Any]:
        """The VideoModel object: every required field present (null where none)."""
        return {
            "id": self.id,
            "canonical_slug": self.id,
            "name": self.name,
            "created": self.created,
            "description": self.description,
            "hugging_face_id": None,
            "supported_resolutions": self.resolutions,
            "supported_aspect_ratios": self.aspect_ratios,
            "supported_sizes": self.size_list,
            "supported_durations": list(self.durations),
            "supported_frame_images": list(self.frame_images),
            "generate_audio": self.generate_audio,
            "seed": self.seed,
            "pricing_skus": dict(self.pricing_skus),
            "allowed_passthrough_parameters": list(self.allowed_passthrough_parameters),
            "upscale_factor": None,
            "creativity": None,
        }


_LANDSCAPE_PORTRAIT = {
    ("720p", "16:9"): "1280x720",
    ("720p", "9:16"): "720x1280",
    ("1080p", "16:9"): "1920x1080",
    ("1080p", "9:16"): "1080x1920",
}


def _veo(model_id: str, name: str, prices: tuple[str, str], **extra: Any) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        name=name,
        created=1768262400,
        description=f"{name}: text-, image- and reference-to-video with native audio.",
        sizes=dict(_LANDSCAPE_PORTRAIT),
        durations=(4, 6, 8),
        default_duration=8,
        frame_images=("first_frame", "last_frame"),
        pricing_skus={"per-video-second": prices[0], "per-video-second-1080p": prices[1]},
        generate_audio=True,
        seed=True,
        allowed_passthrough_parameters=_VEO_PASSTHROUGH,
        **extra,
    )


MODELS: tuple[ModelSpec, ...] = (
    _veo("google/veo-3.1", "Google: Veo 3.1", ("0.50", "0.75"), max_input_references=3),
    _veo("google/veo-3.1-fast", "Google: Veo 3.1 Fast", ("0.15", "0.18"),
         max_input_references=3),
    _veo("google/veo-3.1-lite", "Google: Veo 3.1 Lite", ("0.05", "0.08")),
    ModelSpec(
        id="bytedance/seedance-2.0",
        name="ByteDance: Seedance 2.0",
        created=1770940800,
        description="Seedance 2.0: multi-shot video with image, audio and video references.",
        sizes={
            ("480p", "16:9"): "864x496",
            ("480p", "9:16"): "496x864",
            ("480p", "1:1"): "640x640",
            ("480p", "4:3"): "752x560",
            ("480p", "3:4"): "560x752",
            ("480p", "21:9"): "992x432",
            ("720p", "16:9"): "1280x720",
            ("720p", "9:16"): "720x1280",
            ("720p", "1:1"): "960x960",
            ("720p", "4:3"): "1112x834",
            ("720p", "3:4"): "834x1112",
            ("720p", "21:9"): "1470x630",
            ("1080p", "16:9"): "1920x1080",
            ("1080p", "9:16"): "1080x1920",
            ("1080p", "1:1"): "1440x1440",
            ("1080p", "4:3"): "1440x1080",
            ("1080p", "3:4"): "1080x1440",
            ("1080p", "21:9"): "2520x1080",
        },
        durations=tuple(range(4, 16)),
        default_duration=5,
        frame_images=("first_frame", "last_frame"),
        pricing_skus={
            "per-video-second-480p": "0.05",
            "per-video-second-720p": "0.10",
            "per-video-second-1080p": "0.22",
        },
        generate_audio=True,
        seed=True,
        max_input_references=4,
        media_references=True,
        allowed_passthrough_parameters=("camera_fixed", "watermark"),
    ),
    ModelSpec(
        id="alibaba/wan-2.7",
        name="Alibaba: Wan 2.7",
        created=1772755200,
        description="Wan 2.7: text- and image-to-video.",
        sizes={
            ("480p", "16:9"): "854x480",
            ("480p", "9:16"): "480x854",
            ("480p", "1:1"): "480x480",
            ("720p", "16:9"): "1280x720",
            ("720p", "9:16"): "720x1280",
            ("720p", "1:1"): "720x720",
            ("1080p", "16:9"): "1920x1080",
            ("1080p", "9:16"): "1080x1920",
            ("1080p", "1:1"): "1080x1080",
        },
        durations=tuple(range(2, 11)),
        default_duration=5,
        frame_images=("first_frame",),
        pricing_skus={"per-video-second": "0.05", "per-video-second-1080p": "0.10"},
        generate_audio=False,
        seed=True,
        allowed_passthrough_parameters=("negative_prompt", "prompt_extend"),
    ),
    ModelSpec(
        id="kwaivgi/kling-v3.0-pro",
        name="Kling: v3.0 Pro",
        created=1770336000,
        description="Kling 3.0 Pro: cinematic text- and image-to-video.",
        sizes={
            ("720p", "16:9"): "1280x720",
            ("720p", "9:16"): "720x1280",
            ("720p", "1:1"): "720x720",
            ("1080p", "16:9"): "1920x1080",
            ("1080p", "9:16"): "1080x1920",
            ("1080p", "1:1"): "1080x1080",
        },
        durations=(5, 10),
        default_duration=5,
        frame_images=("first_frame", "last_frame"),
        pricing_skus={"per-video-second": "0.11"},
        generate_audio=True,
        seed=False,
        allowed_passthrough_parameters=("negative_prompt", "cfg_scale"),
    ),
    ModelSpec(
        id="minimax/hailuo-2.3",
        name="MiniMax: Hailuo 2.3",
        created=1761696000,
        description="Hailuo 2.3: text- and image-to-video.",
        sizes={("768p", "16:9"): "1366x768", ("1080p", "16:9"): "1920x1080"},
        durations=(6, 10),
        default_duration=6,
        frame_images=("first_frame",),
        pricing_skus={"per-video-second-768p": "0.045", "per-video-second-1080p": "0.08"},
        generate_audio=False,
        seed=False,
        default_resolution="768p",
        allowed_passthrough_parameters=("prompt_optimizer",),
    ),
    ModelSpec(
        id="openai/sora-2-pro",
        name="OpenAI: Sora 2 Pro",
        created=1759708800,
        description="Sora 2 Pro: text- and image-to-video with synced audio.",
        sizes=dict(_LANDSCAPE_PORTRAIT),
        durations=(4, 8, 12),
        default_duration=4,
        frame_images=("first_frame",),
        pricing_skus={"per-video-second": "0.30", "per-video-second-1080p": "0.50"},
        generate_audio=True,
        seed=False,
    ),
)

BY_ID: dict[str, ModelSpec] = {model.id: model for model in MODELS}
