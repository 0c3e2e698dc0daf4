"""The generated reasoning tasks: seeded, shaped like GSM8K and ARC rows, with a gold answer that is right."""

import json
import re

import pytest

from experiments.tasks.reasoning import choice_rows, gold_number, main, numeric_rows

pytestmark = pytest.mark.fast

_SOLVED = re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)")


def _solve(question: str) -> int:
    """An independent solver: reads the numbers back from the question's sentences."""
    total = None
    for sentence in re.split(r"(?<=[.?])\s+", question):
        nums = [int(x) for x in re.findall(r"\d+", sentence)]
        if sentence.startswith("Each of"):
            total *= nums[0]
        elif total is None and nums:
            total = nums[0]
        elif nums and re.search(r"\b(gives \d+ \w+ to|loses|uses|sells)\b", sentence):
            total -= nums[0]
        elif nums:
            total += nums[0]
    return total


@pytest.mark.parametrize("knobs", [
    {"steps": 1, "max_value": 10},
    {"steps": 2, "max_value": 20},
    {"steps": 2, "max_value": 10, "operations": ("add", "sub", "mul")},
    {"steps": 3, "max_value": 9, "operations": ("mul", "sub")},
])
def test_numeric_rows_are_gsm8k_shaped_and_their_gold_answer_is_right(knobs):
    rows = numeric_rows(150, seed=3, **knobs)
    assert len(rows) == 150
    assert len({r["question"] for r in rows}) == 150
    for r in rows:
        assert set(r) == {"question", "answer"}
        assert r["answer"].splitlines()[-1] == f"#### {gold_number(r)}"
        assert gold_number(r) == _solve(r["question"]) >= 2
        assert "####" not in r["question"]
        # the worked solution's arithmetic is right and ends on the gold answer
        steps = _SOLVED.findall(r["answer"])
        assert len(steps) == knobs["steps"]
        for a, op, b, c in steps:
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op] == int(c)
        assert int(steps[-1][3]) == gold_number(r)
        assert len(re.findall(r"[.?](?:\s|$)", r["question"])) >= 2  # a sentence to drop for partial_prompt


def test_numeric_difficulty_knobs_change_the_problems():
    easy, hard = numeric_rows(200, seed=0, steps=1, max_value=10), numeric_rows(200, seed=0, steps=2, max_value=20)
    assert max(gold_number(r) for r in easy) <= 20 < max(gold_number(r) for r in hard)
    assert all(len(_SOLVED.findall(r["answer"])) == 1 for r in easy)
    assert all(len(_SOLVED.findall(r["answer"])) == 2 for r in hard)
    products = numeric_rows(100, seed=0, steps=1, operations=("mul",))
    assert all(" * " in r["answer"] for r in products)
    assert not any(" * " in r["answer"] for r in easy)


def test_rows_are_a_pure_function_of_the_arguments():
    assert numeric_rows(50, seed=7, steps=2) == numeric_rows(50, seed=7, steps=2)
    assert numeric_rows(50, seed=7, steps=2) != numeric_rows(50, seed=8, steps=2)
    assert choice_rows(50, seed=7, hops=2) == choice_rows(50, seed=7, hops=2)
    assert choice_rows(50, seed=7) != choice_rows(50, seed=8)
    # asking for more rows extends the list rather than reshuffling it
    assert numeric_rows(80, seed=7)[:50] == numeric_rows(50, seed=7)


def test_exclude_keeps_a_held_out_set_disjoint():
    pilot = numeric_rows(100, seed=1000)
    held = numeric_rows(200, seed=0, exclude={r["question"] for r in pilot})
    assert not {r["question"] for r in pilot} & {r["question"] for r in held}
    pilot_c = choice_rows(100, seed=1000)
    held_c = choice_rows(100, seed=0, exclude={r["question"] for r in pilot_c})
    assert not {r["question"] for r in pilot_c} & {r["question"] for r in held_c}


def _facts(question: str) -> dict[str, str]:
    """Reads the table back: person -> value (one hop), or person -> club and club -> day (two hops)."""
    body = question.split(" Question: ")[0].removeprefix("Facts: ")
    table = {}
    for s in re.split(r"(?<=\.)\s+", body):
        if m := re.fullmatch(r"The (\w+) club meets on (\w+)\.", s):
            table["club:" + m[1]] = m[2]
        elif m := re.fullmatch(r"(\w+) is in the (\w+) club\.", s):
            table[m[1]] = "club:" + m[2]
        else:
            m = re.fullmatch(r"(\w+)(?:'s favourite colour is| has a pet| lives in| plays the| likes to eat) (\w+)\.",
                             s)
            table[m[1]] = m[2]
    return table


@pytest.mark.parametrize("knobs", [
    {"facts": 3, "choices": 4, "hops": 1},
    {"facts": 5, "choices": 3, "hops": 1},
    {"facts": 2, "choices": 5, "hops": 1},
    {"facts": 4, "choices": 4, "hops": 2, "labels": "digit"},
])
def test_choice_rows_are_arc_shaped_and_their_answer_key_is_right(knobs):
    rows = choice_rows(120, seed=5, **knobs)
    assert len({r["question"] for r in rows}) == 120
    letters = knobs.get("labels", "letter") == "letter"
    keys = set()
    for r in rows:
        assert set(r) == {"question", "choices", "answerKey"}
        texts, labels = r["choices"]["text"], r["choices"]["label"]
        assert len(texts) == len(set(texts)) == len(labels) == knobs["choices"]
        assert labels == ([chr(65 + i) for i in range(len(labels))] if letters else
                          [str(i + 1) for i in range(len(labels))])
        table = _facts(r["question"])
        who = re.search(r"(\w+)'s club|does (\w+) |is (\w+)'s", r["question"].split(" Question: ")[1])
        person = next(g for g in who.groups() if g)
        gold = table[person]
        if knobs["hops"] == 2:
            gold = table[gold]
        assert texts[labels.index(r["answerKey"])] == gold
        keys.add(r["answerKey"])
        # distractors are other rows of the table where the table is large enough to supply them
        values = {v for k, v in table.items() if not v.startswith("club:")}
        if knobs["facts"] >= knobs["choices"]:
            assert set(texts) <= values
    assert keys == set(labels)  # the right answer is not always in the same place


def test_choice_difficulty_knobs_change_the_table():
    small, large = choice_rows(30, seed=0, facts=2), choice_rows(30, seed=0, facts=6)
    assert all(len(_facts(r["question"])) == 2 for r in small)
    assert all(len(_facts(r["question"])) == 6 for r in large)
    assert all(len(_facts(r["question"])) == 6 for r in choice_rows(30, seed=0, facts=3, hops=2))


def test_the_lines_layout_asks_the_same_questions_one_fact_per_line():
    inline = choice_rows(40, seed=3, facts=3, choices=4)
    lines = choice_rows(40, seed=3, facts=3, choices=4, layout="lines")
    for a, b in zip(inline, lines, strict=True):
        assert (a["choices"], a["answerKey"]) == (b["choices"], b["answerKey"])
        head, question = b["question"].split("\nQuestion: ")
        facts = head.split("\n")
        assert facts[0] == "Facts:" and len(facts) == 4 and all(f.startswith("- ") for f in facts[1:])
        # the same facts in the same order, and the same question
        assert a["question"] == "Facts: " + " ".join(f[2:] for f in facts[1:]) + " Question: " + question


@pytest.mark.parametrize("call, field", [
    (lambda: numeric_rows(5, seed=0, steps=0), "steps"),
    (lambda: numeric_rows(5, seed=0, max_value=2), "max_value"),
    (lambda: numeric_rows(5, seed=0, operations=("div",)), "operations"),
    (lambda: choice_rows(5, seed=0, facts=9), "facts"),
    (lambda: choice_rows(5, seed=0, choices=6), "choices"),
    (lambda: choice_rows(5, seed=0, hops=3), "hops"),
    (lambda: choice_rows(5, seed=0, labels="roman"), "labels"),
    (lambda: choice_rows(5, seed=0, layout="table"), "layout"),
])
def test_bad_knobs_are_refused_by_name(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_asking_for_more_distinct_rows_than_exist_says_so():
    with pytest.raises(ValueError, match="distinct questions"):
        numeric_rows(1500, seed=0, steps=1, max_value=3, operations=("mul",))


def test_the_command_line_writes_jsonl(tmp_path):
    out = tmp_path / "rows.jsonl"
    assert main(["choice", str(out), "--n", "12", "--seed", "2", "--hops", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == choice_rows(12, seed=2, hops=2)
