"""``mipo.summary.summarizer``: summaries written by another model or an adapter, never mixed in the cache."""

import os

import pytest

from axolotl_mipo.args import MIPOConfig
from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPOConfigError
from axolotl_mipo.pipeline.summary import summarize_contexts

HISTORIES = ["I loved the jazz concert and rated it five stars. " * 3, "Bought tomato seeds; short answers only. " * 3]


def _mipo(summarizer=None, **extra):
    block = {"datasets": [{"path": "x.jsonl"}], "context_builder": "preference_summary",
             "summary": {"summarizer": summarizer} if summarizer else {},
             "generation": {"device": "cpu", "max_new_tokens": 4, "batch_size": 4, "do_sample": False}}
    block.update(extra)
    return MIPOConfig.model_validate(block)


def _adapter(base_dir, out, seed):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    # init_lora_weights=False: B is not zero, so the adapter really changes the model
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return _adapter(tiny_model_dir, root / "a", 1), _adapter(tiny_model_dir, root / "b", 2)


def _cfg(tiny_model_dir):
    from axolotl.utils.dict import DictDefault

    return DictDefault({"base_model": str(tiny_model_dir)})


def test_each_summarizer_gets_its_own_summary_cache(tiny_model_and_tokenizer, tiny_model_dir, adapters, tmp_path):
    from axolotl_mipo.generation.hf import HFBackend
    from axolotl_mipo.generation.summarizer import summarizer_backend

    _, tok = tiny_model_and_tokenizer
    cfg = _cfg(tiny_model_dir)
    examples = [Example(index=i, messages=(("user", f"q{i}"),), context=HISTORIES[i % 2]) for i in range(4)]
    writers = [HFBackend.from_config(cfg, _mipo(), tok),
               summarizer_backend(cfg, _mipo(adapters[0]), tok), summarizer_backend(cfg, _mipo(adapters[1]), tok)]
    keys = [w.cache_key_parts() for w in writers]
    assert keys[1]["model"]["adapter"]["path"] == os.path.realpath(adapters[0])
    assert len({str(k) for k in keys}) == 3
    for w in writers:
        try:
            out, _ = summarize_contexts(examples, w, str(tmp_path), tok, max_new_tokens=4, progress=False)
            assert [ex.meta["history"] for ex in out] == [ex.context for ex in examples]
        finally:
            w.close()
    assert len([d for d in os.listdir(tmp_path) if os.path.isdir(tmp_path / d)]) == 3  # one folder per summarizer


def test_an_adapter_summarizer_is_merged_into_the_base(tiny_model_and_tokenizer, tiny_model_dir, adapters):
    import torch

    from axolotl_mipo.generation.summarizer import summarizer_backend

    base, tok = tiny_model_and_tokenizer
    w = summarizer_backend(_cfg(tiny_model_dir), _mipo(adapters[0]), tok)
    try:
        ids = torch.tensor([tok("hello there", add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            assert not torch.allclose(w.model(ids).logits, base(ids).logits)
        assert not any("lora" in n for n, _ in w.model.named_parameters())
    finally:
        w.close()


def test_a_model_folder_summarizer_is_keyed_by_its_own_files(tiny_model_and_tokenizer, tiny_model_dir, tmp_path):
    import shutil

    from axolotl_mipo.generation.hf import HFBackend
    from axolotl_mipo.generation.summarizer import summarizer_backend

    _, tok = tiny_model_and_tokenizer
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    (other / "config.json").write_text((other / "config.json").read_text() + "\n")  # another file, another model
    cfg = _cfg(tiny_model_dir)
    w = summarizer_backend(cfg, _mipo(str(other)), tok)
    base = HFBackend.from_config(cfg, _mipo(), tok)
    assert w.cache_key_parts()["model"]["path"] == str(other.resolve())
    assert w.cache_key_parts() != base.cache_key_parts()


def test_summarizer_config_is_checked():
    with pytest.raises(ValueError, match="needs mipo.context_builder: preference_summary"):
        _mipo("x", context_builder="none")
    with pytest.raises(ValueError, match="hf backend, not vllm"):
        _mipo("x", generation={"backend": "vllm"})
    with pytest.raises(ValueError, match="summarizer is empty"):
        _mipo(" ")


def test_a_summarizer_with_another_tokenizer_is_refused(tiny_model_and_tokenizer, tiny_model_dir, tmp_path):
    from axolotl_mipo.generation.summarizer import summarizer_backend
    from axolotl_mipo.testing.tiny import build_tokenizer

    _, tok = tiny_model_and_tokenizer
    folder = tmp_path / "othertok"
    build_tokenizer(vocab_size=300, seed=5).save_pretrained(folder)
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(MIPOConfigError, match="another tokenizer"):
        summarizer_backend(_cfg(tiny_model_dir), _mipo(str(folder)), tok)
