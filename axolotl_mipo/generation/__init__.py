"""Response generation: backends (hf, vllm, openai), the resumable cache, and the loop that fills it."""

from axolotl_mipo.generation.base import (
    GenerationBackend,
    GenerationResult,
    GenerationStats,
    generate_with_cache,
)
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.generation.sampling import SamplingSettings

BACKENDS = {
    "hf": "axolotl_mipo.generation.hf:HFBackend",
    "vllm": "axolotl_mipo.generation.vllm:VLLMBackend",
    "openai": "axolotl_mipo.generation.openai:OpenAIBackend",
}


def backend_from_config(cfg, mipo_cfg, tokenizer) -> GenerationBackend:
    """Instantiate the configured backend (imports only that backend's dependencies)."""
    import importlib

    module, _, name = BACKENDS[mipo_cfg.generation.backend].partition(":")
    return getattr(importlib.import_module(module), name).from_config(cfg, mipo_cfg, tokenizer)


__all__ = [
    "BACKENDS",
    "GenerationBackend",
    "GenerationCache",
    "GenerationResult",
    "GenerationStats",
    "SamplingSettings",
    "backend_from_config",
    "generate_with_cache",
]
