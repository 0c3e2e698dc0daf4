"""The tiny local model: a tokenizer trained on a given corpus, rebuilt only when the corpus changes."""

from __future__ import annotations

import json

from experiments.tasks import synthetic as S


def _rows(n_users=6, queries=1, seed=0):
    return S.make_task(n_users=n_users, queries_per_user=queries, seed=seed)


def test_tokenizer_on_a_given_corpus(tmp_path):
    from axolotl_mipo.testing.tiny import (
        TinyModelSpec,
        build_tiny_model,
        build_tokenizer,
    )

    corpus = [r["reference"] for r in _rows(8, 3)]
    tok = build_tokenizer(512, corpus=corpus)
    default = build_tokenizer(512)
    word = "ingredients"
    n_tokens = len(tok(word, add_special_tokens=False)["input_ids"])
    assert n_tokens < len(default(word, add_special_tokens=False)["input_ids"])
    spec = TinyModelSpec(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, vocab_size=512)
    d = build_tiny_model(tmp_path / "m", spec, corpus=corpus)
    stamp = json.loads((d / "tiny_spec.json").read_text())
    assert "corpus_sha256" in stamp
    mtime = (d / "model.safetensors").stat().st_mtime_ns
    build_tiny_model(d, spec, corpus=corpus)  # same corpus: kept
    assert (d / "model.safetensors").stat().st_mtime_ns == mtime
    build_tiny_model(d, spec)  # default corpus: rebuilt, stamp back to the spec alone
    assert "corpus_sha256" not in json.loads((d / "tiny_spec.json").read_text())
