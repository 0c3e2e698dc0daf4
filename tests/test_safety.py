"""Safety: no remote code unless asked, no pickles (strategy imports: tests/pairing/test_registry.py)."""

import pickle

import pytest

from axolotl_mipo.args import MIPOConfig
from axolotl_mipo.generation.cache import GenerationCache


def _from_config_kwargs(monkeypatch, tiny_model_dir, **cfg_extra):
    import transformers

    from axolotl_mipo.generation.hf import HFBackend

    seen = {}
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(name, **kwargs):
        seen.update(kwargs)
        return real(name, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    from axolotl.utils.dict import DictDefault

    cfg = DictDefault(base_model=str(tiny_model_dir), **cfg_extra)
    mipo = MIPOConfig.model_validate({"datasets": [{"path": "x"}], "generation": {"device": "cpu"}})
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    backend = HFBackend.from_config(cfg, mipo, tok)
    assert backend.model is not None  # loaded at first use
    backend.close()
    return seen


def test_remote_code_is_off_unless_the_user_sets_it(monkeypatch, tiny_model_dir):
    assert _from_config_kwargs(monkeypatch, tiny_model_dir)["trust_remote_code"] is False
    assert _from_config_kwargs(monkeypatch, tiny_model_dir, trust_remote_code=True)["trust_remote_code"] is True


def test_cache_never_unpickles(tmp_path, monkeypatch):
    cache = GenerationCache(tmp_path, {"k": 1})
    cache.add_many([("a", "alpha", 1)])
    # a pickle dropped into the folder, under any name, is never read as a shard
    (cache.dir / "shard-999999-evil.pkl").write_bytes(pickle.dumps({"k": "b"}))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads called"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load called"))
    again = GenerationCache(tmp_path, {"k": 1})
    assert again.get("a").text == "alpha" and len(again) == 1
