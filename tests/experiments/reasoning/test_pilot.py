"""The reasoning pilot's prompts, scoring, position-bias baseline, budget and resuming (no model: a fake backend)."""

import json

import pytest

from axolotl_mipo.generation.base import GenerationResult
from experiments.reasoning import pilot
from experiments.tasks.reasoning import choice_rows, gold_number, numeric_rows

pytestmark = pytest.mark.fast


def test_the_pilot_scores_with_the_library_extractor():
    # the study scores with axolotl_mipo.evaluation.answers; a local copy could drift from it
    from axolotl_mipo.evaluation import answers
    assert pilot.extract_answer is answers.extract_answer and pilot.choice_letter is answers.choice_letter


def test_prompts_are_the_authors():
    q = "Anna has 3 apples. How many?"
    eight = pilot.gsm_prompt(q, 8)
    assert eight.startswith(pilot.GSM_INSTRUCTION + "\n\nExample 1:\nQuestion: There are 15 trees")
    assert eight.count("Example ") == 8 and eight.endswith("answer is 8.\n#### 8\n\nNew question: " + q)
    assert pilot.gsm_prompt(q, 0) == pilot.GSM_INSTRUCTION + "\n\nNew question: " + q
    row = choice_rows(1, seed=0, labels="digit")[0]
    p = pilot.arc_prompt(row)
    assert p.startswith(pilot.ARC_HEAD + row["question"] + "\n\nA: ") and p.endswith(pilot.ARC_TAIL)
    assert pilot.gold_letter(row) == "ABCD"[int(row["answerKey"]) - 1]


class _Fake:
    """Answers a numeric question right when its gold answer is even, and counts the prompts it is sent."""

    batch_size = 3
    max_new_tokens = 5

    def __init__(self, golds):
        self.golds, self.sent = golds, 0

    def generate_batch(self, prompts):
        self.sent += len(prompts)
        out = []
        for p in prompts:
            gold = next(g for q, g in self.golds.items() if q in p)
            out.append(GenerationResult(f"#### {gold}" if gold % 2 == 0 else "I do not know.", 5 if gold % 2 else 3))
        return out


class _Tok:
    def apply_chat_template(self, messages, **_):
        return "<user>" + messages[0]["content"] + "<assistant>"


def test_run_setting_scores_and_resumes(tmp_path):
    rows = numeric_rows(10, seed=pilot.PILOT_SEED, **pilot.SETTINGS["numeric:s1-v10"][1])
    golds = {r["question"]: gold_number(r) for r in rows}
    path = tmp_path / "items.jsonl"
    first = _Fake(golds)
    summary, items = pilot.run_setting(first, _Tok(), "numeric:s1-v10", 10, 0, path)
    want = sum(g % 2 == 0 for g in golds.values()) / 10
    assert summary["n"] == 10 and summary["accuracy"] == want
    assert summary["unparseable"] == pytest.approx(1 - want)  # "I do not know." has no number
    assert summary["limit_hit"] == pytest.approx(1 - want)  # the wrong answers used all 5 tokens
    assert first.sent == 10
    # an interrupted run: drop the last four items; the rerun generates only those
    kept = path.read_text().splitlines()[:6]
    path.write_text("".join(line + "\n" for line in kept))
    again = _Fake(golds)
    summary2, items2 = pilot.run_setting(again, _Tok(), "numeric:s1-v10", 10, 0, path)
    assert again.sent == 4 and summary2["accuracy"] == want and len(items2) == 10
    assert len([json.loads(x) for x in path.read_text().splitlines()]) == 10


class _AlwaysLast:
    """Names the last option of every question, as SmolLM2 did in the first pilot run."""

    batch_size = 4
    max_new_tokens = 8

    def generate_batch(self, prompts):
        out = []
        for p in prompts:
            last = [line for line in p.split("\n") if line[:2] in ("A:", "B:", "C:", "D:", "E:")][-1][0]
            out.append(GenerationResult(f"The answer is: {last}", 6))
        return out


def test_the_position_bias_baseline(tmp_path):
    rows = choice_rows(12, seed=pilot.PILOT_SEED, **pilot.SETTINGS["choice:f2-c3-h1"][1])
    summary, items = pilot.run_setting(_AlwaysLast(), _Tok(), "choice:f2-c3-h1", 12, 0, tmp_path / "c.jsonl")
    assert summary["last_option_share"] == 1.0
    # a model that always names the last option scores exactly the always-last baseline, nothing above it
    assert summary["accuracy"] == summary["always_last_accuracy"] == sum(
        r["answerKey"] == "C" for r in rows) / 12
    assert summary["chance"] == pytest.approx(1 / 3) and summary["unparseable"] == 0
    assert all(x["last_option"] == "C" for x in items)


def test_the_budget_counts_every_scored_item(tmp_path):
    assert pilot.spent(tmp_path, "choice") == pilot.PRIOR_SPENT["choice"]
    (tmp_path / "choice_f2-c3-h1_shots0_new48.items.jsonl").write_text("{}\n" * 30)
    (tmp_path / "numeric_s1-v10_shots8_new128.items.jsonl").write_text("{}\n" * 7)
    assert pilot.spent(tmp_path, "choice") == pilot.PRIOR_SPENT["choice"] + 30
    assert pilot.spent(tmp_path, "numeric") == pilot.PRIOR_SPENT["numeric"] + 7
    # a run that would pass 100 choice items is refused before any model is loaded
    with pytest.raises(SystemExit):
        pilot.main(["--setting", "choice:f3-c4-h1", "--n", str(100 - pilot.spent(tmp_path, "choice") + 1),
                    "--max-new-tokens", "48", "--out", str(tmp_path), "--model", str(tmp_path / "no-model")])


def test_the_one_shot_choice_prompt_and_the_mode_baseline():
    row = choice_rows(1, seed=0)[0]
    one = pilot.arc_prompt(row, shots=1)
    assert one == pilot.ARC_HEAD + pilot._arc_example("B") + row["question"] + pilot.arc_prompt(row).split(
        row["question"], 1)[1]
    # the exemplar's names are not the generator's, so it never states a fact of a generated question
    assert "Tom" not in row["question"] and "Zoe" not in row["question"]
    items = [{"pred": "B", "gold": "B"}, {"pred": "B", "gold": "A"}, {"pred": None, "gold": "B"},
             {"pred": "C", "gold": "C"}]
    assert pilot._mode_baseline(items) == {"mode_letter": "B", "mode_letter_share": 0.5,
                                           "always_mode_accuracy": 0.5}


def test_the_rotated_exemplar_key():
    rows = choice_rows(30, seed=pilot.PILOT_SEED, facts=2, choices=3)
    keys = [pilot.example_key(r["question"]) for r in rows]
    assert set(keys) == {"A", "B", "C"} and keys == [pilot.example_key(r["question"]) for r in rows]
    for key in "ABC":
        p = pilot.arc_prompt(rows[0], 1, key)
        # the exemplar's answer (dog) stands at the key, and its last line names that key
        assert f"\n{key}: dog\n" in p and f"The answer is: {key}\n\nNew question: " in p
    assert pilot.arc_prompt(rows[0], 1) == pilot.ARC_HEAD + pilot.ARC_EXAMPLE.format(
        options="A: cat\nB: dog\nC: parrot", key="B") + pilot.arc_prompt(rows[0]).removeprefix(pilot.ARC_HEAD)
    assert pilot.tag("choice:f2-c3-h1", 1, 48, True) == "choice_f2-c3-h1_shots1r_new48"


def test_library_prompts_are_the_presets_with_the_generators_own_exemplars(tmp_path):
    from experiments.tasks.reasoning import exemplar_rows

    rows = choice_rows(4, seed=pilot.PILOT_SEED, **pilot.SETTINGS["choice:f2-c3-h1-lines"][1])
    prompts, shots = pilot.library_prompts("choice:f2-c3-h1-lines", rows, 3, tmp_path)
    ex = [json.loads(x) for x in shots.read_text().splitlines()]
    assert [r["answerKey"] for r in ex] == ["A", "B", "C"]  # no one letter is the exemplars' answer
    assert not {r["question"] for r in ex} & {r["question"] for r in rows}
    assert ex == exemplar_rows("choice", 3, seed=pilot.EXEMPLAR_SEED, exclude=[r["question"] for r in rows],
                               **pilot.SETTINGS["choice:f2-c3-h1-lines"][1])
    p = prompts[0]
    assert p.count("Example ") == 3 and p.endswith(pilot.ARC_TAIL.strip()) and rows[0]["question"] in p
    assert "Facts:\n- " in p and "The answer is: C\n\n" + rows[0]["question"] in p
    nums = numeric_rows(2, seed=pilot.PILOT_SEED, **pilot.SETTINGS["numeric:s1-v5-add"][1])
    prompts, _ = pilot.library_prompts("numeric:s1-v5-add", nums, 3, tmp_path, template="Q {examples}N: {question}")
    assert prompts[0].startswith("Q Example 1:\nQuestion: ") and prompts[0].endswith("N: " + nums[0]["question"])
