"""archiver: streams finished provider videos into permanent storage, verified."""

from reelvault_archiver.app import ArchiverService, main
from reelvault_archiver.settings import ArchiverSettings

__all__ = ["ArchiverService", "ArchiverSettings", "main"]
