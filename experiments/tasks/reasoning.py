"""Generated reasoning tasks for a small model on the CPU, in the shapes of GSM8K and ARC.

MIPO's second result (arXiv 2603.19294) is measured on GSM8K, SVAMP and ARC with 1-7B instruct models.
SmolLM2-135M-Instruct scores about 1% on real GSM8K, so a CPU study of that result needs problems the
model solves sometimes but not always. These two generators write them, seeded and with difficulty
knobs, as rows of the public datasets' shapes, so the study reads them through the same ``gsm8k`` and
``arc`` presets a user points at the real benchmarks:

* :func:`numeric_rows` — one- or two-step word problems on small numbers, as GSM8K rows:
  ``question`` and ``answer`` (a worked solution whose last line is ``#### N``). Knobs: ``steps``
  (arithmetic operations), ``max_value`` (largest operand) and ``operations`` (``add``, ``sub``,
  ``mul``). Every question has several sentences, so ``partial_prompt`` (one sentence removed) has
  something to remove.
* :func:`choice_rows` — questions over a small table of facts stated in the question, as ARC rows:
  ``question``, ``choices`` (``{"text": [...], "label": [...]}``) and ``answerKey``. Knobs: ``facts``
  (rows in the table), ``choices`` (options, 2-5), ``hops`` (1: look one fact up; 2: chain a
  person's club to the day it meets), ``labels`` (``letter``, or ``digit`` as some ARC rows are keyed) and
  ``layout`` (``inline``: the facts in one paragraph; ``lines``: one fact per line, the question on its own
  line). The layout changes only the text: the same seed and knobs give the same facts, options and key.
  No world knowledge is needed: the answer is always in the question's own table.

Both take ``exclude`` (questions never to emit), so a held-out set can be drawn disjoint from a training
set or a pilot's items. The gold answer is computed, never sampled, and rows are a pure function of the
arguments.

    python -m experiments.tasks.reasoning numeric OUT.jsonl --n 200 --seed 0 --steps 2 --max-value 20
    python -m experiments.tasks.reasoning choice OUT.jsonl --n 200 --seed 0 --facts 4 --choices 4 --hops 1
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Collection
from pathlib import Path

OPERATIONS = ("add", "sub", "mul")
_NAMES = (
    ("Anna", "she", "her"), ("Ben", "he", "his"), ("Chloe", "she", "her"), ("David", "he", "his"),
    ("Emma", "she", "her"), ("Felix", "he", "his"), ("Grace", "she", "her"), ("Hugo", "he", "his"),
    ("Iris", "she", "her"), ("Jack", "he", "his"), ("Kate", "she", "her"), ("Liam", "he", "his"),
    ("Maya", "she", "her"), ("Noah", "he", "his"), ("Olivia", "she", "her"), ("Peter", "he", "his"),
    ("Rosa", "she", "her"), ("Sam", "he", "his"), ("Tara", "she", "her"), ("Victor", "he", "his"),
)
# plural nouns, and the container a multiplication's groups come in
_ITEMS = (
    ("apples", "bags"), ("marbles", "jars"), ("stickers", "sheets"), ("pencils", "boxes"),
    ("cookies", "plates"), ("books", "shelves"), ("stamps", "pages"), ("shells", "buckets"),
    ("coins", "purses"), ("cards", "packs"), ("balloons", "bunches"), ("beads", "strings"),
    ("candles", "boxes"), ("buttons", "tins"), ("eggs", "cartons"), ("flowers", "vases"),
)
_GAIN = (
    "{Pron} buys {n} more {item}.", "{Friend} gives {obj} {n} more {item}.", "{Pron} finds {n} more {item}.",
    "Then {pron} gets {n} more {item}.",
)
_LOSS = (
    "{Pron} gives {n} {item} to {friend}.", "{Pron} loses {n} {item}.", "{Pron} uses {n} of the {item}.",
    "Then {pron} sells {n} {item}.",
)
_GAIN_SOLVED = "{Pron} gets {n} more, so {pron} has {x} + {n} = {y} {item}."
_LOSS_SOLVED = "{Pron} loses {n}, so {pron} has {x} - {n} = {y} {item}."


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _numeric_one(rng: random.Random, steps: int, max_value: int, operations: tuple[str, ...]) -> dict:
    (name, pron, poss), (friend_name, _, _) = rng.sample(_NAMES, 2)
    item, container = rng.choice(_ITEMS)
    obj = "her" if pron == "she" else "him"
    fill = {"Pron": _cap(pron), "pron": pron, "obj": obj, "item": item, "friend": friend_name,
            "Friend": friend_name}
    changes = [op for op in operations if op != "mul"]
    multiply_first = "mul" in operations and (not changes or rng.random() < 0.5)
    if multiply_first:
        a, b = rng.randint(2, max(2, min(max_value, 12))), rng.randint(2, max(2, min(max_value, 12)))
        value = a * b
        text = [f"{name} has {a} {container} of {item}.", f"Each of {poss} {container} holds {b} {item}."]
        solved = [f"{name} has {a} {container} with {b} {item} each, so {a} * {b} = {value} {item}."]
        left = steps - 1
    else:
        value = rng.randint(2, max_value)
        text = [f"{name} has {value} {item}."]
        solved = [f"{name} starts with {value} {item}."]
        left = steps
    for _ in range(left):
        op = rng.choice(changes) if changes else "add"
        if op == "sub" and value < 4:  # n >= 2 and a result >= 2 keep every count plural
            op = "add"
        n = rng.randint(2, min(max_value, value - 2)) if op == "sub" else rng.randint(2, max_value)
        new = value + n if op == "add" else value - n
        text.append(rng.choice(_GAIN if op == "add" else _LOSS).format(n=n, **fill))
        solved.append((_GAIN_SOLVED if op == "add" else _LOSS_SOLVED).format(n=n, x=value, y=new, **fill))
        value = new
    text.append(f"How many {item} does {name} have now?")
    return {"question": " ".join(text), "answer": " ".join(solved) + f"\n#### {value}"}


def numeric_rows(n: int, *, seed: int, steps: int = 1, max_value: int = 10,
                 operations: Collection[str] = ("add", "sub"), exclude: Collection[str] = ()) -> list[dict]:
    """``n`` distinct GSM8K-shaped word problems (``question``, ``answer`` ending ``#### N``).

    ``steps`` arithmetic operations (a multiplication, when ``operations`` has ``mul``, may be the first),
    operands from 2 to ``max_value`` (a product's factors at most 12); every count is at least 2.
    """
    ops = tuple(operations)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if max_value < 3:
        raise ValueError(f"max_value must be >= 3, got {max_value}")
    if not ops or set(ops) - set(OPERATIONS):
        raise ValueError(f"operations must be a non-empty subset of {OPERATIONS}, got {ops}")
    rng = random.Random(f"numeric/{seed}/{steps}/{max_value}/{','.join(ops)}")
    return _distinct(n, exclude, lambda: _numeric_one(rng, steps, max_value, ops), "numeric_rows")


# One-hop tables: a fact sentence, the question about it, and the values it may take.
_KINDS = {
    "colour": ("{name}'s favourite colour is {v}.", "What is {name}'s favourite colour?",
               ("red", "blue", "green", "yellow", "purple", "orange", "pink", "grey")),
    "pet": ("{name} has a pet {v}.", "What pet does {name} have?",
            ("dog", "cat", "rabbit", "parrot", "hamster", "turtle", "goldfish", "lizard")),
    "city": ("{name} lives in {v}.", "Where does {name} live?",
             ("Leeds", "Porto", "Lyon", "Graz", "Utrecht", "Bergen", "Aarhus", "Bilbao")),
    "instrument": ("{name} plays the {v}.", "Which instrument does {name} play?",
                   ("piano", "violin", "guitar", "flute", "drums", "cello", "trumpet", "harp")),
    "fruit": ("{name} likes to eat {v}.", "Which fruit does {name} like to eat?",
              ("apples", "pears", "plums", "cherries", "grapes", "mangoes", "peaches", "melons")),
}
_CLUBS = ("chess", "drama", "chorus", "robotics", "hiking", "film", "garden", "science")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MAX_FACTS = 7  # the smallest value list (days) bounds the table


def _choice_one(rng: random.Random, facts: int, choices: int, hops: int, labels: str, layout: str) -> dict:
    people = [p[0] for p in rng.sample(_NAMES, facts)]
    target = rng.randrange(facts)
    if hops == 1:
        kind = rng.choice(sorted(_KINDS))
        fact, ask, domain = _KINDS[kind]
        values = rng.sample(domain, max(facts, choices))
        lines = [fact.format(name=p, v=v) for p, v in zip(people, values)]
        question = ask.format(name=people[target])
    else:
        clubs, values = rng.sample(_CLUBS, facts), rng.sample(_DAYS, max(facts, choices))
        lines = [f"{p} is in the {c} club." for p, c in zip(people, clubs)]
        lines += [f"The {c} club meets on {d}." for c, d in zip(clubs, values)]
        question = f"On which day does {people[target]}'s club meet?"
    rng.shuffle(lines)
    gold = values[target]
    # distractors come from the table first, so the model has to find the right row, not the only name
    others = [v for i, v in enumerate(values[:facts]) if i != target] + values[facts:]
    options = [gold] + rng.sample(others[: max(choices - 1, facts - 1)], choices - 1)
    rng.shuffle(options)
    names = [chr(ord("A") + i) for i in range(choices)] if labels == "letter" else [str(i + 1) for i in range(choices)]
    if layout == "lines":
        text = "Facts:\n" + "\n".join("- " + line for line in lines) + "\nQuestion: " + question
    else:
        text = "Facts: " + " ".join(lines) + " Question: " + question
    return {"question": text,
            "choices": {"text": options, "label": names}, "answerKey": names[options.index(gold)]}


def choice_rows(n: int, *, seed: int, facts: int = 3, choices: int = 4, hops: int = 1, labels: str = "letter",
                layout: str = "inline", exclude: Collection[str] = ()) -> list[dict]:
    """``n`` distinct ARC-shaped multiple-choice questions over a table of ``facts`` stated in the question."""
    if not 2 <= facts <= _MAX_FACTS:
        raise ValueError(f"facts must be between 2 and {_MAX_FACTS}, got {facts}")
    if not 2 <= choices <= 5:
        raise ValueError(f"choices must be between 2 and 5 (labels A-E), got {choices}")
    if hops not in (1, 2):
        raise ValueError(f"hops must be 1 or 2, got {hops}")
    if labels not in ("letter", "digit"):
        raise ValueError(f"labels must be 'letter' or 'digit', got {labels!r}")
    if layout not in ("inline", "lines"):
        raise ValueError(f"layout must be 'inline' or 'lines', got {layout!r}")
    # the layout is not in the seed: both layouts of one seed ask the same questions (paired)
    rng = random.Random(f"choice/{seed}/{facts}/{choices}/{hops}/{labels}")
    return _distinct(n, exclude, lambda: _choice_one(rng, facts, choices, hops, labels, layout), "choice_rows")


def _distinct(n: int, exclude: Collection[str], make, what: str) -> list[dict]:
    seen, rows = set(exclude), []
    tries = 0
    while len(rows) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ValueError(f"{what}: only {len(rows)} distinct questions of {n} found with these settings; "
                             "ask for fewer rows or widen the difficulty knobs (e.g. a larger max_value)")
        row = make()
        if row["question"] not in seen:
            seen.add(row["question"])
            rows.append(row)
    return rows


def exemplar_rows(task: str, k: int, *, seed: int, exclude: Collection[str] = (), **knobs) -> list[dict]:
    """``k`` few-shot exemplars of ``task`` (``numeric`` or ``choice``) with the generator's ``knobs``, for a
    preset's ``few_shot_path``: none is a question in ``exclude``. Multiple-choice exemplars are keyed A, B,
    C... in that order, so no one letter is the exemplars' answer (a small model copies an exemplar's key)."""
    if task == "numeric":
        return numeric_rows(k, seed=seed, exclude=exclude, **knobs)
    if task != "choice":
        raise ValueError(f"task must be 'numeric' or 'choice', got {task!r}")
    pool = choice_rows(50 * k, seed=seed, exclude=exclude, **knobs)
    labels = pool[0]["choices"]["label"]
    if k > len(labels):
        raise ValueError(f"k={k} exemplars keyed apart need at least {k} options; the rows have {len(labels)}")
    picked = []
    for label in labels[:k]:
        picked.append(next(r for r in pool if r["answerKey"] == label))
    return picked


def gold_number(row: dict) -> int:
    """The gold answer of a :func:`numeric_rows` row: the integer after ``####``."""
    return int(row["answer"].rsplit("####", 1)[1].strip())


def write_jsonl(rows: list[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task", choices=("numeric", "choice"))
    ap.add_argument("out", help="a .jsonl file to write")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--max-value", type=int, default=10)
    ap.add_argument("--operations", default="add,sub")
    ap.add_argument("--facts", type=int, default=3)
    ap.add_argument("--choices", type=int, default=4)
    ap.add_argument("--hops", type=int, default=1)
    ap.add_argument("--labels", default="letter")
    ap.add_argument("--layout", default="inline", choices=("inline", "lines"))
    a = ap.parse_args(argv)
    if a.task == "numeric":
        rows = numeric_rows(a.n, seed=a.seed, steps=a.steps, max_value=a.max_value,
                            operations=a.operations.split(","))
    else:
        rows = choice_rows(a.n, seed=a.seed, facts=a.facts, choices=a.choices, hops=a.hops, labels=a.labels,
                           layout=a.layout)
    write_jsonl(rows, a.out)
    print(f"wrote {len(rows)} {a.task} rows to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
