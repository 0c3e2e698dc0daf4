"""The reasoning presets (gsm8k, svamp, arc, mmlu): rows of the published shapes become plain questions in the
authors' prompts, the gold answer is kept for evaluation only, few-shot exemplars come from a separate file."""

import json
from pathlib import Path

import pytest

from axolotl_mipo.args import MIPODatasetConfig, validate_mipo_block
from axolotl_mipo.data.example import GOLD_ANSWER_KEY, GOLD_KEYS, GOLD_KIND_KEY, QUESTION_KEY
from axolotl_mipo.data.presets import PRESETS
from axolotl_mipo.data.rows import load_examples, split_row
from axolotl_mipo.errors import MIPOConfigError, MIPODataError
from axolotl_mipo.evaluation.answers import is_correct, normalize_gold
from tests.data.presets import FIX, cfg, jsonl

REPO = Path(__file__).resolve().parents[3]
AUTHORS_SHOTS = REPO / "example_configs" / "data" / "gsm8k-fewshot.jsonl"
# verbatim from the authors' scripts (nam630/mutual_information_preference_optimization, eval_scripts/gsm.py and
# arc.py in contrastive_finetune-main.zip at 59d1b5e), written out here so a change of the defaults is seen
MATH = ("You are a helpful math assistant. Solve the following problem step-by-step and give the final answer "
        "after ####.")
ARC_HEAD = ("You are a helpful assistant. The following is a multiple choice question with answer choices. Your "
            "response should show clear and concise reasoning, and you should end with \"The answer is: <X>\", "
            "where X is the correct letter choice.")
ARC_TAIL = "Your response should end with \"The answer is: <X>\", where X is the correct letter choice."

CASES = [
    ("gsm8k_main.jsonl", "gsm8k", "number", ["21", "315", "-7", "25"]),
    ("svamp.json", "svamp", "number", [28.0, 9.0, 2.5]),
    ("arc.jsonl", "arc", "choice", ["B", "C", "A"]),
    ("commonsense_qa.jsonl", "arc", "choice", ["A", "B"]),
    ("openbookqa.jsonl", "arc", "choice", ["C", "B"]),
    ("mmlu.jsonl", "mmlu", "choice", ["C", "A"]),
]


def _prompt(ex):
    assert len(ex.messages) == 1 and ex.messages[0][0] == "user"
    return ex.messages[0][1]


@pytest.mark.parametrize("fixture, fmt, kind, golds", CASES)
def test_rows_of_each_published_shape_become_questions_with_a_gold_answer(fixture, fmt, kind, golds):
    exs = load_examples([cfg(FIX / fixture, fmt)])
    assert [ex.meta[GOLD_ANSWER_KEY] for ex in exs] == golds
    for ex in exs:
        assert ex.context is None and ex.meta[GOLD_KIND_KEY] == kind
        assert ex.meta[QUESTION_KEY] in _prompt(ex)  # partial_prompt finds the question inside the prompt
        normalize_gold(ex.meta[GOLD_ANSWER_KEY], kind)  # every gold the preset keeps is one eval can score
    assert not PRESETS[fmt].context and not MIPODatasetConfig(path="x", format=fmt).has_context


def test_the_default_prompts_are_the_authors():
    gsm = load_examples([cfg(FIX / "gsm8k_main.jsonl", "gsm8k")])[0]
    q = gsm.meta[QUESTION_KEY]
    assert q.startswith("Mia bakes 24 cookies.") and _prompt(gsm) == MATH + "\n\nNew question: " + q
    svamp = load_examples([cfg(FIX / "svamp.json", "svamp")])[0]
    # Body and Question joined as the hub's question_concat is
    assert _prompt(svamp) == MATH + "\n\nNew question: Each pack of markers costs 7 dollars. Sam buys 4 packs " \
        "How much does Sam pay?"
    digit = load_examples([cfg(FIX / "arc.jsonl", "arc")])[1]
    # arc.py: the options relabelled A, B, ... by position, whatever the row's own labels (here 1-4)
    assert _prompt(digit) == (ARC_HEAD + "\n\nA student pushes a box across the floor. The box slows down and stops. "
                              "Which force stops the box?\n\nA: gravity\nB: magnetism\nC: friction\nD: buoyancy\n\n"
                              + ARC_TAIL)
    assert digit.meta[GOLD_ANSWER_KEY] == "C"  # answerKey "3" is the third option, shown as C
    obqa = load_examples([cfg(FIX / "openbookqa.jsonl", "arc")])[0]
    assert "\n\nA magnet will stick to\n\nA: a wooden spoon\n" in _prompt(obqa)  # question_stem
    mmlu = load_examples([cfg(FIX / "mmlu.jsonl", "mmlu")])[0]
    assert _prompt(mmlu).startswith(ARC_HEAD) and "\nC: coulomb\nD: ohm\n\n" + ARC_TAIL in _prompt(mmlu)


def test_the_authors_eight_shot_prompt_is_rebuilt_from_the_few_shot_file():
    ex = load_examples([cfg(FIX / "gsm8k_main.jsonl", "gsm8k", few_shot_path=str(AUTHORS_SHOTS))])[0]
    shots = [json.loads(line) for line in AUTHORS_SHOTS.read_text().splitlines()]
    # gsm.py, dataset(): the exemplars, the instruction, then "\n\nNew question: " and the question
    examples = "\n\n".join(f"Example {i + 1}:\n" + f"Question: {x['question']}\nAnswer: "
                           f"{x['answer'].split('####')[0].strip()}\n#### {x['answer'].split('####')[1].strip()}"
                           for i, x in enumerate(shots))
    assert _prompt(ex) == MATH + "\n\n" + examples + "\n\nNew question: " + ex.meta[QUESTION_KEY]
    assert "Example 1:\nQuestion: There are 15 trees in the grove." in _prompt(ex)
    assert "So the answer is 6.\n#### 6\n\nExample 2:" in _prompt(ex) and len(shots) == 8


def test_few_shot_exemplars_of_each_shape(tmp_path):
    gsm = jsonl(tmp_path / "gsm_shots.jsonl", [{"question": "Ann has 2 pens and buys 3. How many pens?",
                                                "answer": "2 + 3 = <<2+3=5>>5 pens.\n#### 5"}])
    svamp = load_examples([cfg(FIX / "svamp.json", "svamp", few_shot_path=str(gsm))])[2]
    # GSM8K exemplars for SVAMP, as the authors do; calculator annotations are left out
    assert "Example 1:\nQuestion: Ann has 2 pens and buys 3. How many pens?\nAnswer: 2 + 3 = 5 pens.\n#### 5\n\n" \
        "New question: A rope" in _prompt(svamp)
    own = load_examples([cfg(FIX / "gsm8k_main.jsonl", "gsm8k", few_shot_path=str(FIX / "svamp.json"))])[0]
    assert "Question: Rita had 15 stickers. She gave 6 stickers to her friend How many stickers does Rita have " \
        "left?\nAnswer: ( 15.0 - 6.0 ) = 9\n#### 9" in _prompt(own)
    arc_shots = jsonl(tmp_path / "arc_shots.jsonl", [json.loads((FIX / "commonsense_qa.jsonl").read_text()
                                                                .splitlines()[1])])
    arc = load_examples([cfg(FIX / "arc.jsonl", "arc", few_shot_path=str(arc_shots))])[0]
    assert _prompt(arc).startswith(ARC_HEAD + "\n\nExample 1:\nWhat do people usually do when they feel tired at "
                                   "night?\n\nA: run\nB: sleep\nC: shout\nD: swim\nE: paint\n\nThe answer is: B\n\n"
                                   "Which form of energy")
    # the exemplar's answer is shown, the row's own never is
    assert _prompt(arc).count("The answer is: ") == 3 and "The answer is: B" in _prompt(arc)


def test_a_few_shot_file_that_is_the_data_or_shares_a_question_is_refused(tmp_path):
    with pytest.raises(MIPODataError, match=r"few_shot_path.*is the dataset's own data.*separate file"):
        load_examples([cfg(FIX / "gsm8k_main.jsonl", "gsm8k", few_shot_path=str(FIX / "gsm8k_main.jsonl"))])
    with pytest.raises(MIPODataError, match=r"own data"):
        load_examples([cfg(FIX, "gsm8k", data_files=["gsm8k_main.jsonl"], few_shot_path=str(FIX / "mmlu.jsonl"))])
    rows = [json.loads(line) for line in (FIX / "gsm8k_main.jsonl").read_text().splitlines()]
    shots = jsonl(tmp_path / "shots.jsonl", [{**rows[2], "question": "  " + rows[2]["question"].upper()}])
    with pytest.raises(MIPODataError, match=r"row 2, field 'question'.*exemplar 1 of few_shot_path.*remove it"):
        load_examples([cfg(FIX / "gsm8k_main.jsonl", "gsm8k", few_shot_path=str(shots))])
    with pytest.raises(MIPODataError, match=r"field 'prompt_template'.*no \{examples\}"):
        load_examples([cfg(FIX / "gsm8k_main.jsonl", "gsm8k", prompt_template="Q: {question}",
                           few_shot_path=str(AUTHORS_SHOTS))])
    bad = jsonl(tmp_path / "bad_shots.jsonl", [{"question": "q", "answer": "no final answer"}])
    with pytest.raises(MIPODataError, match=r"bad_shots.jsonl.*row 0, field 'answer'.*####"):
        load_examples([cfg(FIX / "gsm8k_main.jsonl", "gsm8k", few_shot_path=str(bad))])


def test_prompt_template_replaces_the_authors_and_is_checked():
    ex = load_examples([cfg(FIX / "mmlu.jsonl", "mmlu", prompt_template="{question}\n{choices}\nAnswer: {{X}}")])[0]
    assert _prompt(ex) == ("What is the SI unit of electric charge?\nA: volt\nB: ampere\nC: coulomb\nD: ohm\n"
                           "Answer: {X}")
    for fmt, template, needle in [("arc", "{question}", r"must contain \{choices\}"),
                                  ("gsm8k", "{question} {choices}", r"unknown placeholder \{choices\}"),
                                  ("svamp", "no question", r"must contain \{question\}"),
                                  ("mmlu", "{question", "not a valid template")]:
        with pytest.raises(ValueError, match=r"prompt_template: (is |has an )?" + needle):
            MIPODatasetConfig(path="x", format=fmt, prompt_template=template)
    with pytest.raises(ValueError, match=r"few_shot_path: is an option of .*gsm8k.*not of lamp"):
        MIPODatasetConfig(path="x", format="lamp", few_shot_path="s.jsonl")


def test_the_gold_answer_never_reaches_a_prompt():
    rows = [json.loads(line) for line in (FIX / "arc.jsonl").read_text().splitlines()]
    c = cfg(FIX / "arc.jsonl", "arc")
    rekeyed = [split_row({**r, "answerKey": r["choices"]["label"][0]}, c, i, "d") for i, r in enumerate(rows)]
    original = [split_row(r, c, i, "d") for i, r in enumerate(rows)]
    assert [e.messages for e in rekeyed] == [e.messages for e in original]  # the prompt does not depend on it
    assert [e.meta[GOLD_ANSWER_KEY] for e in rekeyed] == ["A", "A", "A"]
    for ex, row in zip(load_examples([cfg(FIX / "gsm8k_main.jsonl", "gsm8k")]),
                       map(json.loads, (FIX / "gsm8k_main.jsonl").read_text().splitlines())):
        worked, final = row["answer"].split("####")
        assert "####" + final not in _prompt(ex) and worked.strip().splitlines()[0] not in _prompt(ex)


@pytest.mark.parametrize("strategy", ["mismatched_prompt", "partial_prompt"])
def test_no_gold_answer_in_the_generated_pairs_or_the_dpo_rows(tmp_path, tiny_model_and_tokenizer, strategy):
    from axolotl_mipo.generation.cache import GenerationCache
    from axolotl_mipo.pairing import get_strategy
    from axolotl_mipo.pipeline.builder import build_preference_rows
    from axolotl_mipo.testing.fake_backend import FakeBackend

    # golds no text would hold by chance, so a substring check is meaningful
    data = jsonl(tmp_path / "gsm.jsonl", [
        {"question": f"Box {i} holds {i + 3} red balls. It holds {i + 5} blue balls. How many balls in all?",
         "answer": f"{i + 3} + {i + 5} makes the count.\n#### {987650 + i}"} for i in range(6)])
    exs = load_examples([cfg(data, "gsm8k", few_shot_path=str(AUTHORS_SHOTS))])
    backend = FakeBackend()
    out, _ = build_preference_rows(exs, get_strategy(strategy), backend, GenerationCache(tmp_path / "c", {}),
                                   tiny_model_and_tokenizer[1], progress=False)
    assert out
    text = json.dumps(out) + json.dumps([p for b in backend.batches for p in b])
    assert not any(str(987650 + i) in text or "makes the count" in text for i in range(6))
    assert all(not set(GOLD_KEYS) & set(json.loads(r["mipo_meta"])) for r in out)
    if strategy == "partial_prompt":
        # only the question is shortened: every rejected prompt keeps the instruction and all eight exemplars
        prompts = [p for b in backend.batches for p in b]
        assert len(prompts) == 12 and all(p.count("Example ") == 8 and MATH in p for p in prompts)


def test_reasoning_presets_take_the_prompt_only_strategies_and_refuse_context_ones():
    for fmt in ("gsm8k", "svamp", "arc", "mmlu"):
        for strategy in ("mismatched_prompt", "partial_prompt"):
            validate_mipo_block({"datasets": [{"path": "x", "format": fmt}], "strategy": strategy})
        with pytest.raises(MIPOConfigError, match=rf"drop_context needs a user context.*'{fmt}' \(no context\)"):
            validate_mipo_block({"datasets": [{"path": "x", "format": fmt}]})
    with pytest.raises(MIPOConfigError, match="perce"):
        validate_mipo_block({"datasets": [{"path": "x", "format": "arc"}], "strategy": "mismatched_prompt",
                             "loss": "perce"})
    with pytest.raises(MIPOConfigError, match="preference_summary"):
        validate_mipo_block({"datasets": [{"path": "x", "format": "gsm8k"}], "strategy": "mismatched_prompt",
                             "context_builder": "preference_summary"})
    with pytest.raises(MIPOConfigError, match=r"mismatched_prompt is the reasoning variant"):
        validate_mipo_block({"datasets": [{"path": "x", "format": "lamp"}], "strategy": "mismatched_prompt"})


def _bad(tmp_path, fmt, row, suffix=".jsonl"):
    path = tmp_path / f"bad{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps([row]))
    else:
        jsonl(path, [row])
    return lambda: load_examples([cfg(path, fmt)])


ARC_ROW = {"question": "Q?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "B"}


@pytest.mark.parametrize("fmt, row, needle", [
    ("gsm8k", {"question": "How many?", "answer": "It is 4."}, r"field 'answer'.*no '#### N'"),
    ("gsm8k", {"question": "How many?", "answer": "It is four.\n#### four"}, r"field 'answer'.*'four' is not a num"),
    ("gsm8k", {"answer": "#### 4"}, r"field 'question'.*missing"),
    ("svamp", {"Body": "Tom has 3.", "Question": "How many?", "Answer": "three"}, r"field 'Answer'.*not a number"),
    ("svamp", {"Body": "Tom has 3.", "Question": "How many?"}, r"field 'Answer'.*missing"),
    ("svamp", {"Body": "Tom has 3.", "Answer": 3.0}, r"field 'Question'.*missing"),
    ("arc", {**ARC_ROW, "answerKey": "C"}, r"field 'answerKey'.*'C' is not one of the choice labels"),
    ("arc", {**ARC_ROW, "answerKey": ""}, r"field 'answerKey'.*missing or empty"),
    ("arc", {**ARC_ROW, "choices": ["x", "y"]}, r"field 'choices'.*must be \{text"),
    ("arc", {**ARC_ROW, "choices": {"text": ["x"] * 6, "label": list("ABCDEF")}}, r"field 'choices'.*6 choices"),
    ("mmlu", {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 4}, r"field 'answer'.*out of range"),
    ("mmlu", {"question": "Q?", "choices": ["a", "b"], "answer": "C"}, r"field 'answer'.*out of range"),
    ("mmlu", {"question": "Q?", "choices": ["a", "", "c"], "answer": 0}, r"field 'choices'.*choice B is empty"),
    ("mmlu", {"question": "Q?", "choices": "a b c", "answer": 0}, r"field 'choices'.*must be a list"),
])
def test_bad_rows_name_the_row_and_the_field(tmp_path, fmt, row, needle):
    with pytest.raises(MIPODataError, match=r"bad.jsonl'?, row 0, " + needle):
        _bad(tmp_path, fmt, row)()


def test_other_forms_of_the_published_shapes(tmp_path):
    # the original ARC / CommonsenseQA / OpenBookQA JSONL nests the question and its choices
    nested = {"id": "x", "question": {"stem": "Which is a metal?", "choices": [
        {"label": "1", "text": "wood"}, {"label": "2", "text": "copper"}]}, "answerKey": "2"}
    ex = _bad(tmp_path, "arc", nested)()[0]
    assert ex.meta[GOLD_ANSWER_KEY] == "B" and "Which is a metal?\n\nA: wood\nB: copper" in _prompt(ex)
    concat = {"ID": "c", "Body": "ignored", "Question": "ignored", "question_concat": "Tom has 3 cats. How many?",
              "Answer": "3"}
    ex = _bad(tmp_path, "svamp", concat, ".json")()[0]
    assert ex.meta[QUESTION_KEY] == "Tom has 3 cats. How many?" and ex.meta[GOLD_ANSWER_KEY] == "3"
    for answer, letter in [("2", "C"), ("b", "B")]:
        ex = _bad(tmp_path, "mmlu", {"question": "Q?", "choices": ["a", "b", "c"], "answer": answer})()[0]
        assert ex.meta[GOLD_ANSWER_KEY] == letter
    assert is_correct("#### -7", load_examples([cfg(FIX / "gsm8k_main.jsonl", "gsm8k")])[2].meta[GOLD_ANSWER_KEY],
                      "number")


def test_bad_rows_are_counted_and_skipped_under_on_bad_row_skip(tmp_path):
    rows = [json.loads(line) for line in (FIX / "gsm8k_main.jsonl").read_text().splitlines()]
    path = jsonl(tmp_path / "mixed.jsonl", rows[:2] + [{"question": "q", "answer": "no marker"}])
    from axolotl_mipo.data.rows import LoadReport

    report = LoadReport()
    assert len(load_examples([cfg(path, "gsm8k")], on_bad_row="skip", report=report)) == 2
    assert sum(report.skipped.values()) == 1
