"""The ``vllm`` backend: offline ``vllm.LLM`` (GPU only; ``pip install axolotl-mipo[vllm]``).

Prompts are tokenized here (no special tokens added: the chat template already
holds the BOS) and passed as token ids, so vLLM sees exactly the ids the
trainer will. Each prompt gets ``SamplingParams(seed=...)`` derived from
``(seed, prompt)``, so, as with the ``hf`` backend, a response does not depend
on which batch it was scheduled in. vLLM does its own continuous batching; the
batch size here only sets how often finished responses are written to the cache.

Checked against the source of vLLM 0.23 and 0.33 (``LLM.__init__``,
``LLM.generate``, ``SamplingParams``, the quantization methods, the engine
core's ``shutdown``), recorded in ``axolotl_mipo._doubles.vllm_api``:

* it stops on the ids the ``hf`` backend stops on (``stop_token_ids``): vLLM's
  own stop set comes from its tokenizer and the generation config, and misses
  a YAML ``eos_token`` override;
* ``max_model_len`` is the prompt budget plus ``max_new_tokens``: left unset,
  vLLM reserves KV cache for the model's whole context (128k tokens for
  Llama-3.1-8B) and does not start on a 24 GB card;
* 4-bit generation maps to ``quantization="bitsandbytes"`` where the installed
  vLLM has it (0.23 does, 0.33 does not: a config error then);
* ``close()`` shuts the engine core down itself, because a failed generate's
  traceback can keep the ``LLM`` object alive. vLLM's helpers that tear the
  distributed environment down are never called: under torchrun the default
  process group is Axolotl's.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from axolotl_mipo.errors import MIPOConfigError
from axolotl_mipo.generation.base import GenerationResult, LoadedOnFirstUse, stop_token_ids, token_lengths
from axolotl_mipo.generation.cache import model_fingerprint, tokenizer_fingerprint
from axolotl_mipo.generation.handoff import release_memory
from axolotl_mipo.generation.hf import _load_4bit
from axolotl_mipo.generation.sampling import SampledBackend, SamplingSettings

LOG = logging.getLogger(__name__)


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise MIPOConfigError(
            "mipo.generation.backend vllm needs vLLM: pip install 'axolotl-mipo[vllm]' (GPU only; beside axolotl "
            "0.19 that is vLLM 0.23.0, which needs torch 2.11.0). Beside axolotl 0.21 no vLLM release installs "
            "(axolotl pins gradio, whose pillow<13 conflicts with vLLM 0.33): run `vllm serve` from its own "
            "environment and use mipo.generation.backend: openai"
        ) from None
    return vllm


def _supports_bitsandbytes() -> bool:
    try:
        from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    except ImportError:
        return False
    return "bitsandbytes" in QUANTIZATION_METHODS


def _generation_eos(cfg):
    """The model's generation-config EOS (what the hf backend reads from the loaded model), from its files."""
    from transformers import AutoConfig, GenerationConfig

    kw = {"revision": cfg.get("revision_of_model")} if cfg.get("revision_of_model") else {}
    trust = bool(cfg.get("trust_remote_code") or False)
    try:
        return GenerationConfig.from_pretrained(cfg.base_model, **kw).eos_token_id
    except (OSError, ValueError):  # no generation_config.json: transformers derives one from config.json
        try:
            return GenerationConfig.from_model_config(
                AutoConfig.from_pretrained(cfg.base_model, trust_remote_code=trust, **kw)).eos_token_id
        except (OSError, ValueError):
            return None  # vLLM adds the generation config's EOS itself; the tokenizer's is what matters here


def _shutdown(llm) -> None:
    """Stop the engine core (its process and GPU memory) now, whoever still references ``llm``.

    Only the engine's own ``shutdown``: vLLM's ``cleanup_dist_env_and_memory`` /
    ``destroy_distributed_environment`` would destroy the default process group, Axolotl's under torchrun.
    """
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is None or not callable(getattr(core, "shutdown", None)):
        return
    try:
        core.shutdown()
    except Exception as exc:  # teardown must not hide the error that led here
        LOG.warning(f"mipo: shutting the vLLM engine down failed ({type(exc).__name__}: {exc})")


class VLLMBackend(SampledBackend):
    name = "vllm"

    def __init__(self, llm, tokenizer, *, model_id: dict, batch_size=256, loader=None,
                 stop_ids: Sequence[int] | None = None, sampling: SamplingSettings | None = None,
                 **sampling_fields):
        """``llm``, or ``loader``: a function that starts it at first use (``from_config`` passes one, so
        that a run whose responses are all cached does not start vLLM). ``stop_ids``: the token ids that
        end a response (``from_config``: the ones the hf backend stops on). ``sampling``, with any of its
        fields given by name replacing its values."""
        self.sampling = SamplingSettings.build(sampling, **sampling_fields)
        self._llm = LoadedOnFirstUse(llm, loader)
        self.stop_ids = sorted(stop_ids) if stop_ids is not None else stop_token_ids(None, tokenizer)
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, cfg, mipo_cfg, tokenizer) -> "VLLMBackend":
        vllm = _import_vllm()
        gen = mipo_cfg.generation
        extra = {}
        budget = gen.max_prompt_tokens or cfg.get("sequence_len")
        if budget:
            new_tokens = gen.max_new_tokens
            if mipo_cfg.context_builder == "preference_summary":
                new_tokens = max(new_tokens, mipo_cfg.summary.max_new_tokens)
            extra["max_model_len"] = int(budget) + new_tokens
        else:
            LOG.warning("mipo: neither mipo.generation.max_prompt_tokens nor sequence_len is set, so vLLM "
                        "reserves KV cache for the model's whole context; set one of them")
        if _load_4bit(cfg, gen):
            if not _supports_bitsandbytes():
                key = ("mipo.generation.load_in_4bit" if gen.load_in_4bit is not None
                       else "load_in_4bit (top level; mipo.generation.load_in_4bit follows it when unset)")
                raise MIPOConfigError(
                    f"{key}: the installed vLLM {getattr(vllm, '__version__', '?')} has no bitsandbytes "
                    "quantization (vLLM 0.33 removed it), so the vllm backend cannot generate in 4 bits. Set "
                    "mipo.generation.load_in_4bit: false (vLLM in the model's dtype), or use backend: hf"
                )
            extra["quantization"] = "bitsandbytes"
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
            **extra,
        )
        return cls(
            None, tokenizer, loader=start,
            model_id={**model_fingerprint(cfg.base_model, cfg.get("revision_of_model")),
                      **({"4bit": True} if "quantization" in extra else {})},
            stop_ids=stop_token_ids(_generation_eos(cfg), tokenizer),
            sampling=SamplingSettings.from_config(mipo_cfg), batch_size=max(gen.batch_size, 256),
        )

    @property
    def llm(self):
        return self._llm.get()

    def cache_key_parts(self) -> dict:
        return {
            **self.sampling_key_parts(),
            "stop_token_ids": self.stop_ids,
            "model": self.model_id,
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
        }

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        return token_lengths(self.tokenizer, prompts)

    def sampling_params(self, prompt: str):
        from vllm import SamplingParams

        sp = self.sampling
        kw = dict(max_tokens=sp.max_new_tokens, temperature=sp.effective_temperature, top_p=sp.top_p,
                  seed=sp.prompt_seed(prompt) % (2**31 - 1), stop_token_ids=list(self.stop_ids))
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
        llm = self._llm.value
        self._llm.drop()
        if llm is not None:
            _shutdown(llm)
        del llm
        release_memory()
