"""Fixtures shared by the generation tests: the tiny model's hf backend and chat prompts rendered for it."""

import pytest

from axolotl_mipo.generation.cache import model_fingerprint
from axolotl_mipo.generation.hf import HFBackend
from axolotl_mipo.pipeline.builder import render_prompt

QUERIES = ["What should I cook tonight?", "Recommend a book.", "Plan my trip, with many details please.",
           "Hi", "Explain photosynthesis.", "Write a greeting."]


@pytest.fixture()
def backend(tiny_model_and_tokenizer, tiny_model_dir):
    model, tok = tiny_model_and_tokenizer
    return HFBackend(model, tok, model_id=model_fingerprint(str(tiny_model_dir)), max_new_tokens=8,
                     temperature=1.0, top_p=0.9, batch_size=4, seed=3)


@pytest.fixture()
def prompts(tiny_model_and_tokenizer):
    _, tok = tiny_model_and_tokenizer
    return [render_prompt(tok, [{"role": "system", "content": "I like jazz."}, {"role": "user", "content": q}])
            for q in QUERIES]
