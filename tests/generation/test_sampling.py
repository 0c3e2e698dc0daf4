"""SamplingSettings: one frozen declaration of the sampling options, and the cache keys it makes.

The keys below were computed by the backends before they shared SamplingSettings (the vllm ones after its
stop_token_ids joined its key): an existing user's generation cache must still be found after the redesign,
so they must not change.
"""

import dataclasses
import sys
import types

import pytest

from axolotl_mipo.args import MIPOConfig
from axolotl_mipo.generation import backend_from_config
from axolotl_mipo.generation.cache import stable_hash
from axolotl_mipo.generation.sampling import SamplingSettings, prompt_seed

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)


class StandInTokenizer:
    chat_template = "{{ messages }}"
    special_tokens_map = {"eos_token": "</s>"}
    eos_token_id = 2

    def get_vocab(self):
        return {"a": 0, "b": 1, "</s>": 2}


GENERATION = {
    "default": {},
    "sampled": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.1, "max_new_tokens": 64},
    "no_sample": {"do_sample": False, "temperature": 0.7, "top_k": 20, "max_new_tokens": 64},
    "zero_temperature": {"temperature": 0.0, "top_p": 0.5},
}
PINNED = {
    ("hf", "default"): "67a3892b6539580d",
    ("hf", "sampled"): "e0cb92c0beb124ee",
    ("hf", "no_sample"): "e2e08b0bc0db1da4",
    ("hf", "zero_temperature"): "89bba59df101a4df",
    ("vllm", "default"): "5999a660ec1becab",
    ("vllm", "sampled"): "3053307d39d6110f",
    ("vllm", "no_sample"): "837605f1f7413f09",
    ("vllm", "zero_temperature"): "ca20798b42cef7da",
    ("openai", "default"): "2bbe40b297ee82d1",
    ("openai", "sampled"): "77c728fe7eff0b66",
    ("openai", "no_sample"): "bb29b70a53082bf2",
    ("openai", "zero_temperature"): "9b5b5191e85b7083",
}


def _backend(monkeypatch, backend: str, gen: dict):
    from axolotl.utils.dict import DictDefault

    # vllm's engine is started at first use only, so a stand-in module is enough to build the backend
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=lambda **kw: None))
    g = {"backend": backend, **gen}
    if backend == "hf":
        g["device"] = "cpu"
    if backend == "openai":
        g["openai_base_url"] = "http://127.0.0.1:9/v1"
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], seed=7, generation=g)
    return backend_from_config(DictDefault({"base_model": "org/model"}), mipo, StandInTokenizer())


@pytest.mark.parametrize("backend, name", sorted(PINNED))
def test_cache_keys_of_existing_settings_are_unchanged(monkeypatch, backend, name):
    b = _backend(monkeypatch, backend, GENERATION[name])
    try:
        assert stable_hash(b.cache_key_parts()) == PINNED[(backend, name)]
    finally:
        b.close()


@pytest.mark.parametrize("backend", ["hf", "vllm", "openai"])
def test_every_setting_reaches_the_key_through_the_backend(monkeypatch, backend):
    b = _backend(monkeypatch, backend, GENERATION["sampled"])
    try:
        base = b.cache_key_parts()
        for f in dataclasses.fields(SamplingSettings):
            if f.name == "do_sample":
                continue  # keyed as temperature 0, checked below
            old = getattr(b, f.name)
            setattr(b, f.name, (old or 1) * 2 if not isinstance(old, float) else old / 2)
            assert b.cache_key_parts() != base, f.name
            setattr(b, f.name, old)
            assert b.cache_key_parts() == base
        b.do_sample = False
        assert b.cache_key_parts()["temperature"] == 0.0
    finally:
        b.close()


def test_settings_are_frozen_and_made_from_the_config():
    mipo = MIPOConfig(datasets=[{"path": "x.jsonl"}], seed=5, generation=GENERATION["sampled"])
    s = SamplingSettings.from_config(mipo)
    assert s == SamplingSettings(max_new_tokens=64, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.1,
                                 seed=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 1
    assert SamplingSettings.build(s, seed=1).seed == 1 and s.seed == 5
    with pytest.raises(TypeError):
        SamplingSettings.build(s, temprature=1.0)
    # every field of the config's generation block that SamplingSettings declares is read from it
    assert {f.name for f in dataclasses.fields(SamplingSettings)} - {"seed"} <= set(type(mipo.generation).model_fields)


def test_greedy_keys_ignore_what_greedy_decoding_ignores():
    a = SamplingSettings(temperature=0.0, top_p=0.5, top_k=3, seed=1).cache_key_parts()
    b = SamplingSettings(do_sample=False, temperature=0.9, top_p=0.7, seed=2).cache_key_parts()
    assert a == b == {"max_new_tokens": 512, "temperature": 0.0, "top_p": 1.0, "top_k": None,
                      "repetition_penalty": None, "seed": None}


def test_prompt_seed_is_stable():
    before_the_redesign = 1390575530986916157
    assert prompt_seed(42, "hello") == SamplingSettings(seed=42).prompt_seed("hello") == before_the_redesign
    assert prompt_seed(42, "hello") != prompt_seed(43, "hello")
