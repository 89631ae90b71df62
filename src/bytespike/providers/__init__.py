"""How to reach each upstream type: URL, headers, auth, what its errors look like, and the codec
its wire needs. ``TYPES`` is the registry the road and the config read; a new type is a module
here and one line below."""

from __future__ import annotations

from bytespike.providers import anthropic, gemini, openai, openai_responses
from bytespike.providers.base import UpstreamType

TYPES: dict[str, UpstreamType] = {t.name: t for t in (anthropic.TYPE, openai.TYPE, openai_responses.TYPE, gemini.TYPE)}
