"""Per-job webhook targets that name their video, so a webhook can adopt the job of a create
whose answer was lost (providers without a list endpoint).

OpenRouter signs the body but not the URL, so the video id in a callback URL carries its own
HMAC token (keyed with the webhook secret): a replayed delivery cannot be pointed at another
video.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from urllib.parse import urlencode


class CallbackTargets:
    def __init__(self, public_url: str, secret: str) -> None:
        self._base = public_url.rstrip("/")
        self._key = secret.encode()

    def token(self, video_id: uuid.UUID) -> str:
        return hmac.new(self._key, video_id.bytes, hashlib.sha256).hexdigest()[:32]

    def verified(self, video: str | None, token: str | None) -> uuid.UUID | None:
        """The video a callback URL names, if its token is genuine."""
        if not video or not token:
            return None
        try:
            video_id = uuid.UUID(video)
        except ValueError:
            return None
        return video_id if hmac.compare_digest(self.token(video_id), token) else None

    def url(self, provider: str, video_id: uuid.UUID | None = None) -> str:
        base = f"{self._base}/webhooks/{provider}"
        if video_id is None:
            return base
        return f"{base}?{urlencode({'video': str(video_id), 'token': self.token(video_id)})}"
