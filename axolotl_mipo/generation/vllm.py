"""The ``vllm`` backend: offline ``vllm.LLM`` (GPU only; ``pip install axolotl-mipo[vllm]``).

Prompts are tokenized here (no special tokens added: the chat template already
holds the BOS) and passed as token ids, so vLLM sees exactly the ids the
trainer will. Each prompt gets ``SamplingParams(seed=...)`` derived from
``(seed, prompt)``, so, as with the ``hf`` backend, a response does not depend
on which batch it was scheduled in. vLLM does its own continuous batching; the
batch size here only sets how often finished responses are written to the cache.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Sequence

from axolotl_mipo.errors import MIPOConfigError
from axolotl_mipo.generation.base import GenerationResult, LoadedOnFirstUse, token_lengths
from axolotl_mipo.generation.cache import model_fingerprint, tokenizer_fingerprint
from axolotl_mipo.generation.sampling import SampledBackend, SamplingSettings


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise MIPOConfigError(
            "mipo.generation.backend vllm needs vLLM: pip install 'axolotl-mipo[vllm]' (GPU only)"
        ) from None
    return vllm


class VLLMBackend(SampledBackend):
    name = "vllm"

    def __init__(self, llm, tokenizer, *, model_id: dict, batch_size=256, loader=None,
                 sampling: SamplingSettings | None = None, **sampling_fields):
        """``llm``, or ``loader``: a function that starts it at first use (``from_config`` passes one, so
        that a run whose responses are all cached does not start vLLM). ``sampling``, with any of its
        fields given by name replacing its values."""
        self.sampling = SamplingSettings.build(sampling, **sampling_fields)
        self._llm = LoadedOnFirstUse(llm, loader)
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, cfg, mipo_cfg, tokenizer) -> "VLLMBackend":
        vllm = _import_vllm()
        gen = mipo_cfg.generation
        start = functools.partial(
            vllm.LLM,
            model=cfg.base_model,
            tokenizer=cfg.get("tokenizer_config") or cfg.base_model,
            revision=cfg.get("revision_of_model"),
            tensor_parallel_size=gen.tensor_parallel_size,
            gpu_memory_utilization=gen.gpu_memory_utilization,
            dtype="auto" if gen.dtype == "auto" else gen.dtype,
            trust_remote_code=bool(cfg.get("trust_remote_code") or False),
            seed=mipo_cfg.seed,
            enforce_eager=gen.vllm_enforce_eager,
        )
        return cls(
            None, tokenizer, loader=start,
            model_id=model_fingerprint(cfg.base_model, cfg.get("revision_of_model")),
            sampling=SamplingSettings.from_config(mipo_cfg), batch_size=max(gen.batch_size, 256),
        )

    @property
    def llm(self):
        return self._llm.get()

    def cache_key_parts(self) -> dict:
        return {
            **self.sampling_key_parts(),
            "model": self.model_id,
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
        }

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        return token_lengths(self.tokenizer, prompts)

    def sampling_params(self, prompt: str):
        from vllm import SamplingParams

        sp = self.sampling
        kw = dict(max_tokens=sp.max_new_tokens, temperature=sp.effective_temperature, top_p=sp.top_p,
                  seed=sp.prompt_seed(prompt) % (2**31 - 1))
        if sp.top_k is not None:
            kw["top_k"] = sp.top_k
        if sp.repetition_penalty is not None:
            kw["repetition_penalty"] = sp.repetition_penalty
        return SamplingParams(**kw)

    def generate_batch(self, prompts: Sequence[str]) -> list[GenerationResult]:
        ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        outs = self.llm.generate(
            [{"prompt_token_ids": x} for x in ids],
            [self.sampling_params(p) for p in prompts],
            use_tqdm=False,
        )
        return [GenerationResult(o.outputs[0].text.strip(), len(o.outputs[0].token_ids)) for o in outs]

    def close(self) -> None:
        self._llm.drop()
        gc.collect()
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # best effort on teardown
            pass
