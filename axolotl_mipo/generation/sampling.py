"""``SamplingSettings``: how a backend samples, declared once for the ``hf``, ``vllm`` and ``openai`` backends.

A response is a function of the prompt, the model and these settings, so the
settings are also part of the generation cache's key. Keeping them in one
frozen object, whose :meth:`SamplingSettings.cache_key_parts` lists every
field, means a new sampling option cannot be left out of the key (which would
silently reuse responses generated under other settings): adding one is one
field here (plus what each backend does with it).

Backends built on :class:`SampledBackend` keep the settings in ``sampling``
and expose each field as an attribute (``backend.max_new_tokens``); assigning
one replaces the frozen object, so the key always follows.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field, fields
from typing import Any

from axolotl_mipo.generation.base import GenerationBackend

# greedy decoding ignores these, so a greedy key holds this value instead (the same key whatever they are)
_WHEN_GREEDY = "when_greedy"
# a field that is folded into another part of the key rather than keyed itself
_NOT_KEYED = "not_keyed"


def prompt_seed(seed: int, prompt: str) -> int:
    """The per-prompt seed (63 bits) derived from ``(seed, prompt)``: a response does not depend on its batch."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class SamplingSettings:
    """The sampling settings of ``mipo.generation`` (paper defaults), plus the seed (``mipo.seed``)."""

    max_new_tokens: int = 512
    temperature: float = field(default=0.1, metadata={_WHEN_GREEDY: 0.0})
    top_p: float = field(default=0.9, metadata={_WHEN_GREEDY: 1.0})
    top_k: int | None = field(default=None, metadata={_WHEN_GREEDY: None})
    # keyed through temperature: do_sample false is greedy, keyed as temperature 0
    do_sample: bool = field(default=True, metadata={_NOT_KEYED: True})
    repetition_penalty: float | None = None
    seed: int = field(default=42, metadata={_WHEN_GREEDY: None})

    @classmethod
    def from_config(cls, mipo_cfg) -> "SamplingSettings":
        """From a validated ``MIPOConfig``: each field from ``mipo.generation``, the seed from ``mipo.seed``."""
        gen = mipo_cfg.generation
        return cls(**{f.name: getattr(gen, f.name) for f in fields(cls) if f.name != "seed"}, seed=mipo_cfg.seed)

    @classmethod
    def build(cls, sampling: "SamplingSettings | None" = None, **overrides: Any) -> "SamplingSettings":
        """``sampling`` (default: the defaults) with some fields replaced; an unknown name is a ``TypeError``."""
        return dataclasses.replace(sampling or cls(), **overrides)

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0

    @property
    def effective_temperature(self) -> float:
        """The temperature a server is asked for: 0 (greedy) when sampling is off."""
        return 0.0 if not self.do_sample else self.temperature

    def cache_key_parts(self) -> dict[str, Any]:
        """Every field that changes a response; the ones greedy decoding ignores are keyed as constants then."""
        greedy = self.greedy
        out = {}
        for f in fields(self):
            if f.metadata.get(_NOT_KEYED):
                continue
            out[f.name] = f.metadata[_WHEN_GREEDY] if greedy and _WHEN_GREEDY in f.metadata else getattr(self, f.name)
        return out

    def prompt_seed(self, prompt: str) -> int:
        return prompt_seed(self.seed, prompt)


class _SamplingField:
    """``backend.<field>`` reads ``backend.sampling.<field>``; assigning it replaces the frozen settings."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(obj.sampling, self.name)

    def __set__(self, obj, value) -> None:
        obj.sampling = dataclasses.replace(obj.sampling, **{self.name: value})


class SampledBackend(GenerationBackend):
    """A backend that samples with :class:`SamplingSettings` (held in ``self.sampling``)."""

    sampling: SamplingSettings

    def sampling_key_parts(self) -> dict[str, Any]:
        """The backend's name and its sampling settings: the part of the cache key all such backends share."""
        return {"backend": self.name, **self.sampling.cache_key_parts()}


for _f in fields(SamplingSettings):
    setattr(SampledBackend, _f.name, _SamplingField(_f.name))
del _f
