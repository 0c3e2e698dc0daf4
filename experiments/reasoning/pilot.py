"""Base-accuracy pilot: which difficulty of the generated reasoning tasks puts SmolLM2-135M-Instruct at 20-70%.

Issue 23 allows one pilot on at most 100 items per task and difficulty, before the study's plan is fixed,
and for one purpose only: to choose a difficulty where the base model's greedy accuracy is between 20% and
70%, so that a MIPO gain or loss can show. It measures nothing else and trains nothing.

Prompts are the MIPO authors' (github.com/nam630/mutual_information_preference_optimization, commit
59d1b5e, ``contrastive_finetune-main.zip``: ``eval_scripts/gsm.py`` and ``eval_scripts/arc.py``), sent as
one user message through the model's chat template, decoded greedily by the library's ``hf`` backend.

Answers are scored by the library's ``axolotl_mipo.evaluation.answers.extract_answer`` (and gold letters by
``choice_letter``), as the study scores them. Every scored item counts against the budget of 100 per task
(``spent``); the script refuses a run that would exceed it. Pilot items are drawn with seed 1000, apart
from the study's seeds; the study should pass them as ``exclude`` so none is held out.

    OMP_NUM_THREADS=2 python -m experiments.reasoning.pilot --model smollm2-model --setting numeric:s1-v5-add --n 16
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

from axolotl_mipo.evaluation.answers import choice_letter, extract_answer
from experiments.tasks.reasoning import choice_rows, gold_number, numeric_rows
from experiments.tasks.reasoning import exemplar_rows as _exemplar_rows

PILOT_SEED = 1000
# ``--library-shots``: the exemplars are the generator's own rows drawn with this seed (apart from the pilot's
# and the study's), written to a file and rendered by the library's preset through ``few_shot_path``, as
# the study would render them
EXEMPLAR_SEED = 2000
# issue 23: at most 100 pilot items per task, all settings together; every scored item counts, a question
# asked again under another prompt included
BUDGET = 100
# PILOT.md's ledger: session 1's 16 items of each task (scored before this folder's ledger existed), and
# session 2's 8 numeric items stopped in generation (never scored, counted to be safe)
PRIOR_SPENT = {"numeric": 24, "choice": 16}

# eval_scripts/gsm.py lines 17-57 (the eight chain-of-thought exemplars) and 137-139, 156 (the prompt)
GSM_INSTRUCTION = ("You are a helpful math assistant. Solve the following problem step-by-step and give the final "
                   "answer after ####.")
GSM_FEWSHOT = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
     "been 21 - 15 = 6. So the answer is 6.", "6"),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. So the answer is 5.", "5"),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
     "they had 74 - 35 = 39. So the answer is 39.", "39"),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "So the answer is 8.", "8"),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have "
     "now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. "
     "So the answer is 9.", "9"),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
     "computers were added. 9 + 20 is 29. So the answer is 29.", "29"),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, "
     "he had 35 - 2 = 33 golf balls. So the answer is 33.", "33"),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8. So the answer is 8.", "8"),
)
# eval_scripts/arc.py lines 65-69
ARC_HEAD = ("You are a helpful assistant. The following is a multiple choice question with answer choices. Your "
            "response should show clear and concise reasoning, and you should end with \"The answer is: <X>\", "
            "where X is the correct letter choice.\n\n")
# the one exemplar of ``arc_prompt(row, shots=1)``: names outside the generator's, the key in the middle
ARC_EXAMPLE = ("Example:\nFacts: Tom has a pet cat. Zoe has a pet dog. Question: What pet does Zoe have?\n\n"
               "{options}\n\nZoe has a pet dog, and dog is option {key}. The answer is: {key}\n\n"
               "New question: ")
ARC_TAIL = "\n\nYour response should end with \"The answer is: <X>\", where X is the correct letter choice."

# name -> (task, generator keyword arguments); the names are what PILOT.md reports
SETTINGS = {
    "numeric:s1-v5-add": ("numeric", {"steps": 1, "max_value": 5, "operations": ("add",)}),
    "numeric:s1-v10-add": ("numeric", {"steps": 1, "max_value": 10, "operations": ("add",)}),
    "numeric:s1-v10": ("numeric", {"steps": 1, "max_value": 10, "operations": ("add", "sub")}),
    "numeric:s1-v20": ("numeric", {"steps": 1, "max_value": 20, "operations": ("add", "sub")}),
    "numeric:s2-v10": ("numeric", {"steps": 2, "max_value": 10, "operations": ("add", "sub")}),
    "numeric:s2-v20": ("numeric", {"steps": 2, "max_value": 20, "operations": ("add", "sub")}),
    "numeric:s2-v10-mul": ("numeric", {"steps": 2, "max_value": 10, "operations": ("add", "sub", "mul")}),
    "choice:f3-c4-h1": ("choice", {"facts": 3, "choices": 4, "hops": 1}),
    "choice:f5-c4-h1": ("choice", {"facts": 5, "choices": 4, "hops": 1}),
    "choice:f3-c4-h2": ("choice", {"facts": 3, "choices": 4, "hops": 2}),
    "choice:f2-c3-h1": ("choice", {"facts": 2, "choices": 3, "hops": 1}),
    # the same questions as choice:f2-c3-h1, one fact per line (added in session 3)
    "choice:f2-c3-h1-lines": ("choice", {"facts": 2, "choices": 3, "hops": 1, "layout": "lines"}),
}


def gsm_prompt(question: str, shots: int) -> str:
    """The authors' GSM8K prompt with the first ``shots`` exemplars (they used all eight)."""
    examples = "\n\n".join(f"Example {i + 1}:\nQuestion: {q}\nAnswer: {a}\n#### {s}"
                           for i, (q, a, s) in enumerate(GSM_FEWSHOT[:shots]))
    head = GSM_INSTRUCTION + "\n\n" + examples if shots else GSM_INSTRUCTION
    return head + "\n\nNew question: " + question


def arc_prompt(row: dict, shots: int = 0, example_key: str = "B") -> str:
    """The authors' ARC prompt; like theirs, options are relabelled A, B, C... by position.

    ``shots=1`` (not the authors': their ARC prompt has no exemplar) puts one worked question before it,
    because SmolLM2-135M zero-shot mostly names an option's text, which no rule can score as a letter.
    ``example_key`` (A-C) is where the exemplar's answer stands; :func:`example_key` varies it per question,
    so that copying the exemplar's letter scores chance, not the share of one letter among the keys.
    """
    options = "\n".join(f"{chr(ord('A') + i)}: {t}" for i, t in enumerate(row["choices"]["text"]))
    return ARC_HEAD + (_arc_example(example_key) if shots else "") + row["question"] + "\n\n" + options + ARC_TAIL


def _arc_example(key: str) -> str:
    others = iter(("cat", "parrot"))
    texts = ["dog" if letter == key else next(others) for letter in "ABC"]
    options = "\n".join(f"{letter}: {t}" for letter, t in zip("ABC", texts))
    return ARC_EXAMPLE.format(options=options, key=key)


def example_key(question: str) -> str:
    """A letter A-C fixed by the question's text (a stable hash, not Python's salted one)."""
    return "ABC"[zlib.crc32(question.encode()) % 3]


def gold_letter(row: dict) -> str:
    """The answer key as the letter the prompt shows (digit keys map by their position in the labels)."""
    return choice_letter(row["answerKey"], row["choices"]["label"])


def _mode_baseline(items: list[dict]) -> dict:
    letters = [x["pred"] for x in items if x["pred"] is not None]
    if not letters:
        return {"mode_letter": None, "mode_letter_share": 0.0, "always_mode_accuracy": 0.0}
    mode = max(sorted(set(letters)), key=letters.count)
    return {"mode_letter": mode, "mode_letter_share": letters.count(mode) / len(items),
            "always_mode_accuracy": sum(x["gold"] == mode for x in items) / len(items)}


def exemplar_rows(name: str, k: int, exclude: list[str]) -> list[dict]:
    """``k`` exemplars of setting ``name`` drawn with :data:`EXEMPLAR_SEED` (:func:`tasks.reasoning.exemplar_rows`)."""
    task, knobs = SETTINGS[name]
    return _exemplar_rows(task, k, seed=EXEMPLAR_SEED, exclude=exclude, **knobs)


def library_prompts(name: str, rows: list[dict], k: int, out: Path,
                    template: str | None = None) -> tuple[list[str], Path]:
    """The prompts of ``rows`` as the library's ``gsm8k``/``arc`` preset renders them, with ``k`` exemplars in a
    ``few_shot_path`` file written under ``out`` (kept, so the plan can name the exact exemplars), and the
    preset's ``prompt_template`` option when ``template`` is given (else the authors' instruction)."""
    from types import SimpleNamespace

    from axolotl_mipo.data.presets.reasoning import PRESETS

    task = SETTINGS[name][0]
    preset = {p.name: p for p in PRESETS}["gsm8k" if task == "numeric" else "arc"]
    shots = out / f"exemplars_{name.replace(':', '_')}_{k}.jsonl"
    if not shots.exists():
        shots.write_text("".join(json.dumps(r) + "\n" for r in exemplar_rows(name, k, [r["question"] for r in rows])))
    split = preset.bind(SimpleNamespace(prompt_template=template, few_shot_path=str(shots), path=f"pilot:{name}"))
    cfg = SimpleNamespace(few_shot_path=str(shots))
    return [split(r, cfg, i, f"pilot:{name}").messages[0][1] for i, r in enumerate(rows)], shots


def tag(name: str, shots: int | str, max_new_tokens: int, rotate: bool = False) -> str:
    """The file stem of one setting's items: the setting, the exemplars (``r``: rotated key) and the token limit."""
    return name.replace(":", "_") + f"_shots{shots}{'r' if rotate else ''}_new{max_new_tokens}"


def spent(out: Path, task: str) -> int:
    """Items of ``task`` already scored: the first run's (``PRIOR_SPENT``) plus every item file in ``out``."""
    files = out.glob(task + "_*.items.jsonl")
    return PRIOR_SPENT[task] + sum(len(f.read_text().splitlines()) for f in files)


def run_setting(backend, tok, name: str, n: int, shots: int, items_path: Path,
                rotate: bool = False, library_shots: int = 0,
                template: str | None = None) -> tuple[dict, list[dict]]:
    """Scores ``n`` items of one setting; items already in ``items_path`` (an interrupted run) are kept.

    ``shots``: the exemplars of the setting's prompt (GSM8K's 0-8, or 0-1 for multiple choice); ``rotate``:
    the multiple-choice exemplar's key varies with the question (:func:`example_key`), else it is B.
    ``library_shots``: instead, the prompt is the library preset's with that many of the generator's own
    exemplars (:func:`library_prompts`); ``shots`` and ``rotate`` are then unused."""
    task, knobs = SETTINGS[name]
    rows = (numeric_rows if task == "numeric" else choice_rows)(n, seed=PILOT_SEED, **knobs)
    keys = [None] * len(rows)
    shots_file = None
    if library_shots:
        prompts, shots_file = library_prompts(name, rows, library_shots, items_path.parent, template)
    elif task == "numeric":
        prompts = [gsm_prompt(r["question"], shots) for r in rows]
    else:
        keys = [example_key(r["question"]) if rotate else "B" for r in rows]
        prompts = [arc_prompt(r, shots, k) for r, k in zip(rows, keys)]
        keys = keys if shots else [None] * len(rows)
    golds = [str(gold_number(r)) if task == "numeric" else gold_letter(r) for r in rows]
    kind = "number" if task == "numeric" else "choice"
    # the letter of each item's last option: a model that always picks it scores by position, not reading
    lasts = [chr(ord("A") + len(r["choices"]["text"]) - 1) if task == "choice" else None for r in rows]
    done = [json.loads(line) for line in items_path.read_text().splitlines()] if items_path.exists() else []
    done_q = {x["question"] for x in done}
    todo = [i for i, r in enumerate(rows) if r["question"] not in done_q]
    wall = sum(x.get("wall_s", 0.0) for x in done)
    for start in range(0, len(todo), backend.batch_size):
        batch = todo[start:start + backend.batch_size]
        chat = [tok.apply_chat_template([{"role": "user", "content": prompts[i]}], tokenize=False,
                                        add_generation_prompt=True) for i in batch]
        t0 = time.perf_counter()
        out = backend.generate_batch(chat)
        per_item = (time.perf_counter() - t0) / len(batch)
        wall += per_item * len(batch)
        with open(items_path, "a") as f:
            for i, res in zip(batch, out):
                pred = extract_answer(res.text, kind)
                item = {"setting": name, "question": rows[i]["question"], "gold": golds[i], "pred": pred,
                        "correct": pred == golds[i], "tokens": res.num_tokens, "wall_s": per_item,
                        "limit_hit": res.num_tokens >= backend.max_new_tokens, "last_option": lasts[i],
                        "example_key": keys[i],
                        "response": res.text}
                done.append(item)
                f.write(json.dumps(item) + "\n")
        print(f"  {name}: {len(done)}/{len(rows)} items, {per_item:.1f} s/item in this batch", flush=True)
    items = [x for x in done if x["question"] in {r["question"] for r in rows}]
    summary = {"setting": name, "shots": f"library {library_shots}" if library_shots else shots, "n": len(items),
               "few_shot_path": str(shots_file) if shots_file else None, "prompt_template": template,
               "accuracy": sum(x["correct"] for x in items) / len(items),
               "unparseable": sum(x["pred"] is None for x in items) / len(items),
               "mean_new_tokens": sum(x["tokens"] for x in items) / len(items),
               "limit_hit": sum(x["tokens"] >= backend.max_new_tokens for x in items) / len(items),
               "wall_s": wall, "s_per_item": wall / len(items), "example_prompt": prompts[0]}
    if task == "choice":
        last = {r["question"]: x for r, x in zip(rows, lasts)}
        summary |= {
            # share of all answers that name the last option, and what always naming it would score here
            "last_option_share": sum(x["pred"] == last[x["question"]] for x in items) / len(items),
            "always_last_accuracy": sum(x["gold"] == last[x["question"]] for x in items) / len(items),
            # the letter named most often, and what always naming it would score (an exemplar's key may pull)
            **_mode_baseline(items),
            # what copying the exemplar's letter would score
            "example_key_share": sum(x["pred"] is not None and x["pred"] == x.get("example_key") for x in items)
            / len(items),
            "always_example_key_accuracy": sum(x["gold"] == x.get("example_key") for x in items) / len(items),
            "chance": sum(1 / len(r["choices"]["text"]) for r in rows[:len(items)]) / len(items)}
    return summary, items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-model", help="a SmolLM2 checkpoint (axolotl-mipo make-smollm2 DIR)")
    ap.add_argument("--setting", action="append", choices=sorted(SETTINGS), required=True)
    ap.add_argument("--n", type=int, default=100, help="items per setting (issue 23 allows at most 100)")
    ap.add_argument("--shots", type=int, default=8, help="GSM8K exemplars in the numeric prompt (the authors: 8)")
    ap.add_argument("--choice-shots", type=int, default=0, choices=(0, 1),
                    help="exemplars in the multiple-choice prompt (the authors: 0)")
    ap.add_argument("--rotate-example", action="store_true",
                    help="vary the multiple-choice exemplar's key with the question (with --choice-shots 1)")
    ap.add_argument("--library-shots", type=int, default=0,
                    help="render prompts with the library's gsm8k/arc preset and this many of the generator's own "
                         "exemplars (seed 2000) as few_shot_path, instead of --shots/--choice-shots")
    ap.add_argument("--prompt-template", default=None,
                    help="with --library-shots: the preset's prompt_template (default: the authors' instruction); "
                         "its items are filed under a tag with the template's hash")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default="runs/reasoning-pilot",
                    help="folder for per-item and summary JSONL; a rerun with the same folder resumes")
    a = ap.parse_args(argv)
    if a.prompt_template and not a.library_shots:
        ap.error("--prompt-template is the library preset's option: use it with --library-shots")
    if a.n > 100:
        ap.error("the pilot is limited to 100 items per setting (issue 23)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    shots = {name: a.shots if SETTINGS[name][0] == "numeric" else a.choice_shots for name in a.setting}
    rotate = {name: a.rotate_example and SETTINGS[name][0] == "choice" for name in a.setting}
    if a.library_shots:
        th = f"t{zlib.crc32(a.prompt_template.encode()) % 10000:04d}" if a.prompt_template else ""
        shots = {name: f"lib{a.library_shots}{th}" for name in a.setting}
        rotate = dict.fromkeys(a.setting, False)
    paths = {name: out / (tag(name, shots[name], a.max_new_tokens, rotate[name]) + ".items.jsonl")
             for name in a.setting}
    for task in ("numeric", "choice"):
        # a resumed file's items are spent already; only the new ones count
        new = sum(a.n - (len(p.read_text().splitlines()) if p.exists() else 0)
                  for name, p in paths.items() if SETTINGS[name][0] == task)
        if new and spent(out, task) + new > BUDGET:
            ap.error(f"{spent(out, task)} {task} items are spent already; {new} more would pass the pilot's "
                     f"budget of {BUDGET} per task (issue 23)")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from axolotl_mipo.generation.hf import HFBackend

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    backend = HFBackend(model, tok, model_id={"path": a.model}, max_new_tokens=a.max_new_tokens, do_sample=False,
                        batch_size=a.batch_size)
    for name in a.setting:
        summary, items = run_setting(backend, tok, name, a.n, shots[name], paths[name], rotate[name],
                                     a.library_shots, a.prompt_template)
        summary |= {"max_new_tokens": a.max_new_tokens, "batch_size": a.batch_size,
                    "threads": torch.get_num_threads()}
        with open(out / "summary.jsonl", "a") as f:
            f.write(json.dumps(summary) + "\n")
        print(f"{name} shots={summary['shots']} n={summary['n']}: accuracy {summary['accuracy']:.2f}, "
              f"unparseable {summary['unparseable']:.2f}, {summary['mean_new_tokens']:.0f} new tokens/item, "
              f"{summary['s_per_item']:.2f} s/item wall", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
