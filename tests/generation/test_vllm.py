"""The vllm backend against a stand-in vllm module, and the message when vllm is missing."""

import re

import pytest
from axolotl.utils.dict import DictDefault

from axolotl_mipo._doubles.fake_vllm import FakeVLLM
from axolotl_mipo.errors import MIPOConfigError, MIPOGenerationError
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


@pytest.mark.parametrize("version", ["0.23.0", "0.33.0"])
def test_vllm_backend_against_a_stand_in_vllm_module(monkeypatch, tok, tmp_path, tiny_model_dir, version):
    """No GPU here, so a stand-in ``vllm`` module that accepts only vLLM's real parameter names and value ranges
    (the installed vLLM's, else those recorded from ``version``'s source) records what the backend asks: the
    LLM's options from the YAML, prompts as token ids without added special tokens, one SamplingParams per
    prompt with a seed that depends on (seed, prompt) only, and the results in prompt order through the cache."""
    from axolotl.utils.dict import DictDefault

    from axolotl_mipo._doubles.fake_vllm import FakeVLLM
    from axolotl_mipo.args import MIPOConfig
    from axolotl_mipo.generation import backend_from_config

    fake = FakeVLLM(version).install(monkeypatch)
    cfg = DictDefault({"base_model": str(tiny_model_dir), "trust_remote_code": None, "sequence_len": 200})
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], seed=7, generation={
        "backend": "vllm", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "max_new_tokens": 33,
        "temperature": 0.3, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.1})
    backend = backend_from_config(cfg, mipo, tok)
    prompts = [f"<|begin_of_text|>prompt number {i}" + " pad" * i for i in range(5)]
    cache = GenerationCache(tmp_path, backend.cache_key_parts())
    assert fake.started == [], "vLLM starts only when something is left to generate"
    got, _ = generate_with_cache(backend, prompts, cache, progress=False)
    [llm] = fake.started
    assert llm["model"] == str(tiny_model_dir) and llm["tensor_parallel_size"] == 2
    assert llm["gpu_memory_utilization"] == 0.5 and llm["trust_remote_code"] is False and llm["seed"] == 7
    assert llm["max_model_len"] == 200 + 33, "KV cache for the prompt budget plus the response, not the model's context"
    assert "quantization" not in llm
    sent = [p for batch, _ in fake.generated for p in batch]
    assert sorted(map(tuple, (p["prompt_token_ids"] for p in sent))) == sorted(
        tuple(tok(p, add_special_tokens=False).input_ids) for p in prompts)
    params = [sp.kw for _, batch in fake.generated for sp in batch]
    assert all(k["max_tokens"] == 33 and k["temperature"] == 0.3 and k["top_p"] == 0.8 and k["top_k"] == 20
               and k["repetition_penalty"] == 1.1 for k in params)
    assert all(k["stop_token_ids"] == [tok.eos_token_id] for k in params)
    for p in prompts:  # each response is the one for its own prompt, seeded by (seed, prompt) alone
        n = len(tok(p, add_special_tokens=False).input_ids)
        seed = backend.sampling_params(p).kw["seed"]
        assert got[p].text == f"ans {n} {seed}"
    assert len({backend.sampling_params(p).kw["seed"] for p in prompts}) == len(prompts)
    before = backend.sampling_params(prompts[0]).kw["seed"]
    backend.seed = 8
    assert backend.sampling_params(prompts[0]).kw["seed"] != before
    backend.close()
    assert backend.llm is None and fake.shutdowns == 1
    fake.started.clear()  # all cached: a second backend never starts vLLM
    again = backend_from_config(cfg, mipo, tok)
    assert generate_with_cache(again, prompts, cache, progress=False)[1].cached == len(prompts)
    assert fake.started == []


def _mipo(**gen):
    from axolotl_mipo.args import MIPOConfig

    return MIPOConfig(datasets=[{"path": "x.jsonl"}], generation={"backend": "vllm", **gen})


def _cfg(tiny_model_dir, **kw):
    return DictDefault({"base_model": str(tiny_model_dir), "sequence_len": 128, **kw})


def _generate(backend, tmp_path, prompts=("<|begin_of_text|>hello",), **kw):
    from axolotl_mipo.generation.base import generate_with_cache
    from axolotl_mipo.generation.cache import GenerationCache

    return generate_with_cache(backend, list(prompts), GenerationCache(tmp_path, backend.cache_key_parts()),
                               progress=False, **kw)


def test_stop_ids_are_the_hf_backends_with_a_yaml_eos_override(monkeypatch, tiny_model_dir, tmp_path):
    """chatml on a base model: Axolotl's tokenizer ends a turn with an EOS that is neither vLLM's tokenizer's
    nor the generation config's. Both backends stop on it, and on the generation config's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from axolotl_mipo.generation import backend_from_config
    from axolotl_mipo.generation.hf import HFBackend

    fake = FakeVLLM().install(monkeypatch)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.eos_token = "<|end_of_text|>"  # what a YAML special_tokens: {eos_token: ...} does
    backend = backend_from_config(_cfg(tiny_model_dir), _mipo(), tok)
    hf = HFBackend(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tok, model_id={})
    assert backend.stop_ids == hf.eos_ids
    assert set(hf.eos_ids) == {tok.eos_token_id, tok.convert_tokens_to_ids("<|eot_id|>")}
    _generate(backend, tmp_path)
    [[params]] = [p for _, p in fake.generated]
    assert params.kw["stop_token_ids"] == hf.eos_ids
    assert backend.cache_key_parts()["stop_token_ids"] == hf.eos_ids


@pytest.mark.parametrize("version", ["0.23.0", "0.33.0"])
def test_4bit_maps_to_bitsandbytes_or_is_refused_naming_the_key(monkeypatch, tok, tiny_model_dir, tmp_path, version):
    from axolotl_mipo.generation import backend_from_config

    fake = FakeVLLM(version).install(monkeypatch)
    bnb = "bitsandbytes" in fake.api["quantization_methods"]
    for cfg, mipo, key in [(_cfg(tiny_model_dir), _mipo(load_in_4bit=True), "mipo.generation.load_in_4bit"),
                           (_cfg(tiny_model_dir, load_in_4bit=True), _mipo(), "load_in_4bit (top level")]:
        if bnb:
            backend = backend_from_config(cfg, mipo, tok)
            _generate(backend, tmp_path)
            assert fake.started[-1]["quantization"] == "bitsandbytes"
            assert backend.cache_key_parts()["model"]["4bit"] is True
            backend.close()
        else:
            with pytest.raises(MIPOConfigError, match=re.escape(key) + ".*no bitsandbytes.*load_in_4bit: false"):
                backend_from_config(cfg, mipo, tok)
            assert fake.started == [], "refused before vLLM starts"
    # QLoRA training with bf16 generation: allowed on every version
    backend = backend_from_config(_cfg(tiny_model_dir, load_in_4bit=True), _mipo(load_in_4bit=False), tok)
    _generate(backend, tmp_path / "bf16")
    assert "quantization" not in fake.started[-1]


def test_max_model_len_covers_summaries_too(monkeypatch, tok, tiny_model_dir, tmp_path):
    from axolotl_mipo.args import MIPOConfig
    from axolotl_mipo.generation import backend_from_config

    fake = FakeVLLM().install(monkeypatch)
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], context_builder="preference_summary",
                      summary={"max_new_tokens": 300},
                      generation={"backend": "vllm", "max_new_tokens": 100, "max_prompt_tokens": 64})
    _generate(backend_from_config(_cfg(tiny_model_dir), mipo, tok), tmp_path)
    assert fake.started[-1]["max_model_len"] == 64 + 300


@pytest.mark.parametrize("backend", ["vllm", "openai"])
def test_sampling_ranges_are_checked_in_the_config(backend):
    from pydantic import ValidationError

    extra = {"openai_base_url": "http://x/v1"} if backend == "openai" else {}
    with pytest.raises(ValidationError, match=r"mipo.generation.temperature 2.5: the .* backend takes 0 to 2"):
        _mipo(backend=backend, temperature=2.5, **extra)
    with pytest.raises(ValidationError, match="mipo.generation.temperature must be a finite number"):
        _mipo(backend=backend, temperature=float("inf"), **extra)
    _mipo(backend=backend, temperature=2.5, do_sample=False, **extra)  # greedy: the temperature is not sent
    _mipo(backend="hf", temperature=2.5)


def test_engine_start_failure_is_reported_as_vllms_own(monkeypatch, tok, tiny_model_dir, tmp_path):
    """vLLM's error, not "'NoneType' object has no attribute 'generate'" from a retry, and no second start."""
    from axolotl_mipo.generation import backend_from_config

    fake = FakeVLLM(fail_start=ValueError("To serve at least one request with max seq len (131072), 16.0 GiB "
                                          "KV cache is needed")).install(monkeypatch)
    backend = backend_from_config(_cfg(tiny_model_dir), _mipo(), tok)
    for _ in range(2):  # the second time too: the same error, without starting vLLM again
        with pytest.raises(MIPOGenerationError, match=r"ValueError: To serve at least one request") as err:
            _generate(backend, tmp_path, retries=2, backoff_s=0.0)
        assert "NoneType" not in str(err.value)
    assert len(fake.started) == 1
    backend.close()
    assert fake.shutdowns == 0  # nothing started


def test_close_never_tears_down_the_default_process_group(monkeypatch, tok, tiny_model_dir, tmp_path):
    """Under torchrun the default process group is Axolotl's: closing the backend shuts the engine core down
    and calls none of vLLM's distributed teardown helpers."""
    import sys
    import types

    from axolotl_mipo.generation import backend_from_config

    fake = FakeVLLM().install(monkeypatch)
    called = []
    dist = types.ModuleType("vllm.distributed")
    for name in ("destroy_distributed_environment", "destroy_model_parallel", "cleanup_dist_env_and_memory"):
        setattr(dist, name, lambda *a, _n=name, **k: called.append(_n))
    monkeypatch.setitem(sys.modules, "vllm.distributed", dist)
    monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", dist)
    backend = backend_from_config(_cfg(tiny_model_dir), _mipo(), tok)
    _generate(backend, tmp_path)
    backend.close()
    assert fake.shutdowns == 1 and called == []
