"""Which provider makes which model, and the deployment's model catalog built from them.

Routes come from the settings (``REELVAULT_MODEL_ROUTES``, else every built-in model of each
provider with a key). Capabilities come from the provider where it publishes them
(``ModelSource``: OpenRouter's models endpoint), else from the built-in tables; a routed model
neither knows is left out of the catalog (and so refused by the gateway) with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from reelvault_common.providers.errors import ProviderError
from reelvault_common.providers.models import ModelCatalog, ModelSpec, built_in

from reelvault_generator.provider import VideoProvider

log = logging.getLogger(__name__)


@runtime_checkable
class ModelSource(Protocol):
    async def models(self) -> list[ModelSpec]:
        """The provider's own capability data for its models."""
        ...


class ProviderRegistry:
    """The configured providers by name and the route of each model."""

    def __init__(
        self,
        providers: Mapping[str, VideoProvider],
        routes: Mapping[str, str] | None = None,
        default_model: str | None = None,
    ) -> None:
        self._providers = dict(providers)
        # None: one provider makes every model (tests, a single compatible gateway).
        self._routes = None if routes is None else dict(routes)
        self._default_model = default_model
        # Built-in capabilities until the providers' own data is read (``refresh_catalog``).
        self.catalog = self._catalog_from({})

    @classmethod
    def single(cls, provider: VideoProvider) -> ProviderRegistry:
        return cls({provider.name: provider})

    @property
    def providers(self) -> tuple[VideoProvider, ...]:
        return tuple(self._providers.values())

    def named(self, name: str) -> VideoProvider | None:
        provider = self._providers.get(name)
        if provider is None and self._routes is None and len(self._providers) == 1:
            return next(iter(self._providers.values()))
        return provider

    def for_model(self, model: str) -> VideoProvider | None:
        if self._routes is None:
            return next(iter(self._providers.values()), None)
        name = self._routes.get(model)
        if name is None and (spec := self.catalog.get(model)) is not None:
            name = self._routes.get(spec.id)  # a dated slug of a routed family
        return None if name is None else self._providers.get(name)

    def spec(self, model: str) -> ModelSpec | None:
        return self.catalog.get(model)

    def _catalog_from(self, published: Mapping[str, ModelSpec]) -> ModelCatalog:
        if self._routes is None:
            return ModelCatalog(())
        specs: list[ModelSpec] = []
        for model, provider in self._routes.items():
            spec = published.get(model) or built_in(model)
            if spec is None:
                log.warning("model %s (routed to %s) has no capability data: not offered",
                            model, provider)
                continue
            specs.append(spec.model_copy(update={"provider": provider,
                                                 "default": model == self._default_model}))
        return ModelCatalog(specs)

    async def refresh_catalog(self) -> ModelCatalog:
        """Ask every provider that publishes capabilities; keep the last good data of one
        that does not answer now."""
        published: dict[str, ModelSpec] = {}
        for provider in self._providers.values():
            if not isinstance(provider, ModelSource):
                continue
            try:
                published |= {spec.id: spec for spec in await provider.models()}
            except (ProviderError, ValueError) as exc:  # ValueError: an answer not decoded
                log.warning("models of %s not refreshed: %s", provider.name, exc)
                published |= {spec.id: spec for spec in self.catalog.specs
                              if spec.provider == provider.name}
        self.catalog = self._catalog_from(published)
        return self.catalog

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()

