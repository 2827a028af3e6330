"""One place that picks a classifier transport from config, for the proxy and the policy tools alike."""

from __future__ import annotations

from .classifier import Classifier, SafeguardClient
from .classifier_aiohttp import AiohttpSafeguardClient
from .config import ClassifierConfig


def build_classifier(cfg: ClassifierConfig, api_key: str | None) -> Classifier:
    """Call inside a running event loop: the aiohttp transport opens its session here."""
    if cfg.transport == "aiohttp":
        return AiohttpSafeguardClient(cfg, api_key)
    return SafeguardClient(cfg, api_key)
