"""The vllm backend against vLLM's real API (the installed vLLM's source, else the recorded 0.23.0 / 0.33.0),
with no GPU: what it passes, what it refuses up front, and what it reports when vLLM fails."""

import re

import pytest
from axolotl.utils.dict import DictDefault

from axolotl_mipo.errors import MIPOConfigError, MIPOGenerationError
from axolotl_mipo.testing.fake_vllm import FakeVLLM


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


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


def test_the_double_refuses_what_vllm_refuses(monkeypatch):
    """The stand-in fails on a misspelt option, a removed quantization or an out-of-range value, so the
    backend's tests can fail for the reasons real vLLM would."""
    v033 = FakeVLLM("0.33.0").install(monkeypatch).module
    with pytest.raises(TypeError, match="max_model_length"):
        v033.LLM(model="m", max_model_length=10)
    v033.LLM(model="m", max_model_len=10)  # an EngineArgs field, through LLM(**kwargs)
    with pytest.raises(TypeError, match="stop_ids"):
        v033.SamplingParams(stop_ids=[1])
    with pytest.raises(ValueError, match=r"temperature must be in \[0, 2.0\]"):
        v033.SamplingParams(temperature=2.5)
    with pytest.raises(TypeError, match="use_progress"):
        v033.LLM(model="m").generate([{"prompt_token_ids": [1]}], None, use_progress=False)
    if FakeVLLM("0.33.0").api["version"] == "0.33.0":  # recorded, not an installed vLLM
        with pytest.raises(ValueError, match="Unknown quantization method: bitsandbytes"):
            v033.LLM(model="m", quantization="bitsandbytes")
        v023 = FakeVLLM("0.23.0").module
        v023.LLM(model="m", quantization="bitsandbytes")
        v023.SamplingParams(temperature=2.5)  # 0.23 has no upper bound


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
