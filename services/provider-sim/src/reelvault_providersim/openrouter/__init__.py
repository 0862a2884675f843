"""OpenRouter's asynchronous video API (``/api/v1/videos``), served by the shared engine."""

from reelvault_providersim.openrouter.routes import router

__all__ = ["router"]
