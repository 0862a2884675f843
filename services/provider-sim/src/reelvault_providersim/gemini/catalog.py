"""The Veo models the simulated Gemini API serves, with the rules each one enforces (from
Google's Veo documentation: resolutions, durations, reference images, last frame, extension).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ASPECT_RATIOS: tuple[str, ...] = ("16:9", "9:16")
# (resolution, aspect ratio) -> the frame size rendered.
SIZES: dict[tuple[str, str], str] = {
    ("720p", "16:9"): "1280x720",
    ("720p", "9:16"): "720x1280",
    ("1080p", "16:9"): "1920x1080",
    ("1080p", "9:16"): "1080x1920",
    ("4k", "16:9"): "3840x2160",
    ("4k", "9:16"): "2160x3840",
}
# Shut down on the Gemini API: a create answers 404 NOT_FOUND.
RETIRED: tuple[str, ...] = ("veo-3.0-generate-preview", "veo-3.0-fast-generate-preview")


@dataclass(frozen=True)
class VeoModel:
    id: str
    display_name: str
    resolutions: tuple[str, ...]
    durations: tuple[int, ...]
    # USD per second of output, by resolution (charged only when a video is produced).
    prices: dict[str, str]
    reference_images: bool = False
    last_frame: bool = False
    extension: bool = False
    max_samples: int = 1
    # Veo 3.x restricts personGeneration per mode; Veo 2 takes every value.
    veo3: bool = True

    def cost(self, resolution: str, seconds: int) -> float:
        return float(Decimal(self.prices[resolution]) * seconds)


def _veo31(model_id: str, name: str, prices: dict[str, str], *, full: bool) -> VeoModel:
    return VeoModel(
        id=model_id,
        display_name=name,
        resolutions=("720p", "1080p", "4k") if full else ("720p", "1080p"),
        durations=(4, 6, 8),
        prices=prices,
        reference_images=full,
        last_frame=True,
        extension=full,
    )


MODELS: tuple[VeoModel, ...] = (
    _veo31("veo-3.1-generate-preview", "Veo 3.1",
           {"720p": "0.40", "1080p": "0.40", "4k": "0.60"}, full=True),
    _veo31("veo-3.1-fast-generate-preview", "Veo 3.1 Fast",
           {"720p": "0.10", "1080p": "0.12", "4k": "0.30"}, full=True),
    _veo31("veo-3.1-lite-generate-preview", "Veo 3.1 Lite",
           {"720p": "0.05", "1080p": "0.08"}, full=False),
    VeoModel("veo-3.0-generate-001", "Veo 3", ("720p", "1080p"), (8,),
             {"720p": "0.40", "1080p": "0.40"}),
    VeoModel("veo-3.0-fast-generate-001", "Veo 3 Fast", ("720p", "1080p"), (8,),
             {"720p": "0.15", "1080p": "0.15"}),
    VeoModel("veo-2.0-generate-001", "Veo 2", ("720p",), (5, 6, 8), {"720p": "0.35"},
             max_samples=2, veo3=False),
)

BY_ID: dict[str, VeoModel] = {model.id: model for model in MODELS}
