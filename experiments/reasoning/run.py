#!/usr/bin/env python
"""Does MIPO improve SmolLM2's answers to generated reasoning questions? The pre-registered study.

    python -m experiments.reasoning.run --plan experiments/reasoning/PLAN.md --out runs/reasoning
    python -m experiments.reasoning.run --plan experiments/reasoning/PLAN.md --out runs/reasoning-smoke --smoke

MIPO's second result (arXiv 2603.19294): pairs built from the model's own answers, with no label, improve
its reasoning. The settings are the YAML block under ``## Settings`` of the plan, read as committed. Per
seed and task (a numeric task in GSM8K's shape and a multiple-choice task in ARC's, written by
:mod:`experiments.tasks.reasoning` and read through the library's ``gsm8k`` and ``arc`` presets, their
few-shot exemplars from a separate file):

1. training and held-out questions drawn apart (and apart from the pilot's items and the exemplars), and
   the base model's greedy answers to the held-out ones scored
   (:func:`axolotl_mipo.evaluation.accuracy.evaluate_accuracy`);
2. each arm (a pairing strategy with ``dpo``) trained by a real ``axolotl train`` with the plugin on that
   task's training questions; the arms of a seed share one generation cache, so the answers to the
   complete questions are generated once;
3. each arm's adapter evaluated on the same held-out questions, greedily (paired per question).

Every stage writes a JSON under ``OUT/seed<s>/<task>/``; a rerun reads finished stages back, so the study
may span sessions. At the end: ``OUT/report.json`` (every effect, Holm-adjusted p-value, verdict and cost),
``OUT/table.md``; ``--publish`` copies them into ``experiments/reasoning/results/`` (refused with
``--smoke``).

``--smoke``: a tiny random Llama instead of SmolLM2, one seed, 8 + 8 questions per task, 8 new tokens,
2 steps per arm: it shows the runner works; its numbers are not results.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

from experiments.harness import check_out, cpu_seconds, logger, mipo_config, plan_settings, stage, train_arm
from experiments.reasoning import decide
from experiments.tasks import reasoning as T

HERE = Path(__file__).resolve().parent
log = logger("reasoning")

# the plan fixes no smoke sizes (a smoke run is not a result); these only make the runner's test quick
SMOKE = {"sizes": {"train": 8, "heldout": 8}, "max_new_tokens": 8, "training": {"max_steps": 2},
         "bootstrap": {"resamples": 200}}
PRESET = {"numeric": "gsm8k", "choice": "arc"}
NO_PAIRS = "no usable pairs"  # axolotl_mipo.pipeline.builder's error when every pair was dropped
# axolotl_mipo.pairing.strategies' refusal when one response covers more than half the rows: mismatched_prompt
# never pairs two identical responses, so no pairing of those rows exists and MIPO makes no pair at all
NO_DISTINCT_RESPONSES = "never pairs two identical responses"


# ------------------------------------------------------------------ plan


def load_plan(path: Path, smoke: bool = False) -> dict:
    """The plan's settings; with ``smoke``, the first seed and :data:`SMOKE`'s sizes (not results)."""
    plan = plan_settings(path)
    for task, spec in plan["tasks"].items():
        if task not in PRESET:
            raise SystemExit(f"{path}: tasks.{task}: a task is 'numeric' or 'choice'")
        for key in ("knobs", "train", "heldout", "max_new_tokens"):
            if key not in spec:
                raise SystemExit(f"{path}: tasks.{task} needs {key!r}")
    for arm in plan["arms"]:
        if arm.get("loss", "dpo") != "dpo":
            raise SystemExit(f"{path}: arm {arm['name']}: this study trains with dpo only (issue 23)")
    if smoke:
        plan = copy.deepcopy(plan)
        plan["seeds"] = plan["seeds"][:1]
        for spec in plan["tasks"].values():
            spec.update(SMOKE["sizes"], max_new_tokens=SMOKE["max_new_tokens"])
        plan["training"].update(SMOKE["training"])
        plan["bootstrap"].update(SMOKE["bootstrap"])
    plan["mode"] = "smoke" if smoke else "full"
    return plan


# ------------------------------------------------------------------ data


def _rows(task: str, n: int, seed: int, knobs: dict, exclude=()) -> list[dict]:
    make = T.numeric_rows if task == "numeric" else T.choice_rows
    return make(n, seed=seed, exclude=exclude, **knobs)


def exemplar_file(out: Path, plan: dict, task: str) -> Path:
    """The task's few-shot file (the same for every seed): the pilot's exemplars, drawn as the pilot drew them
    (apart from the ``exemplars.pilot_items`` questions it asked), so the study's prompts are the pilot's."""
    spec = plan["tasks"][task]
    path = out / f"exemplars_{task}.jsonl"
    if not path.exists():
        pilot = _rows(task, plan["exemplars"]["pilot_items"], plan["pilot"]["seed"], spec["knobs"])
        rows = T.exemplar_rows(task, plan["exemplars"]["k"], seed=plan["exemplars"]["seed"],
                               exclude=[r["question"] for r in pilot], **spec["knobs"])
        T.write_jsonl(rows, path)
    return path


def seed_rows(d: Path, plan: dict, task: str, seed: int, shots: Path) -> tuple[Path, Path]:
    """``(train.jsonl, heldout.jsonl)`` of one seed and task: distinct questions, none a pilot item or exemplar."""
    spec = plan["tasks"][task]
    train, heldout = d / "train.jsonl", d / "heldout.jsonl"
    if not (train.exists() and heldout.exists()):
        pilot = _rows(task, plan["pilot"]["n"], plan["pilot"]["seed"], spec["knobs"])
        exclude = [r["question"] for r in pilot] + [json.loads(x)["question"] for x in shots.read_text().splitlines()]
        rows = _rows(task, spec["train"] + spec["heldout"], seed, spec["knobs"], exclude)
        d.mkdir(parents=True, exist_ok=True)
        T.write_jsonl(rows[:spec["train"]], train)
        T.write_jsonl(rows[spec["train"]:], heldout)
    return train, heldout


def dataset_entry(plan: dict, task: str, path: Path, shots: Path) -> dict:
    """A ``mipo.datasets`` entry: the task's preset, its exemplar file and the plan's prompt template."""
    entry = {"path": str(path), "format": PRESET[task], "few_shot_path": str(shots)}
    if plan["tasks"][task].get("prompt_template"):
        entry["prompt_template"] = plan["tasks"][task]["prompt_template"]
    return entry


def examples(plan: dict, task: str, path: Path, shots: Path):
    """The held-out rows as the library reads them (the gold answer in ``meta`` only)."""
    from axolotl_mipo.args import MIPODatasetConfig
    from axolotl_mipo.data.rows import load_examples

    return load_examples([MIPODatasetConfig(**dataset_entry(plan, task, path, shots))], dedupe=False)


# ------------------------------------------------------------------ training and evaluation


def train_config(plan: dict, arm: dict, task: str, seed: int, base: Path, train: Path, shots: Path, d: Path,
                 cache: Path) -> dict:
    """:func:`~experiments.harness.mipo_config` with the plan's settings, the task's preset and the arm's
    strategy; every step logged (``logging_steps`` 1), so the log's step count is the optimizer's."""
    cfg = mipo_config(seed, base, train, d, arm["strategy"])
    g, t = plan["generation"], plan["training"]
    cfg["mipo"].update(datasets=[dataset_entry(plan, task, train, shots)], loss="dpo", cache_dir=str(cache))
    if arm.get("strategy_kwargs"):
        cfg["mipo"]["strategy_kwargs"] = arm["strategy_kwargs"]
    cfg["mipo"]["generation"].update(max_new_tokens=plan["tasks"][task]["max_new_tokens"],
                                     temperature=g["temperature"], top_p=g["top_p"], batch_size=g["batch_size"],
                                     device="cpu")
    cfg.update(lora_r=t["lora_r"], lora_alpha=t["lora_alpha"], learning_rate=t["learning_rate"],
               num_epochs=t["num_epochs"], micro_batch_size=t["micro_batch_size"], rl_beta=t["rl_beta"],
               sequence_len=t["sequence_len"], logging_steps=1)
    if t.get("max_steps"):
        cfg["max_steps"] = t["max_steps"]
    return cfg


def evaluate(base: Path, adapter: Path | None, rows, plan: dict, task: str, tok) -> dict:
    """Greedy answers to the held-out rows, scored per row: ``correct``, ``unparseable``, ``limit_hit``,
    ``new_tokens``, plus the answers (for the letter counts of multiple choice) and the responses."""
    from axolotl_mipo.data.example import GOLD_ANSWER_KEY, GOLD_KIND_KEY
    from axolotl_mipo.evaluation.accuracy import evaluate_accuracy
    from axolotl_mipo.evaluation.answers import normalize_gold
    from axolotl_mipo.evaluation.evaluate import load_model
    from axolotl_mipo.generation.sampling import SamplingSettings

    n_new = plan["tasks"][task]["max_new_tokens"]
    model = load_model(str(base), str(adapter) if adapter else None, device="cpu", dtype="float32")
    sampling = SamplingSettings(max_new_tokens=n_new, do_sample=False, seed=0)
    figures, scores = evaluate_accuracy(model, tok, rows, sampling=sampling, modes=("greedy",),
                                        batch_size=plan["evaluation"]["batch_size"], progress=False)
    s = scores["greedy"]
    tokens = [len(tok(r, add_special_tokens=False)["input_ids"]) for r in s.responses]
    return {"figures": figures,
            "per_row": {"accuracy": [int(c) for c in s.correct], "unparseable": [int(a is None) for a in s.answers],
                        "limit_hit": [int(k >= n_new) for k in tokens], "new_tokens": tokens},
            "answers": s.answers, "responses": s.responses, "rows": s.rows,
            "gold": [normalize_gold(ex.meta[GOLD_ANSWER_KEY], ex.meta[GOLD_KIND_KEY]) for ex in rows]}


def train_task_arm(d: Path, plan: dict, arm: dict, task: str, seed: int, base: Path, train: Path, shots: Path,
                   cache: Path, threads: int) -> dict:
    """Train one arm on one task. MIPO may keep no pair (every answer the same text): the arm then has no
    adapter and is recorded as untrained (its model is the base), not as a failure of the study. That is
    either every pair dropped as identical (``partial_prompt``) or ``mismatched_prompt`` refusing to pair
    rows when one response text covers more than half of them (the reason keeps its count)."""
    cfg = train_config(plan, arm, task, seed, base, train, shots, d, cache)
    existed = (Path(cfg["output_dir"]) / "adapter_model.safetensors").exists()
    try:
        t = train_arm(d, cfg, threads, label=f"seed {seed} {task} {arm['name']}")
    except RuntimeError as exc:
        # the pipeline's MIPODataError or the strategy's refusal, in the failed `axolotl train`'s log tail; its own
        # line is the reason (the tail ends with accelerate's traceback)
        reason = next((ln.strip() for ln in str(exc).splitlines()
                       if NO_PAIRS in ln or NO_DISTINCT_RESPONSES in ln), None)
        if reason is None:
            raise
        log(f"seed {seed} {task} {arm['name']}: MIPO kept no pair; the arm's model is the base")
        return {"adapter": None, "trained": False, "reason": reason, "log": {},
                "stages": {"train": {"wall_s": 0.0, "cpu_s": 0.0}}, "measured": True}
    metrics = {k: v for k, v in t.training.items() if k not in ("wall_s", "cpu_s")}
    return {"adapter": str(t.adapter), "trained": True, "log": metrics, "measured": not existed,
            "stages": {"train": {"wall_s": t.training["wall_s"], "cpu_s": t.training["cpu_s"]}}}


def run_task(out: Path, base: Path, plan: dict, seed: int, task: str, tok, threads: int) -> dict:
    """One seed and task: its rows, the base evaluation, and each arm trained and evaluated (each a stage)."""
    d = out / f"seed{seed}" / task
    shots = exemplar_file(out, plan, task)
    train, heldout = seed_rows(d, plan, task, seed, shots)
    rows = examples(plan, task, heldout, shots)
    log(f"seed {seed} {task}: {plan['tasks'][task]['train']} training, {len(rows)} held-out questions; "
        "base evaluation")
    base_res = stage(d / "base.json", lambda: evaluate(base, None, rows, plan, task, tok))
    cache = out / f"seed{seed}" / "mipo_cache"
    arms, training = {}, {}
    for arm in plan["arms"]:
        name = arm["name"]
        t = training[name] = stage(d / f"{name}.train.json", lambda arm=arm: train_task_arm(
            d / arm["name"], plan, arm, task, seed, base, train, shots, cache, threads))
        adapter = Path(t["adapter"]) if t["adapter"] else None
        arms[name] = stage(d / f"{name}.json", lambda adapter=adapter: evaluate(base, adapter, rows, plan, task, tok))
        acc = lambda r: sum(r["per_row"]["accuracy"]) / len(r["per_row"]["accuracy"])  # noqa: E731
        log(f"seed {seed} {task} {name}: accuracy {acc(arms[name]):.3f} (base {acc(base_res):.3f}), "
            f"{t['log'].get('pairs_kept', '?') if t['trained'] else 0} pairs kept")
    return {"base": base_res, "arms": arms, "training": training}


def run_seed(out: Path, base: Path, plan: dict, seed: int, threads: int) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    return {task: run_task(out, base, plan, seed, task, tok, threads) for task in plan["tasks"]}


# ------------------------------------------------------------------ the tiny model of --smoke


def tiny_base(out: Path, plan: dict) -> Path:
    """A tiny random Llama whose tokenizer knows the tasks' text and the presets' instructions."""
    from axolotl_mipo.data.presets.reasoning import CHOICE_TEMPLATE, NUMBER_TEMPLATE
    from axolotl_mipo.testing.tiny import TinyModelSpec, build_tiny_model

    corpus = {NUMBER_TEMPLATE, CHOICE_TEMPLATE, "The answer is: A B C D E ####"}
    for task, spec in plan["tasks"].items():
        if spec.get("prompt_template"):
            corpus.add(spec["prompt_template"])
        for r in _rows(task, spec["train"] + spec["heldout"] + 8, plan["seeds"][0], spec["knobs"]):
            corpus.add(r["question"])
            corpus.update(r["choices"]["text"] if task == "choice" else [r["answer"]])
    return build_tiny_model(out / "tiny-model", TinyModelSpec(), corpus=sorted(corpus))


# ------------------------------------------------------------------ main


def publish(out: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "table.md"):
        if (out / name).exists():
            shutil.copy2(out / name, dest / name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=str(HERE / "PLAN.md"))
    ap.add_argument("--out", default="runs/reasoning")
    ap.add_argument("--model", default="./smollm2-model", help="made here by make-smollm2 when missing")
    ap.add_argument("--smoke", action="store_true", help="the tiny model, a few rows: not a result")
    ap.add_argument("--publish", action="store_true", help=f"also copy the results into {HERE / 'results'}")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    if a.publish and a.smoke:
        raise SystemExit("--publish copies results; a --smoke run's figures are not results")
    os.environ.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    import torch

    torch.set_num_threads(a.threads)
    plan = load_plan(Path(a.plan), a.smoke)
    out = Path(a.out).resolve()
    check_out(out, plan)
    if a.smoke:
        base = tiny_base(out, plan)
    else:
        from axolotl_mipo.smollm2 import make_smollm2

        base = make_smollm2(Path(a.model).resolve())
    start, cpu0 = time.time(), cpu_seconds()
    results = {s: run_seed(out, base, plan, s, a.threads) for s in plan["seeds"]}
    doc = decide.report(results, plan, time.time() - start, cpu_seconds() - cpu0)
    (out / "report.json").write_text(json.dumps(doc, indent=1, default=str))
    md = decide.markdown(doc, plan)
    (out / "table.md").write_text(md)
    if a.publish:
        publish(out, HERE / "results")
    print(md)
    print(f"wrote {out / 'report.json'}, {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
