"""Google's Gemini API for Veo (``/v1beta``), served by the shared engine."""

from reelvault_providersim.gemini.routes import router

__all__ = ["router"]
