"""Dataset presets: the published schemas (fixtures written by hand in that shape) -> context, query, pair."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from axolotl_mipo.args import MIPODatasetConfig, validate_mipo_block
from axolotl_mipo.data.rows import LoadReport, load_examples
from axolotl_mipo.errors import MIPOConfigError, MIPODataError
from axolotl_mipo.generation.base import GenerationResult
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pairing import build_strategy
from axolotl_mipo.pipeline.builder import build_preference_rows
from axolotl_mipo.pipeline.summary import summarize_contexts
from axolotl_mipo.testing.fake_backend import FakeBackend

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "presets"


def cfg(path, fmt, **kw):
    return MIPODatasetConfig(path=str(path), format=fmt, **kw)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------ AlignX


def test_alignx_maps_the_card_fields():
    exs = load_examples([cfg(FIX / "alignx.jsonl", "alignx")])
    assert len(exs) == 3
    ex = exs[0]
    assert ex.messages == (("user", "What should I cook tonight?"),)
    assert ex.human_pair == ("A quick vegan stir-fry with tofu.", "A steak, medium rare.")
    assert "29-year-old vegan" in ex.context
    assert 'on "Best protein sources?": Lentils and tofu, always.' in ex.context
    assert 'preferred "Chickpea curry." over "Beef burger."' in ex.context
    assert "0.5" not in ex.context  # the 90-value direction vectors are not rendered
    # a row with no past pairs / no comments renders what it has
    assert "Responses the user preferred" not in exs[1].context
    assert "Comments the user wrote" not in exs[2].context and "The Ramones" in exs[2].context


def test_alignx_parts_and_item_count_are_chosen_by_the_user():
    [ex] = load_examples([cfg(FIX / "alignx.jsonl", "alignx", context_parts=["comments"], max_items=1,
                              max_rows=1)])
    assert ex.context == 'Comments the user wrote:\n- on "Best protein sources?": Lentils and tofu, always.'
    # the row whose only chosen part is empty is an error naming the context, or a counted skip
    with pytest.raises(MIPODataError, match=r"row 2.*'context'.*empty"):
        load_examples([cfg(FIX / "alignx.jsonl", "alignx", context_parts=["comments"])])
    rep = LoadReport()
    exs = load_examples([cfg(FIX / "alignx.jsonl", "alignx", context_parts=["comments"])], on_bad_row="skip",
                        report=rep)
    assert len(exs) == 2 and sum(rep.skipped.values()) == 1


def test_alignx_parquet_is_read_by_record_batch(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (FIX / "alignx.jsonl").read_text().splitlines()]
    for r in rows:  # parquet needs one struct type per list; the hub's parquet carries the same keys everywhere
        for p in r["Pair-wise Comparative Feedback"]:
            p.setdefault("Preference Direction", [0.5] * 90)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train-00000.parquet")
    a = load_examples([cfg(tmp_path / "train-00000.parquet", "alignx")])
    b = load_examples([cfg(FIX / "alignx.jsonl", "alignx")])
    assert [(e.context, e.messages, e.human_pair) for e in a] == [(e.context, e.messages, e.human_pair) for e in b]


def test_alignx_hub_laid_out_folder_goes_through_datasets(tmp_path):
    # datasets stores the pair lists (whose item keys differ between rows) as JSON text: read the same
    shutil.copy(FIX / "alignx.jsonl", tmp_path / "train.jsonl")
    (tmp_path / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                        "    path: train.jsonl\n---\n")
    a = load_examples([cfg(tmp_path, "alignx")])
    b = load_examples([cfg(FIX / "alignx.jsonl", "alignx")])
    assert [(e.context, e.messages, e.human_pair) for e in a] == [(e.context, e.messages, e.human_pair) for e in b]


# -------------------------------------------------------------------- LaMP


def test_lamp_outputs_file_is_joined_by_id_and_items_are_picked_by_date():
    exs = load_examples([cfg(FIX / "lamp_questions.json", "lamp", outputs_file=str(FIX / "lamp_outputs.json"),
                             item_order="newest", max_items=3)])
    ex = exs[0]
    assert ex.meta["reference"] == "Council backs more bike lanes"
    assert ex.messages[0][1].startswith("Generate a headline")
    lines = ex.context.splitlines()[1:]
    # newest first among dated items; the undated one only after every dated one
    assert [ln.split("title: ")[1].split(";")[0] for ln in lines] == \
        ["Why I bike to work", "Trams return downtown", "Parks for everyone"]
    assert "4002" not in ex.context  # item ids are not profile text
    oldest = load_examples([cfg(FIX / "lamp_questions.json", "lamp", item_order="oldest", max_items=4)])[0]
    assert [ln.split("title: ")[1].split(";")[0] for ln in oldest.context.splitlines()[1:]] == \
        ["Parks for everyone", "Trams return downtown", "Why I bike to work", "Buses are back"]
    last = load_examples([cfg(FIX / "lamp_questions.json", "lamp", item_order="last", max_items=1)])[0]
    assert "Trams return downtown" in last.context and "Parks" not in last.context
    assert "reference" not in load_examples([cfg(FIX / "lamp_questions.json", "lamp")])[0].meta


def test_longlamp_renders_every_text_field_of_its_items():
    ex = load_examples([cfg(FIX / "longlamp_product_review.jsonl", "lamp")])[0]
    for piece in ("reviewText: Great blender, loud though.", "summary: Loud but good", "overall: 4.0",
                  "description: Headphones"):
        assert piece in ex.context
    assert ex.meta["reference"] == "Best shoes I've owned." and ex.user_id == "A1"


def test_lamp_question_without_gold_output_names_the_id(tmp_path):
    q = json.loads((FIX / "lamp_questions.json").read_text())
    q.append({"id": "999", "input": "x", "profile": [{"text": "t"}]})
    (tmp_path / "q.json").write_text(json.dumps(q))
    with pytest.raises(MIPODataError, match=r"row 2.*'id'.*999.*no gold output"):
        load_examples([cfg(tmp_path / "q.json", "lamp", outputs_file=str(FIX / "lamp_outputs.json"))])


# ------------------------------------------------------------------- PRISM


def test_prism_joins_survey_and_conversations():
    exs = load_examples([cfg(FIX / "prism", "prism")])
    assert [e.user_id for e in exs] == ["user0", "user1", "user0"]
    ex = exs[0]
    assert ex.messages == (("user", "Is coffee bad for me?"),)
    assert "self description: I value honesty" in ex.context and "system string: Be direct" in ex.context
    assert "factuality=100" in ex.context
    # best vs worst score of the FIRST turn (the later turn's response is never used)
    assert ex.human_pair == ("Moderate coffee is fine [source].", "Coffee is evil.")
    # a tie at the top goes to the response the user continued with (if_chosen)
    assert exs[1].human_pair == ("A long joke.", "Dry facts.")
    # all first-turn scores equal: no pair, the row is still usable for generation
    assert exs[2].human_pair is None and exs[2].context == ex.context
    first = load_examples([cfg(FIX / "prism", "prism", rejected_response="first")])[0]
    assert first.human_pair == ("Moderate coffee is fine [source].", "Coffee is evil.")
    demo = load_examples([cfg(FIX / "prism", "prism", context_parts=["age", "location"])])[0]
    assert demo.context == "age: 25-34 years old\nlocation: birth_country=Kenya, reside_country=United Kingdom"


def test_prism_folder_laid_out_like_the_hub_goes_through_datasets():
    direct = load_examples([cfg(FIX / "prism", "prism")])
    hub = load_examples([cfg(FIX / "prism_hub", "prism")])  # README configs: survey/conversations .jsonl
    assert [(e.context, e.messages, e.human_pair, e.user_id) for e in hub] == \
        [(e.context, e.messages, e.human_pair, e.user_id) for e in direct]


def test_prism_bad_rows(tmp_path):
    shutil.copytree(FIX / "prism", tmp_path / "p")
    convs = [json.loads(line) for line in (tmp_path / "p" / "conversations.jsonl").read_text().splitlines()]
    convs[1]["user_id"] = "nobody"
    del convs[2]["opening_prompt"]
    _jsonl(tmp_path / "p" / "conversations.jsonl", convs)
    with pytest.raises(MIPODataError, match=r"conversations.jsonl'.*row 1.*'user_id'.*'nobody'.*survey"):
        load_examples([cfg(tmp_path / "p", "prism")])
    rep = LoadReport()
    exs = load_examples([cfg(tmp_path / "p", "prism")], on_bad_row="skip", report=rep)
    assert len(exs) == 1 and rep.skipped == {"no row in the survey": 1, "missing": 1}
    with pytest.raises(MIPODataError, match=r"field 'religion'"):
        load_examples([cfg(FIX / "prism", "prism", context_parts=["religion"])])


# ----------------------------------------------------- Community Alignment


def test_community_alignment_demographics_pair_and_history():
    exs = load_examples([cfg(FIX / "community_alignment.csv", "community_alignment")])
    ex = exs[0]
    assert ex.messages == (("user", "How do I save money?"),) and ex.user_id == "ann1"
    assert ex.context.splitlines() == ["age: 18-34", "gender: Woman", "education level: Bachelor",
                                       "political: Liberal", "ethnicity: Asian", "country: India"]
    assert ex.human_pair[0] == "Cut coffee, invest the rest."
    assert ex.human_pair[1] in ("Budget monthly.", "Ask your parents.", "Buy lottery tickets.")
    assert exs[3].human_pair is None and exs[3].context == "age: 35-45\ncountry: France"  # no preference given
    first = load_examples([cfg(FIX / "community_alignment.csv", "community_alignment", rejected_response="first")])
    assert first[0].human_pair == ("Cut coffee, invest the rest.", "Budget monthly.")
    assert first[2].human_pair == ("Budget monthly.", "Cut coffee, invest the rest.")
    hist = load_examples([cfg(FIX / "community_alignment.csv", "community_alignment", max_items=5)])
    # the same annotator's choice on their OTHER conversation, never this one's
    assert 'to "Plan a trip to Goa" they preferred: "Beach, then food, then rest."' in hist[0].context
    assert "How do I save money" not in hist[0].context
    assert "other conversations" not in hist[2].context  # ann2 has no other conversation


def test_community_alignment_bad_preferred_letter(tmp_path):
    text = (FIX / "community_alignment.csv").read_text().replace("response_b,B was practical", "response_z,x")
    (tmp_path / "ca.csv").write_text(text)
    with pytest.raises(MIPODataError, match=r"ca.csv'.*row 0.*first_turn_preferred_response"):
        load_examples([cfg(tmp_path / "ca.csv", "community_alignment")])


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
    p = _jsonl(tmp_path / "ax.jsonl", rows)
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
    p = _jsonl(tmp_path / "ax.jsonl", rows)
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


def test_fast_control_character_removal_matches_clean_text():
    from axolotl_mipo.data.files import CONTROL
    from axolotl_mipo.data.rows import clean_text

    cases = ["plain text", "tab\tand\nnewlines\r\n kept", "nul\x00 bell\x07 esc\x1b[31m del\x7f",
             "c1\x85\x9f and é ü", "lone \ud800 surrogate", "", "\x00\x01\x02"]
    for text in cases:
        assert clean_text(text) == CONTROL.sub("", text), repr(text)
