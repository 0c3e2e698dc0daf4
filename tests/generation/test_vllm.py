"""The vllm backend against a stand-in vllm module, and the message when vllm is missing."""

import sys

import pytest

from axolotl_mipo.generation.base import generate_with_cache
from axolotl_mipo.generation.cache import GenerationCache


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


def test_missing_vllm_names_the_extra(monkeypatch):
    import builtins

    from axolotl_mipo.errors import MIPOConfigError
    from axolotl_mipo.generation import vllm as vmod

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "vllm":
            raise ImportError("No module named 'vllm'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MIPOConfigError, match=r"pip install 'axolotl-mipo\[vllm\]'"):
        vmod._import_vllm()


def test_vllm_backend_against_a_stand_in_vllm_module(monkeypatch, tok, tmp_path, tiny_model_dir):
    """No GPU here, so a stand-in ``vllm`` module records what the backend asks of vLLM's API: the LLM's
    options from the YAML, prompts as token ids without added special tokens, one SamplingParams per prompt
    with a seed that depends on (seed, prompt) only, and the results in prompt order through the cache."""
    import types

    from axolotl.utils.dict import DictDefault

    from axolotl_mipo.args import MIPOConfig
    from axolotl_mipo.generation import backend_from_config

    calls = {"llm": None, "generate": []}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            calls["llm"] = kw

        def generate(self, prompts, params, use_tqdm=True):
            calls["generate"].append((prompts, params))
            out = []
            for p, sp in zip(prompts, params):
                ids = p["prompt_token_ids"][-3:]
                text = f"ans {len(p['prompt_token_ids'])} {sp.kw['seed']}"
                out.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f" {text} ", token_ids=ids)]))
            return out

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    cfg = DictDefault({"base_model": str(tiny_model_dir), "trust_remote_code": None})
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], seed=7, generation={
        "backend": "vllm", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "max_new_tokens": 33,
        "temperature": 0.3, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.1})
    backend = backend_from_config(cfg, mipo, tok)
    prompts = [f"<|begin_of_text|>prompt number {i}" + " pad" * i for i in range(5)]
    cache = GenerationCache(tmp_path, backend.cache_key_parts())
    assert calls["llm"] is None, "vLLM starts only when something is left to generate"
    got, _ = generate_with_cache(backend, prompts, cache, progress=False)
    llm = calls["llm"]
    assert llm["model"] == str(tiny_model_dir) and llm["tensor_parallel_size"] == 2
    assert llm["gpu_memory_utilization"] == 0.5 and llm["trust_remote_code"] is False and llm["seed"] == 7
    sent = [p for batch, _ in calls["generate"] for p in batch]
    assert sorted(map(tuple, (p["prompt_token_ids"] for p in sent))) == sorted(
        tuple(tok(p, add_special_tokens=False).input_ids) for p in prompts)
    params = [sp.kw for _, batch in calls["generate"] for sp in batch]
    assert all(k["max_tokens"] == 33 and k["temperature"] == 0.3 and k["top_p"] == 0.8 and k["top_k"] == 20
               and k["repetition_penalty"] == 1.1 for k in params)
    for p in prompts:  # each response is the one for its own prompt, seeded by (seed, prompt) alone
        n = len(tok(p, add_special_tokens=False).input_ids)
        seed = backend.sampling_params(p).kw["seed"]
        assert got[p].text == f"ans {n} {seed}"
    assert len({backend.sampling_params(p).kw["seed"] for p in prompts}) == len(prompts)
    before = backend.sampling_params(prompts[0]).kw["seed"]
    backend.seed = 8
    assert backend.sampling_params(prompts[0]).kw["seed"] != before
    backend.close()
    assert backend.llm is None
    calls["llm"] = None  # all cached: a second backend never starts vLLM
    again = backend_from_config(cfg, mipo, tok)
    assert generate_with_cache(again, prompts, cache, progress=False)[1].cached == len(prompts)
    assert calls["llm"] is None
