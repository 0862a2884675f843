"""Client of the OpenAI Videos API (Sora 2) protocol, as docs/providers/openai-videos.md describes.

The generator creates and follows jobs with it; the archiver downloads content with it. It
speaks to any compatible base URL (the local simulator by default).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import httpx2
from pydantic import BaseModel, ConfigDict, SecretStr

from reelvault_common.http import async_client
from reelvault_common.providers.errors import ProviderError, retry_after_seconds
from reelvault_common.providers.streaming import Download, send_streamed, stream_download

__all__ = ["ProviderError", "VideosClient", "error_from_response", "retry_after_seconds"]

VideoJobStatus = Literal["queued", "in_progress", "completed", "failed", "expired", "canceled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "expired", "canceled"})
ContentVariant = Literal["video", "thumbnail", "spritesheet"]
VARIANT_MEDIA_TYPES: dict[str, str] = {
    "video": "video/mp4",
    "thumbnail": "image/webp",
    "spritesheet": "image/jpeg",
}


class VideoJobError(BaseModel):
    model_config = ConfigDict(extra="ignore")
    code: str | None = None
    message: str | None = None


class VideoJob(BaseModel):
    """The Video object. Unknown fields are ignored; status is kept as a plain string so a new
    status from the provider is seen (and treated as non-terminal) rather than a decode error."""

    model_config = ConfigDict(extra="ignore")
    id: str
    object: str = "video"
    model: str
    status: str
    progress: int | None = 0
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    prompt: str | None = None
    size: str
    seconds: str
    remixed_from_video_id: str | None = None
    error: VideoJobError | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class VideoList(BaseModel):
    model_config = ConfigDict(extra="ignore")
    object: str = "list"
    data: list[VideoJob]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


def error_from_response(response: httpx2.Response, body: bytes | None = None) -> ProviderError:
    raw = response.content if body is None else body
    envelope: dict[str, Any] = {}
    try:
        parsed = httpx2.Response(200, content=raw).json()
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            envelope = parsed["error"]
    except ValueError:
        pass
    message = str(
        envelope.get("message") or raw[:200].decode(errors="replace") or response.reason_phrase
    )
    return ProviderError(
        message,
        status=response.status_code,
        type=envelope.get("type"),
        code=envelope.get("code"),
        param=envelope.get("param"),
        retry_after_s=retry_after_seconds(response.headers),
    )


class ReferenceUpload(BaseModel):
    filename: str
    content: bytes
    content_type: str


class VideosClient:
    """Async client of ``/v1/videos``. One instance per process; ``aclose`` when done."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        timeout_s: float = 30.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = async_client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
            timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            follow_redirects=True,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def content_url(self, video_id: str, variant: ContentVariant = "video") -> str:
        suffix = "" if variant == "video" else f"?variant={variant}"
        return f"{self.base_url}/videos/{video_id}/content{suffix}"

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        request = self._http.build_request(method, path, **kwargs)
        # A multipart body (create) joined up front: sent in one write instead of one per
        # piece (each a trip through h11, httpcore and anyio).
        request.read()
        try:
            response = await self._http.send(request)
        except httpx2.TransportError as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc}", status=None) from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    async def create(
        self,
        *,
        prompt: str,
        model: str,
        seconds: str,
        size: str,
        input_reference: ReferenceUpload | None = None,
    ) -> VideoJob:
        # Always multipart, as the official SDK sends it.
        parts: list[tuple[str, tuple[str | None, bytes | str] | tuple[str, bytes, str]]] = [
            ("prompt", (None, prompt)),
            ("model", (None, model)),
            ("seconds", (None, seconds)),
            ("size", (None, size)),
        ]
        if input_reference is not None:
            parts.append(
                (
                    "input_reference",
                    (
                        input_reference.filename,
                        input_reference.content,
                        input_reference.content_type,
                    ),
                )
            )
        response = await self._send("POST", "/videos", files=parts)
        return VideoJob.model_validate_json(response.content)

    async def retrieve(self, video_id: str) -> tuple[VideoJob, float | None]:
        """The job and the server's suggested wait before the next poll (seconds), if any."""
        response = await self._send("GET", f"/videos/{video_id}")
        poll_after = response.headers.get("openai-poll-after-ms")
        wait = float(poll_after) / 1000 if poll_after and poll_after.isdigit() else None
        return VideoJob.model_validate_json(response.content), wait

    async def list(
        self, *, limit: int = 20, order: Literal["asc", "desc"] = "desc", after: str | None = None
    ) -> VideoList:
        params: dict[str, str | int] = {"limit": limit, "order": order}
        if after:
            params["after"] = after
        response = await self._send("GET", "/videos", params=params)
        return VideoList.model_validate_json(response.content)

    async def delete(self, video_id: str) -> None:
        await self._send("DELETE", f"/videos/{video_id}")

    def stream_content(
        self, video_id: str, variant: ContentVariant = "video", *, chunk_size: int | None = None
    ) -> AbstractAsyncContextManager[Download]:
        """Open the content download; yields its headers and a chunk iterator (never buffered;
        ``chunk_size`` as in ``stream_download``).

        A body cut short raises ``ProviderError`` (transient) instead of ending quietly.
        """
        params = {} if variant == "video" else {"variant": variant}
        request = self._http.build_request("GET", f"/videos/{video_id}/content", params=params)
        return stream_download(
            lambda: send_streamed(self._http, request), error_from_response,
            chunk_size=chunk_size, error_status_from=400)
