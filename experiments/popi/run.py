#!/usr/bin/env python
"""POPI's trained summarizer against the zero-shot one, on the synthetic task with held-out users (CPU).

    python -m experiments.popi.run --seeds 0 1 2 --out runs/popi

Resumable: every stage of every seed writes its output under ``OUT/seed-N/`` and is skipped when
that output exists, so rerunning the same command continues where it stopped. Per seed:

1. **Task and pairs.** :func:`experiments.tasks.synthetic.make_task` (32 users x 10 queries);
   the users are split 24 for training, 8 held out (users, not rows: the summarizer never sees a
   held-out user). Each row's held-out pair: chosen = the user's own reference answer, rejected = a
   reference written for another user for the same query (it fails at least one of the user's
   preferences). Written in the ``alignx`` shape: the user's stated preferences as ``Demographic
   Information`` and two of the user's other pairs as ``Pair-wise Comparative Feedback`` (the
   history); the row's own pair is never in its history.
2. **Base.** The first study's weakly personalized tiny Llama (:func:`experiments.harness.train_weak_base`).
3. **Summarizer.** ``axolotl train`` with ``axolotl_mipo.POPIPlugin`` (``rl: grpo``, no vLLM, LoRA)
   on the training users' rows.
4. **Summaries** of the held-out users' rows, zero-shot (base model) and trained (base + adapter),
   same prompt, greedy; each scored with POPI's reward by the frozen base model, and its preference
   accuracy: the row counts when the summary raises the generator's chosen-over-rejected log-ratio
   above the query-alone one (``delta > 0``). Per row, so the two summarizers pair row by row.
5. **MIPO on each kind of summary.** Two ``axolotl train`` runs of the MIPO plugin on the training
   users' rows (``drop_context``, ``loss: dpo``, :func:`experiments.harness.mipo_config`), with
   ``context_builder: preference_summary`` written by the base model (zero-shot) or by the trained
   summarizer (``mipo.summary.summarizer``). MIPO's summaries are sampled at its generation
   settings (temperature 0.1); the held-out ones are step 4's greedy ones.
6. **Evaluation** of base and base + each MIPO adapter on the held-out rows, each kind with its own
   summaries as the context: MI, context identification (K = 2/4/8, among the held-out rows'
   summaries), the synthetic checkers, and preference accuracy on the rows' human pairs; same
   sampling seed for every model, so differences pair per row.

Statistics (``axolotl_mipo.evaluation.stats``): per-row paired differences, a hierarchical bootstrap
95% interval over seeds then rows, and a two-sided bootstrap p-value. Reported: trained minus
zero-shot summaries (reward, accuracy; and the base generator's MI / identification with each
kind of summary), each MIPO adapter after minus before, and MIPO-on-trained minus MIPO-on-zero-shot
(after). Settings were fixed before any full run; nothing is tuned on results.

``OUT/results.json`` (every figure, per seed), ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from experiments.harness import (
    evaluate_synthetic,
    logger,
    mipo_config,
    read_train_log,
    run_axolotl,
    stage,
    synthetic_per_row,
    train_weak_base,
)

N_USERS, QUERIES_PER_USER, HELDOUT_USERS = 32, 10, 8
HISTORY_PAIRS = 2
SUMMARY_TOKENS = 48
SEQUENCE_LEN = 1024
GRPO = {"num_generations": 4, "max_steps": 60, "micro_batch_size": 8, "learning_rate": 5e-4}
KINDS = ("zero_shot", "trained")
EVAL = {"k": [2, 4, 8], "max_new_tokens": 128, "temperature": 1.0, "top_p": 1.0, "batch_size": 32}
MIPO_METRICS = ["mi_mean", "accuracy@K2", "accuracy@K4", "accuracy@K8", "pref_all", "pref_accuracy_with_context"]
RESAMPLES = 2000
SFT_STEPS = 200  # the first study's
MIPO_OVERRIDES: dict = {}  # top-level axolotl keys set on the MIPO runs (the smoke run's)
MIPO_NEW_TOKENS: int | None = None  # MIPO's response length; None: mipo_config's
# --smoke: proves the machinery in a few minutes (the test in tests/experiments/popi); its figures are not results
SMOKE = {"N_USERS": 8, "QUERIES_PER_USER": 4, "HELDOUT_USERS": 2, "SUMMARY_TOKENS": 8, "SFT_STEPS": 4,
         "EVAL": {**EVAL, "k": [2, 4], "max_new_tokens": 8, "batch_size": 16}, "RESAMPLES": 100,
         "MIPO_OVERRIDES": {"max_steps": 2, "micro_batch_size": 4}, "MIPO_NEW_TOKENS": 8}


log = logger("popi")


def task(seed: int, out: Path) -> None:
    from experiments.tasks import synthetic as S

    rows = S.make_task(N_USERS, QUERIES_PER_USER, seed)
    users = S.users_from_rows(rows)
    rng = random.Random(f"{seed}-popi")
    slot = dict(S.QUERIES)
    by_user: dict[str, list[dict]] = {}
    for r in rows:
        r["rejected"] = S.reference_response(rng.choice([u for k, u in users.items() if k != r["user_id"]]),
                                             slot[r["query"]], rng)
        by_user.setdefault(r["user_id"], []).append(r)
    ids = sorted(users)
    rng.shuffle(ids)
    held = set(ids[:HELDOUT_USERS])
    for name, keep in (("train", lambda u: u not in held), ("heldout", lambda u: u in held)):
        lines = []
        for uid in sorted(u for u in by_user if keep(u)):
            own = by_user[uid]
            for i, r in enumerate(own):
                past = [own[(i + k) % len(own)] for k in range(1, HISTORY_PAIRS + 1)]
                lines.append({"prompt": r["query"], "chosen": r["reference"], "rejected": r["rejected"],
                              "Demographic Information": r["context"], "user_id": uid,
                              "Pair-wise Comparative Feedback": [{"prompt": p["query"], "chosen": p["reference"],
                                                                 "rejected": p["rejected"]} for p in past]})
        S.write_jsonl(lines, out / f"{name}.jsonl")
    S.write_jsonl(rows, out / "task.jsonl")


def summarizer_config(seed: int, out: Path, max_steps: int) -> dict:
    return {
        "base_model": str(out / "sft-model"), "tokenizer_type": "AutoTokenizer",
        "plugins": ["axolotl_mipo.POPIPlugin"], "rl": "grpo",
        "trl": {"reward_funcs": ["axolotl_mipo.popi.reward.popi_reward"], "use_vllm": False, "beta": 0.0,
                "num_generations": GRPO["num_generations"], "max_completion_length": SUMMARY_TOKENS,
                "temperature": 1.0},
        "popi": {"datasets": [{"path": str(out / "train.jsonl"), "format": "alignx",
                               "context_parts": ["demographics", "pairs"]}],
                 "beta": 0.01, "seed": seed, "max_words": 30, "batch_size": 32},
        "adapter": "lora", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_target_linear": True,
        "sequence_len": SEQUENCE_LEN, "micro_batch_size": GRPO["micro_batch_size"], "gradient_accumulation_steps": 1,
        "num_epochs": 1, "max_steps": max_steps, "learning_rate": GRPO["learning_rate"], "optimizer": "adamw_torch",
        "lr_scheduler": "constant", "seed": seed, "bf16": False, "fp16": False, "tf32": False,
        "output_dir": str(out / "summarizer"), "dataset_prepared_path": str(out / "prepared"),
        "logging_steps": 5, "save_strategy": "no", "dataloader_num_workers": 0,
    }


def _heldout_rows(out: Path) -> list[dict]:
    """The held-out rows with what the evaluation needs (reference, preferences), in heldout.jsonl order."""
    task_rows = {(r["user_id"], r["query"]): r for r in map(json.loads, (out / "task.jsonl").read_text().splitlines())}
    rows = []
    for line in (out / "heldout.jsonl").read_text().splitlines():
        h = json.loads(line)
        t = task_rows[(h["user_id"], h["prompt"])]
        rows.append({"user_id": h["user_id"], "query": h["prompt"], "reference": t["reference"],
                     "preferences": t["preferences"], "human_chosen": h["chosen"], "human_rejected": h["rejected"]})
    return rows


def measure(seed: int, out: Path) -> dict:
    """Summaries of the held-out users' rows, zero-shot and trained, with POPI's reward and accuracy per row.

    Also writes ``heldout-<kind>.jsonl``: the held-out rows with that kind's summary as the context."""
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    from axolotl_mipo.args import MIPOConfig, MIPODatasetConfig
    from axolotl_mipo.data.rows import load_examples
    from axolotl_mipo.generation.hf import HFBackend
    from axolotl_mipo.generation.summarizer import summarizer_backend
    from axolotl_mipo.pipeline.summary import summarize_contexts
    from axolotl_mipo.popi.reward import FrozenGenerator, POPIReward, RewardSettings, load_generator
    from experiments.tasks import synthetic as S

    base = str(out / "sft-model")
    tok = AutoTokenizer.from_pretrained(base)
    examples = load_examples([MIPODatasetConfig(path=str(out / "heldout.jsonl"), format="alignx",
                                                context_parts=["demographics", "pairs"])])
    rows = _heldout_rows(out)
    if [ex.messages[-1][1] for ex in examples] != [r["query"] for r in rows]:
        raise RuntimeError("the alignx reader changed the held-out rows' order or count")
    cfg = DictDefault({"base_model": base})
    result = {}
    gen: FrozenGenerator = load_generator(RewardSettings(generator=base, device="cpu", batch_size=32))
    for kind in KINDS:
        summarizer = str(out / "summarizer") if kind == "trained" else None
        mipo = MIPOConfig.model_validate({
            "datasets": [{"path": "unused"}], "context_builder": "preference_summary", "seed": seed,
            "summary": {"max_new_tokens": SUMMARY_TOKENS, "max_words": 30,
                        **({"summarizer": summarizer} if summarizer else {})},
            "generation": {"device": "cpu", "do_sample": False, "batch_size": 32}})
        writer = summarizer_backend(cfg, mipo, tok) if summarizer else HFBackend.from_config(cfg, mipo, tok)
        try:
            summarized, report = summarize_contexts(examples, writer, str(out / "summary_cache"), tok,
                                                    max_new_tokens=SUMMARY_TOKENS, max_words=30, progress=False,
                                                    max_prompt_tokens=SEQUENCE_LEN - SUMMARY_TOKENS)  # as in GRPO
        finally:
            writer.close()
        reward = POPIReward(RewardSettings(generator=base), generator=gen)
        texts = [ex.context if ex.context != ex.meta["history"] else "" for ex in summarized]
        rewards, dpo, _ = reward.score(texts, [ex.message_dicts() for ex in summarized],
                                       [ex.human_pair[0] for ex in summarized], [ex.human_pair[1] for ex in summarized])
        # dpo = log sigmoid(beta * delta) / beta: above log(1/2) / beta exactly when delta > 0
        half = -0.6931471805599453 / reward.settings.beta
        hits = [int(d > half) for d in dpo]
        result[kind] = {"reward": statistics.fmean(rewards), "accuracy": statistics.fmean(hits),
                        "empty_summaries": reward.stats.empty_summaries, "rows": len(rewards),
                        "summary_tokens_mean": report.summary_tokens_mean,
                        "per_row": {"reward": rewards, "accuracy": hits}, "summaries": texts[:8]}
        S.write_jsonl([{**r, "context": t or "(no summary)"} for r, t in zip(rows, texts)],
                      out / f"heldout-{kind}.jsonl")
        log(f"seed {seed}: {kind}: reward {result[kind]['reward']:.3f}, accuracy {result[kind]['accuracy']:.3f}")
    return result


def mipo_train_config(seed: int, out: Path, kind: str) -> dict:
    """The first study's MIPO run (drop_context, dpo) on the training users, contexts = this kind's summaries."""
    d = out / f"mipo-{kind}"
    cfg = mipo_config(seed, out / "sft-model", out / "train.jsonl", d)
    m = cfg["mipo"]
    m["datasets"] = [{"path": str(out / "train.jsonl"), "format": "alignx", "context_parts": ["demographics", "pairs"]}]
    m["context_builder"] = "preference_summary"
    m["summary"] = {"max_new_tokens": SUMMARY_TOKENS, "max_words": 30, "report_rows": 0,
                    **({"summarizer": str(out / "summarizer")} if kind == "trained" else {})}
    m["cache_dir"] = str(out / "mipo_cache")
    # the histories are fitted to the same prompt budget as in GRPO and step 4
    m["generation"]["max_prompt_tokens"] = SEQUENCE_LEN - SUMMARY_TOKENS
    cfg["sequence_len"] = SEQUENCE_LEN
    cfg.update(MIPO_OVERRIDES)
    if MIPO_NEW_TOKENS:
        m["generation"]["max_new_tokens"] = MIPO_NEW_TOKENS
    return cfg


def evaluate(out: Path, kind: str, seed: int, adapter: Path | None, reference_scores=None) -> dict:
    from transformers import AutoTokenizer

    from axolotl_mipo.evaluation.evaluate import load_model

    base = out / "sft-model"
    rows = [json.loads(x) for x in (out / f"heldout-{kind}.jsonl").read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(base)
    model = load_model(str(base), str(adapter) if adapter else None, device="cpu")
    res = evaluate_synthetic(model, tok, rows, EVAL, seed, reference_scores=reference_scores)
    return {"figures": res.figures, "per_row": synthetic_per_row(res, rows),
            "pair_scores": res.extra.get("pair_scores"), "samples": res.extra.get("samples", [])[:4]}


def worker(seed: int, root: Path, threads: int, max_steps: int) -> dict:
    import torch
    import yaml

    from experiments.tasks import synthetic as S

    torch.set_num_threads(threads)
    out = root / f"seed-{seed}"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "heldout.jsonl").exists():
        task(seed, out)
    if not (out / "sft-model" / "config.json").exists():
        rows = [json.loads(x) for x in (out / "task.jsonl").read_text().splitlines()]
        train_users = {json.loads(x)["user_id"] for x in (out / "train.jsonl").read_text().splitlines()}
        train = [r for r in rows if r["user_id"] in train_users]  # held-out users are new to the base too
        train_weak_base(seed, train, S.users_from_rows(train), out / "sft-model", threads, steps=SFT_STEPS)
    if not (out / "summarizer" / "adapter_model.safetensors").exists():
        path = out / "summarizer.yml"
        path.write_text(yaml.safe_dump(summarizer_config(seed, out, max_steps)))
        log(f"seed {seed}: axolotl train {path}")
        run_axolotl(path, out / "summarizer_train.log", threads)
    result = {"summaries": stage(out / "measure.json", lambda: measure(seed, out)), "mipo": {}}
    for kind in KINDS:
        d = out / f"mipo-{kind}"
        adapter = d / "mipo"
        if not (adapter / "adapter_model.safetensors").exists():
            d.mkdir(parents=True, exist_ok=True)
            path = d / "mipo.yml"
            path.write_text(yaml.safe_dump(mipo_train_config(seed, out, kind)))
            log(f"seed {seed}: MIPO on {kind} summaries: axolotl train {path}")
            run_axolotl(path, d / "axolotl_train.log", threads)
        before = stage(d / "eval-base.json", lambda kind=kind: evaluate(out, kind, seed, None))
        after = stage(d / "eval-mipo.json",
                        lambda kind=kind, b=before, a=adapter: evaluate(out, kind, seed, a, b.get("pair_scores")))
        result["mipo"][kind] = {"before": before, "after": after, "training": read_train_log(d / "axolotl_train.log")}
        log(f"seed {seed}: MIPO on {kind} summaries: MI {before['figures'].get('mi_mean', float('nan')):.3f} -> "
            f"{after['figures'].get('mi_mean', float('nan')):.3f}")
    return result


# ------------------------------------------------------------------ statistics


def _diff_entry(per_seed_a: list, per_seed_b: list) -> dict:
    from axolotl_mipo.evaluation import stats as St

    diffs = [St.paired_differences(a, b) if a is not None and b is not None else None
             for a, b in zip(per_seed_a, per_seed_b)]
    return St.paired_effect(diffs, RESAMPLES, 0.95)


def _mean(vals):
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


def summarize(results: dict[int, dict]) -> dict:
    seeds = sorted(results)
    out: dict = {"summaries": {}, "generator_with_summaries": {}, "mipo": {}, "mipo_trained_vs_zero_shot": {}}
    for key in ("reward", "accuracy"):
        per = {k: [results[s]["summaries"][k]["per_row"][key] for s in seeds] for k in KINDS}
        out["summaries"][key] = {"zero_shot": _mean(sum(per["zero_shot"], [])),
                                 "trained": _mean(sum(per["trained"], [])),
                                 "trained_minus_zero_shot": _diff_entry(per["trained"], per["zero_shot"])}
    for m in MIPO_METRICS:
        rows = {k: {w: [results[s]["mipo"][k][w]["per_row"].get(m) for s in seeds] for w in ("before", "after")}
                for k in KINDS}
        if any(v is None for k in KINDS for w in rows[k].values() for v in w):
            continue
        out["generator_with_summaries"][m] = {
            "zero_shot": _mean(sum(rows["zero_shot"]["before"], [])),
            "trained": _mean(sum(rows["trained"]["before"], [])),
            "trained_minus_zero_shot": _diff_entry(rows["trained"]["before"], rows["zero_shot"]["before"])}
        out["mipo"][m] = {k: {"before": _mean(sum(rows[k]["before"], [])), "after": _mean(sum(rows[k]["after"], [])),
                              "effect": _diff_entry(rows[k]["after"], rows[k]["before"])} for k in KINDS}
        out["mipo_trained_vs_zero_shot"][m] = _diff_entry(rows["trained"]["after"], rows["zero_shot"]["after"])
    return out


def _ci(e: dict) -> str:
    if e.get("mean") is None:
        return "n/a"
    return f"{e['mean']:+.3f} [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}] (p {e['p']:.3f})"


def table(summary: dict, seeds: list[int]) -> str:
    def lvl(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [f"POPI on the synthetic task: {len(seeds)} seeds ({seeds}), {HELDOUT_USERS} held-out users x "
             f"{QUERIES_PER_USER} rows per seed. "
             "Differences are per row (same row, same sampling seed), pooled; [95% interval] and two-sided p from a "
             f"hierarchical bootstrap over seeds then rows ({RESAMPLES} resamples). Not corrected for the number of "
             "comparisons.", "",
             "**1. Summaries: trained summarizer vs zero-shot (scored by the frozen base generator)**", "",
             "| figure | zero-shot | trained | trained − zero-shot [95% CI] (p) |", "|---|---|---|---|"]
    names = {"reward": "POPI reward (beta 0.01)", "accuracy": "preference accuracy (delta > 0)"}
    for key, e in summary["summaries"].items():
        lines.append(f"| {names[key]} | {lvl(e['zero_shot'])} | {lvl(e['trained'])} | "
                     f"{_ci(e['trained_minus_zero_shot'])} |")
    lines += ["", "**2. The base generator with each kind of summary as the context (no MIPO)**", "",
              "| metric | zero-shot summaries | trained summaries | trained − zero-shot [95% CI] (p) |",
              "|---|---|---|---|"]
    for m, e in summary["generator_with_summaries"].items():
        lines.append(f"| {m} | {lvl(e['zero_shot'])} | {lvl(e['trained'])} | {_ci(e['trained_minus_zero_shot'])} |")
    lines += ["", "**3. MIPO (drop_context, dpo) trained on each kind of summary: base → after, effect**", "",
              "| metric | on zero-shot summaries | on trained summaries | after: trained − zero-shot [95% CI] (p) |",
              "|---|---|---|---|"]
    for m, e in summary["mipo"].items():
        cells = [f"{lvl(e[k]['before'])} → {lvl(e[k]['after'])}; {_ci(e[k]['effect'])}" for k in KINDS]
        lines.append(f"| {m} | {cells[0]} | {cells[1]} | {_ci(summary['mipo_trained_vs_zero_shot'][m])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import os

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/popi")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help=f"GRPO steps of the summarizer ({GRPO['max_steps']})")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 2 GRPO steps: the machinery only, not results")
    a = p.parse_args(argv)
    if a.smoke:
        globals().update(SMOKE)
    a.max_steps = a.max_steps or (2 if a.smoke else GRPO["max_steps"])
    os.environ.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    root = Path(a.out).resolve()  # axolotl train runs in another working directory
    t0 = time.time()
    results = {s: worker(s, root, a.threads, a.max_steps) for s in a.seeds}  # one seed at a time, resumable
    summary = summarize(results)
    doc = {"seeds": a.seeds, "max_steps": a.max_steps, "smoke": a.smoke, "wall_s_this_run": time.time() - t0,
           "summary": summary,
           "per_seed": {s: {"summaries": {k: {x: v for x, v in r["summaries"][k].items() if x != "per_row"}
                                          for k in KINDS},
                            "mipo": {k: {w: r["mipo"][k][w]["figures"] for w in ("before", "after")} for k in KINDS},
                            "training": {k: r["mipo"][k]["training"] for k in KINDS}} for s, r in results.items()}}
    (root / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    (root / "table.md").write_text(table(summary, a.seeds))
    print(table(summary, a.seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
