"""Dataset presets: the published schemas (fixtures written by hand in that shape) -> context, query, pair."""

import hashlib
import json

import pytest

from axolotl_mipo.args import validate_mipo_block
from axolotl_mipo.data.rows import LoadReport, load_examples
from axolotl_mipo.errors import MIPOConfigError, MIPODataError
from axolotl_mipo.generation.base import GenerationResult
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pairing import build_strategy
from axolotl_mipo.pipeline.builder import build_preference_rows
from axolotl_mipo.pipeline.summary import summarize_contexts
from axolotl_mipo.testing.fake_backend import FakeBackend
from tests.data.presets import FIX, cfg, jsonl

# ----------------------------------------------------------- config / errors


def test_unknown_preset_gets_did_you_mean():
    with pytest.raises(MIPOConfigError, match=r"unknown format 'alingx'; did you mean 'alignx'"):
        validate_mipo_block({"datasets": [{"path": "x", "format": "alingx"}]})


@pytest.mark.parametrize("ds, key", [
    ({"format": "alignx", "item_order": "newest"}, "item_order"),
    ({"format": "alignx", "context_parts": ["demographics", "karma"]}, "context_parts"),
    ({"format": "context_query", "max_items": 3}, "max_items"),
    ({"format": "lamp", "rejected_response": "random"}, "rejected_response"),
    ({"format": "community_alignment", "rejected_response": "worst"}, "rejected_response"),
    ({"format": "prism", "outputs_file": "o.json"}, "outputs_file"),
])
def test_preset_options_are_validated_by_name(ds, key):
    with pytest.raises(MIPOConfigError, match=rf"mipo.datasets\[\]\.{key}"):
        validate_mipo_block({"datasets": [{"path": "x", **ds}]})


def test_missing_field_names_file_row_and_field(tmp_path):
    rows = [json.loads(line) for line in (FIX / "alignx.jsonl").read_text().splitlines()]
    del rows[1]["rejected"]
    p = jsonl(tmp_path / "ax.jsonl", rows)
    with pytest.raises(MIPODataError, match=r"ax.jsonl'.*row 1.*field 'rejected'"):
        load_examples([cfg(p, "alignx")])
    rep = LoadReport()
    assert len(load_examples([cfg(p, "alignx")], on_bad_row="skip", report=rep)) == 2
    assert rep.skipped == {"missing": 1}


# ----------------------------------- every preset x every strategy + summaries


def _preset_backend():
    """A deterministic response per prompt ('resp <hash>', the summaries too); counts the prompts generated."""
    return FakeBackend(lambda p: GenerationResult("resp " + hashlib.sha1(p.encode()).hexdigest()[:10], 2),
                       name="preset-fake", max_new_tokens=64)


ALL = {
    "alignx": cfg(FIX / "alignx.jsonl", "alignx"),
    "lamp": cfg(FIX / "lamp_questions.json", "lamp", outputs_file=str(FIX / "lamp_outputs.json")),
    "longlamp": cfg(FIX / "longlamp_product_review.jsonl", "lamp"),
    "prism": cfg(FIX / "prism", "prism"),
    "community_alignment": cfg(FIX / "community_alignment.csv", "community_alignment", max_items=2),
}
STRATEGIES = {
    "drop_context": "drop_context",
    "swap_context": "swap_context",
    "nearest_context": "nearest_context",
    "mixture": [{"name": "drop_context", "weight": 1}, {"name": "swap_context", "weight": 1}],
}


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


@pytest.mark.parametrize("preset", list(ALL))
@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("summary", [False, True], ids=["context", "preference_summary"])
def test_every_preset_with_every_strategy(tok, tmp_path, preset, strategy, summary):
    # a mixture splits the rows, so it gets the other presets' rows too (several datasets in one run)
    datasets = [ALL[preset]] + ([d for k, d in ALL.items() if k != preset] if strategy == "mixture" else [])
    mipo = validate_mipo_block({"datasets": [d.model_dump(exclude_unset=True) for d in datasets],
                                "strategy": STRATEGIES[strategy],
                                "strategy_kwargs": {"embedder": "tfidf"} if strategy == "nearest_context" else {},
                                "context_builder": "preference_summary" if summary else "none"})
    examples = load_examples(mipo.datasets)
    backend = _preset_backend()
    if summary:
        examples, _ = summarize_contexts(examples, backend, str(tmp_path / "s"), tok, max_new_tokens=16,
                                         progress=False)
        assert all(ex.context.startswith("resp ") for ex in examples)
    strat = build_strategy(mipo.strategy, mipo.strategy_kwargs)
    rows, stats = build_preference_rows(examples, strat, backend, GenerationCache(tmp_path / "c", {}), tok,
                                        progress=False)
    assert stats.pairs_kept == len(rows) == len(examples)
    assert stats.sharing is not None and stats.sharing.pairs == len(examples)
    for row, ex in zip(rows, examples):
        assert row["prompt"][0] == {"role": "system", "content": ex.context}
        assert row["chosen"] != row["rejected"]
    has_pair = [ex.human_pair for ex in examples]
    if any(has_pair):
        assert [(r["mipo_human_chosen"], r["mipo_human_rejected"]) for r in rows] == \
            [hp or ("", "") for hp in has_pair]
    else:
        assert "mipo_human_chosen" not in rows[0]


def test_long_profiles_follow_long_prompt_counted_and_nothing_generated_is_lost(tok, tmp_path, caplog):
    rows = [json.loads(line) for line in (FIX / "alignx.jsonl").read_text().splitlines()]
    rows[1]["Demographic Information"] = "The user writes a very long biography. " * 200
    p = jsonl(tmp_path / "ax.jsonl", rows)
    exs = load_examples([cfg(p, "alignx")])
    backend, cache = _preset_backend(), GenerationCache(tmp_path / "c", {})
    with pytest.raises(MIPODataError, match=r"row 1.*longer than the limit of 400"):
        build_preference_rows(exs, build_strategy("drop_context", {}), backend, cache, tok, progress=False,
                              max_prompt_tokens=400)
    assert backend.prompts_generated == 0  # refused before the first generation
    out, stats = build_preference_rows(exs, build_strategy("drop_context", {}), backend, cache, tok,
                                       progress=False, max_prompt_tokens=400, long_prompt="skip")
    assert stats.skipped_long == 1 and len(out) == 2 and backend.prompts_generated == 4
    # the long row truncated instead: its own generations are new, every other one comes from the cache
    out, stats = build_preference_rows(exs, build_strategy("drop_context", {}), backend, cache, tok,
                                       progress=False, max_prompt_tokens=400, long_prompt="truncate_context")
    assert stats.truncated_long == 1 and len(out) == 3
    assert stats.generation.cached == 4 and backend.prompts_generated == 4 + stats.generation.generated
