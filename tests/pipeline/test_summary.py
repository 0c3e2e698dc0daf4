"""POPI preference summaries: contexts replaced by cached model-written summaries, with the length and MI report."""

import json

import pytest

from axolotl_mipo.data.example import Example
from axolotl_mipo.data.prompts import PromptFormat
from axolotl_mipo.errors import MIPOConfigError
from axolotl_mipo.generation.base import GenerationResult
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pipeline.summary import DEFAULT_TEMPLATE, mi_summary_vs_history, summarize_contexts
from axolotl_mipo.testing.fake_backend import FakeBackend

HISTORIES = [
    " ".join(f"I loved the {w} concert and rated it five stars." for w in ("jazz", "blues", "swing", "soul")),
    " ".join(f"Bought {w} seeds; asked for short answers only." for w in ("tomato", "basil", "pepper")),
    "",  # filled below: a history the model answers with nothing
]
HISTORIES[2] = "Reads poetry every night. " * 6


def _summary_text(prompt: str) -> str:
    """'likes X' for a history about X, nothing for the poetry one."""
    return "likes jazz" if "jazz" in prompt else "likes gardening, short answers" if "seeds" in prompt else ""


def SummaryBackend():
    return FakeBackend(_summary_text, name="summary-fake", prompt_length=len)


def _examples():
    return [Example(index=i, messages=(("user", f"question {i}"),), context=HISTORIES[i % 3], source="d")
            for i in range(6)]


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


def test_contexts_become_cached_summaries_and_the_reduction_is_reported(tok, tmp_path):
    backend = SummaryBackend()
    out, report = summarize_contexts(_examples(), backend, str(tmp_path), tok, max_new_tokens=40, progress=False)
    assert [ex.context for ex in out[:3]] == ["likes jazz", "likes gardening, short answers", HISTORIES[2]]
    assert all(ex.meta["history"] == HISTORIES[i % 3] for i, ex in enumerate(out))
    assert [ex.messages for ex in out] == [ex.messages for ex in _examples()]  # only the context changes
    # max_new_tokens is restored after the summaries
    assert backend.generate_calls == 1 and backend.seen_max_new_tokens == [40] and backend.max_new_tokens == 512
    assert report.contexts == 3 and report.empty_summaries == 1

    def n(t):
        return len(tok(t, add_special_tokens=False)["input_ids"])

    assert report.history_tokens_mean == pytest.approx(sum(n(h) for h in HISTORIES) / 3)
    summaries = ["likes jazz", "likes gardening, short answers", HISTORIES[2]]
    assert report.summary_tokens_mean == pytest.approx(sum(n(s) for s in summaries) / 3)
    assert report.reduction == pytest.approx(report.history_tokens_mean / report.summary_tokens_mean)
    assert report.reduction > 1.5
    assert "3 contexts" in report.summary() and "1 empty summaries" in report.summary()

    # a second run reads every summary from the cache; another template is another cache
    again, _ = summarize_contexts(_examples(), backend, str(tmp_path), tok, max_new_tokens=40, progress=False)
    assert backend.generate_calls == 1 and [e.context for e in again] == [e.context for e in out]
    summarize_contexts(_examples(), backend, str(tmp_path), tok, max_new_tokens=40, progress=False,
                       template="Sum up: {history}")
    assert backend.generate_calls == 2


def test_long_histories_keep_their_most_recent_part(tok, tmp_path):
    backend = SummaryBackend()
    prompts = []
    backend.generate_batch = lambda ps: (prompts.extend(ps), [GenerationResult("likes jazz", 2) for _ in ps])[1]
    old = "ancient detail " * 200
    ex = [Example(index=0, messages=(("user", "q"),), context=old + "recent: loves jazz", source="d")]
    _, report = summarize_contexts(ex, backend, str(tmp_path), tok, max_prompt_tokens=300, progress=False)
    assert report.truncated_histories == 1
    assert len(tok(prompts[0], add_special_tokens=False)["input_ids"]) <= 300
    assert "recent: loves jazz" in prompts[0]
    with pytest.raises(MIPOConfigError, match="template"):
        summarize_contexts(ex, backend, str(tmp_path / "b"), tok, max_prompt_tokens=10, progress=False)


def test_rows_without_context_are_refused(tok, tmp_path):
    ex = [Example(index=0, messages=(("user", "q"),), context=None, source="d")]
    with pytest.raises(MIPOConfigError, match="preference_summary"):
        summarize_contexts(ex, SummaryBackend(), str(tmp_path), tok, progress=False)


def test_config_block_and_refusals():
    from axolotl_mipo.args import MIPOConfig, validate_mipo_block

    cfg = MIPOConfig(datasets=[{"path": "x.jsonl"}], context_builder="preference_summary",
                     summary={"max_new_tokens": 64, "report_rows": 0})
    assert cfg.summary.max_new_tokens == 64 and cfg.summary.template is None
    with pytest.raises(Exception, match="history"):
        MIPOConfig(datasets=[{"path": "x.jsonl"}], summary={"template": "no placeholder"})
    with pytest.raises(Exception, match="preference_summary"):
        MIPOConfig(datasets=[{"path": "x.jsonl", "format": "prompt"}], strategy="mismatched_prompt",
                   context_builder="preference_summary")
    with pytest.raises(MIPOConfigError, match="max_new_token"):
        validate_mipo_block({"datasets": [{"path": "x.jsonl"}], "summary": {"max_new_token": 3}})
    assert "{history}" in DEFAULT_TEMPLATE and "{max_words}" in DEFAULT_TEMPLATE


def test_mi_of_summary_and_history_conditioned_responses_with_the_tiny_model(tiny_model_and_tokenizer, tmp_path):
    """The hf path end to end on the tiny model: summaries, responses under both contexts, scored MI."""
    from axolotl_mipo.evaluation.metrics import pointwise_mi
    from axolotl_mipo.generation.hf import HFBackend
    from axolotl_mipo.scoring import conditional_logprobs

    model, tok = tiny_model_and_tokenizer
    backend = HFBackend(model, tok, model_id={}, max_new_tokens=8, temperature=0.7, batch_size=4, seed=1)
    out, report = summarize_contexts(_examples(), backend, str(tmp_path), tok, max_new_tokens=6, progress=False)
    assert backend.max_new_tokens == 8
    cache = GenerationCache(str(tmp_path), backend.cache_key_parts())
    fmt = PromptFormat()
    mi_summary_vs_history(out, backend, cache, tok, fmt, report, rows=4, seed=0)
    assert report.mi_rows == 4
    assert isinstance(report.mi_summary, float) and isinstance(report.mi_history, float)
    # the figure is the per-token pointwise MI of the responses the backend generates (recomputed here)
    import random

    sample = random.Random(0).sample(out, 4)
    from axolotl_mipo.data.prompts import build_messages
    from axolotl_mipo.generation.cache import prompt_key
    from axolotl_mipo.pipeline.builder import render_prompt

    ys = [cache.get(prompt_key(render_prompt(tok, build_messages(e.messages, e.context, fmt)))).text for e in sample]
    lw, lo = conditional_logprobs(model, tok, sample, responses=ys, fmt=fmt)
    assert report.mi_summary == pytest.approx(pointwise_mi(lw, lo).per_token_mean, abs=1e-5)
    assert json.loads(json.dumps(report.__dict__))["mi_rows"] == 4
