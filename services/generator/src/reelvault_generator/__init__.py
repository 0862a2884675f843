"""The generator: VideoRequested -> one provider job, followed to VideoCompleted/VideoFailed."""

from reelvault_generator.app import GeneratorService, main
from reelvault_generator.settings import GeneratorSettings

__all__ = ["GeneratorService", "GeneratorSettings", "main"]
