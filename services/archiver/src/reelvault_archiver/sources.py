"""Where each provider serves a finished video: one ``ContentSource`` per configured provider,
every URL built from the archiver's own configured base URL and key (never from an event).

OpenAI's protocol serves the video and its thumbnail by job id; OpenRouter serves the video by
job id (no thumbnail: the copier then extracts a frame); Gemini serves a file whose id the
completed job named (``ArchiveJob.content_id``), also without a thumbnail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import httpx2
from reelvault_common.providers.errors import ProviderError
from reelvault_common.providers.gemini_veo import GeminiVeoClient
from reelvault_common.providers.openai_videos import ContentVariant, VideosClient
from reelvault_common.providers.openrouter_videos import OpenRouterVideosClient
from reelvault_common.runtime.settings import ProviderSettings

from reelvault_archiver.copier import ContentSource


class Closable(Protocol):
    async def aclose(self) -> None: ...


Download = Callable[[str, int | None], AbstractAsyncContextManager[tuple[httpx2.Headers,
                                                             AsyncIterator[bytes]]]]


class VideoOnlyContent:
    """A provider that serves the video alone (by job or file id): a thumbnail is a 404, so
    the copier extracts a frame from the stored video."""

    def __init__(self, provider: str, download: Download) -> None:
        self._provider = provider
        self._download = download

    @asynccontextmanager
    async def stream_content(
        self, video_id: str, variant: ContentVariant = "video", *, chunk_size: int | None = None
    ) -> AsyncIterator[tuple[httpx2.Headers, AsyncIterator[bytes]]]:
        if variant != "video":
            raise ProviderError(f"{self._provider} serves no thumbnail", status=404,
                                code="not_found")
        async with self._download(video_id, chunk_size) as opened:
            yield opened


def openrouter_content(client: OpenRouterVideosClient) -> VideoOnlyContent:
    return VideoOnlyContent(
        "OpenRouter", lambda job_id, size: client.stream_content(job_id, chunk_size=size))


def gemini_content(client: GeminiVeoClient) -> VideoOnlyContent:
    return VideoOnlyContent(
        "Gemini", lambda file_id, size: client.stream_file(file_id, chunk_size=size))


class ContentSources:
    """The content source of each configured provider, by name (``ContentRouter``)."""

    def __init__(self, sources: dict[str, ContentSource],
                 clients: Sequence[Closable] = ()) -> None:
        self._sources = sources
        self._clients = list(clients)

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> ContentSources:
        timeout = settings.provider_timeout_s
        kinds = set(settings.routes().values()) | {"openai"}
        sources: dict[str, ContentSource] = {}
        clients: list[Closable] = []
        if "openai" in kinds:
            openai = VideosClient(settings.openai_base_url, settings.openai_api_key,
                                  timeout_s=timeout)
            sources["openai"] = openai
            clients.append(openai)
        if "openrouter" in kinds:
            openrouter = OpenRouterVideosClient(settings.openrouter_base_url,
                                                api_key=settings.openrouter_api_key,
                                                timeout_s=timeout)
            sources["openrouter"] = openrouter_content(openrouter)
            clients.append(openrouter)
        if "gemini" in kinds:
            gemini = GeminiVeoClient(settings.gemini_base_url, api_key=settings.gemini_api_key,
                                     timeout_s=timeout)
            sources["gemini"] = gemini_content(gemini)
            clients.append(gemini)
        return cls(sources, clients)

    def of(self, provider: str) -> ContentSource:
        source = self._sources.get(provider)
        if source is None:
            # Configuration, not the video: retried until the deadline, then dead-lettered.
            raise ProviderError(f"provider {provider!r} is not configured in the archiver",
                                status=None)
        return source

    def wrapped(self, wrap: Callable[[ContentSource, str], ContentSource]) -> ContentSources:
        """The same sources, each wrapped (e.g. metered under its provider's name)."""
        return ContentSources({name: wrap(source, name)
                               for name, source in self._sources.items()}, self._clients)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
