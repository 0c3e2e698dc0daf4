"""The vLLM stand-in refuses what vLLM's real API refuses (the installed vLLM's source, else the recorded
0.23.0 / 0.33.0)."""

import pytest

from axolotl_mipo._doubles.fake_vllm import FakeVLLM


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
