"""partial_prompt (the "incomplete prompt" variant), and how reasoning pairing treats identical short answers
and gold answers (docs/reasoning.md, "Pairing strategies for reasoning")."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axolotl_mipo.data.example import GOLD_ANSWER_KEY, GOLD_KIND_KEY, QUESTION_KEY, Example
from axolotl_mipo.errors import MIPODataError, MIPOError, MIPOStrategyError
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pairing import GenRequest, Pair, PairingStrategy, available_strategies, build_strategy, get_strategy
from axolotl_mipo.pairing.base import request_messages
from axolotl_mipo.pairing.prompts import PartialPrompt, drop_sentence, sentence_spans
from axolotl_mipo.pipeline.builder import build_preference_rows
from axolotl_mipo.testing.fake_backend import FakeBackend
from axolotl_mipo.testing.pairing_checks import check_strategy_invariants, examples_strategy, fake_responses

PROBLEM = "Tom has $2.50 in coins. He buys 3 apples at 0.5 dollars each! His sister gives him 1 more. How much is left?"


def _rows(n, sentences=3, gold=True):
    out = []
    for i in range(n):
        parts = [f"Row {i} has {i + 2} apples.", "She eats one.", f"Then {i} more arrive.", "How many now?"]
        q = " ".join(parts[:sentences - 1] + parts[-1:]) if sentences > 1 else "How many apples are there?"
        meta = {GOLD_ANSWER_KEY: str(987650 + i), GOLD_KIND_KEY: "number"} if gold else {}
        out.append(Example(index=10 + i, messages=(("user", q),), source="t", meta=meta))
    return out


@pytest.mark.fast
def test_registered_beside_mismatched_prompt():
    assert {"mismatched_prompt", "partial_prompt"} <= set(available_strategies())
    assert isinstance(get_strategy("partial_prompt"), PartialPrompt)
    with pytest.raises(MIPOStrategyError, match="single_sentence"):
        get_strategy("partial_prompt", single_sentence="drop")


@pytest.mark.fast
def test_sentences_do_not_break_decimals_and_keep_the_text_around_them():
    spans = sentence_spans(PROBLEM)
    assert [PROBLEM[a:b].strip() for a, b in spans] == [
        "Tom has $2.50 in coins.", "He buys 3 apples at 0.5 dollars each!", "His sister gives him 1 more.",
        "How much is left?"]
    assert sentence_spans("How many?") == [(0, 9)]
    assert [b for _, b in sentence_spans("Wait. ... Why?")] == [10, 14]  # "..." alone joins the sentence before


@pytest.mark.fast
def test_the_last_sentence_the_question_is_never_removed_and_the_choice_is_seeded():
    removed = set()
    for seed in range(60):
        short, k, n = drop_sentence(PROBLEM, seed)
        assert n == 4 and 0 <= k < 3 and short.endswith("How much is left?")
        spans = sentence_spans(PROBLEM)
        assert short == (PROBLEM[:spans[k][0]] + PROBLEM[spans[k][1]:]).strip()
        assert drop_sentence(PROBLEM, seed) == (short, k, n)  # a function of (seed, question)
        removed.add(k)
    assert removed == {0, 1, 2}  # every premise can be the one removed
    assert drop_sentence("How many apples are there?", 0) is None


@pytest.mark.fast
def test_pairs_chosen_full_rejected_partial_stored_under_the_full_question():
    rows = _rows(5)
    s = get_strategy("partial_prompt")
    pairs = check_strategy_invariants(s, rows, seed=3)
    assert len(pairs) == 5
    for p in pairs:
        ex = rows[p.row]
        assert p.prompt_context is None and p.chosen == GenRequest(p.row, None)
        assert p.rejected.row == p.row and p.rejected.context is None
        full, short = ex.messages[0][1], request_messages(ex, p.rejected)[0][1]
        assert short == drop_sentence(full, 3)[0] and len(short) < len(full)
        assert p.meta == {"removed_sentence": drop_sentence(full, 3)[1], "sentences": 3}


@pytest.mark.fast
def test_one_sentence_questions_are_skipped_and_counted_or_refused():
    rows = _rows(4) + _rows(2, sentences=1)
    s = get_strategy("partial_prompt")
    pairs = check_strategy_invariants(s, rows, seed=0)
    assert sorted(p.row for p in pairs) == [0, 1, 2, 3] and s.skipped == 2
    strict = get_strategy("partial_prompt", single_sentence="raise")
    with pytest.raises(MIPODataError, match=r"dataset 't', row 10, field 'prompt'.*single sentence \(2 of 6 rows"):
        strict.validate(rows[4:] + rows[:4])  # the first one-sentence row is named (its Example.index)
    with pytest.raises(MIPODataError, match="none can be paired"):
        s.validate(_rows(3, sentences=1))


@pytest.mark.fast
def test_only_the_question_inside_a_template_is_shortened():
    q = "Ann has 4 pens. She loses 1. How many pens?"
    exemplar = "Example: Bob has 2 cats. He gets 1. How many cats? #### 3"
    prompt = f"Solve step by step. Give the answer after ####.\n\n{exemplar}\n\nNew question: {q}"
    ex = Example(0, (("system", "Be brief."), ("user", prompt)), meta={QUESTION_KEY: q})
    other = Example(1, (("user", "Cy has 5. He gives 2. How many?"),))
    pairs = check_strategy_invariants(get_strategy("partial_prompt"), [ex, other], seed=1)
    msgs = request_messages(ex, pairs[0].rejected)
    assert msgs[0] == ("system", "Be brief.")
    head = f"Solve step by step. Give the answer after ####.\n\n{exemplar}\n\nNew question: "
    assert msgs[1][1].startswith(head) and msgs[1][1][len(head):] == drop_sentence(q, 1)[0]


@settings(max_examples=60, deadline=None)
@given(examples_strategy(context="never"), st.integers(0, 2**32 - 1))
def test_invariants_on_any_rows(examples, seed):
    s = get_strategy("partial_prompt")
    try:
        s.validate(examples)
    except MIPOError:
        return
    check_strategy_invariants(s, examples, seed)


@pytest.mark.fast
def test_inside_a_mixture_the_partial_prompts_travel_with_their_rows():
    rows = _rows(12)
    mix = build_strategy([{"name": "partial_prompt", "weight": 1}, {"name": "mismatched_prompt", "weight": 1}])
    pairs = check_strategy_invariants(mix, rows, seed=5)
    partial = [p for p in pairs if p.meta["strategy"] == "partial_prompt"]
    assert partial and all(p.rejected.query == drop_sentence(rows[p.row].messages[0][1], 5)[0] for p in partial)


# -- through the dataset builder ---------------------------------------------------------------------------


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


def test_builder_generates_the_partial_prompt_and_drops_identical_short_answers(tok, tmp_path):
    rows = _rows(6, sentences=4)

    # a model that answers with a bare number: the full question and most partial ones give the same text
    def respond(prompt):
        return "5" if "She eats one." in prompt or "Row 0 " in prompt else "4"

    backend = FakeBackend(respond)
    out, stats = build_preference_rows(rows, get_strategy("partial_prompt"), backend, GenerationCache(tmp_path, {}),
                                       tok, progress=False)
    prompts = [p for b in backend.batches for p in b]
    assert len(set(prompts)) == len(prompts) == 12  # each row's question, full and shortened
    kept_rows = {r["mipo_row"] for r in out}
    # rows whose removed sentence was "She eats one." get "4" vs "5"; the others identical -> dropped, counted
    differ = {ex.index for ex in rows if ex.index != 10 and "She eats one." not in drop_sentence(
        ex.messages[0][1], 42)[0]}
    assert kept_rows == differ and stats.dropped_identical == 6 - len(differ)
    for r in out:
        assert r["prompt"] == [{"role": "user", "content": rows[r["mipo_row"] - 10].messages[0][1]}]
        assert r["chosen"] == [{"role": "assistant", "content": "5"}]


def test_mismatched_prompt_never_pairs_identical_short_answers_and_refuses_a_majority():
    """With bare-number answers many rows answer the same text; the derangement pairs each row with a row whose
    answer differs (no row is dropped), and refuses when one text is more than half of the answers."""
    rows = _rows(10)
    s = get_strategy("mismatched_prompt")
    reqs = s.requests(rows, 0)

    def answers(texts):
        return {r: texts[r.row] for r in reqs}

    texts = ["4"] * 5 + ["5", "6", "7", "5", "8"]  # half of the rows say "4"
    pairs = s.pair(rows, answers(texts), seed=0)
    assert len(pairs) == 10
    assert all(texts[p.chosen.row] != texts[p.rejected.row] for p in pairs)
    with pytest.raises(MIPOStrategyError, match=r"response of row 10 .*'4'.* generated for 6 of 10 rows"):
        s.pair(rows, answers(["4"] * 6 + ["5", "6", "7", "8"]), seed=0)


class _LeakyStrategy(PairingStrategy):
    """A careless strategy that copies every row's meta (gold answer included) into its pairs' meta."""

    name = "leaky_test"
    needs_context = False
    generations_per_row = 1

    def requests(self, examples, seed):
        return [GenRequest(i) for i in range(len(examples))]

    def pair(self, examples, responses, seed):
        n = len(examples)
        return [Pair(i, None, GenRequest(i), GenRequest((i + 1) % n), dict(examples[i].meta)) for i in range(n)]


@pytest.mark.parametrize("strategy", ["partial_prompt", "mismatched_prompt", "leaky"])
def test_the_gold_answer_never_reaches_a_prompt_or_a_dpo_row(tok, tmp_path, strategy):
    rows = _rows(6)
    backend = FakeBackend()
    s = _LeakyStrategy() if strategy == "leaky" else get_strategy(strategy)
    out, _ = build_preference_rows(rows, s, backend, GenerationCache(tmp_path, {}), tok, progress=False)
    assert out
    text = json.dumps(out) + json.dumps([p for b in backend.batches for p in b])
    for ex in rows:
        assert ex.meta[GOLD_ANSWER_KEY] not in text
    assert "gold" not in text
    if strategy == "leaky":
        assert all("gold_answer" not in json.loads(r["mipo_meta"]) for r in out)


@pytest.mark.fast
def test_fake_responses_tell_partial_requests_apart():
    rows = _rows(2)
    reqs = get_strategy("partial_prompt").requests(rows, 0)
    assert len(set(fake_responses(reqs, rows).values())) == 4


@pytest.mark.fast
def test_the_config_asks_for_prompt_rows():
    from axolotl_mipo.args import validate_mipo_block

    with pytest.raises(Exception, match=r"partial_prompt is the reasoning variant \(prompt_only.*needs format: prompt"):
        validate_mipo_block({"datasets": [{"path": "x"}], "strategy": "partial_prompt"})
    cfg = validate_mipo_block({"datasets": [{"path": "x", "format": "prompt"}], "strategy": "partial_prompt",
                               "strategy_kwargs": {"single_sentence": "raise"}})
    assert cfg.strategy == "partial_prompt"
