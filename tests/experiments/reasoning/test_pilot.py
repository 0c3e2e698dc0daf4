"""The reasoning pilot's prompts, its stand-in answer extractor and its resumable scoring (no model: a fake backend)."""

import json

import pytest

from axolotl_mipo.generation.base import GenerationResult
from experiments.reasoning import pilot
from experiments.tasks.reasoning import choice_rows, gold_number, numeric_rows

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("text, kind, want", [
    ("3 + 4 = 7.\n#### 7", "number", "7"),
    ("#### 12 apples, not 3", "number", "12"),
    ("She has 1,200 coins left.", "number", "1200"),
    ("The total is $2.50.", "number", "2.5"),
    ("It drops to -3", "number", "-3"),
    ("no digits here", "number", None),
    ('End with "The answer is: <X>". Cats purr. The answer is: (b)', "choice", "B"),
    ("answer: C", "choice", "C"),
    ("The answer is a dog.", "choice", None),
    ("The answer is E", "choice", "E"),
])
def test_the_stand_in_extractor(text, kind, want):
    assert pilot.extract_answer(text, kind) == want


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

    def __init__(self, golds):
        self.golds, self.sent = golds, 0

    def generate_batch(self, prompts):
        self.sent += len(prompts)
        out = []
        for p in prompts:
            gold = next(g for q, g in self.golds.items() if q in p)
            out.append(GenerationResult(f"#### {gold}" if gold % 2 == 0 else "I do not know.", 5))
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
    assert first.sent == 10
    # an interrupted run: drop the last four items; the rerun generates only those
    kept = path.read_text().splitlines()[:6]
    path.write_text("".join(line + "\n" for line in kept))
    again = _Fake(golds)
    summary2, items2 = pilot.run_setting(again, _Tok(), "numeric:s1-v10", 10, 0, path)
    assert again.sent == 4 and summary2["accuracy"] == want and len(items2) == 10
    assert len([json.loads(x) for x in path.read_text().splitlines()]) == 10
