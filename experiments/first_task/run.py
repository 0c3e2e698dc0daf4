#!/usr/bin/env python
"""Does MIPO make a model use the user's context? A reproducible proof on the CPU.

    python -m experiments.first_task.run --seeds 0 1 2 --out runs/proof

For each seed, in its own worker process (the seeds run side by side):

1. **Task.** :func:`experiments.tasks.synthetic.make_task` with 32 users
   (every combination of length x formality x topic x format) and 10 queries
   each, 320 rows; the rows are shuffled and split into 256 training rows and
   64 held-out rows (a held-out row is a (user, query) pair training never saw;
   its user does appear in training with other queries).
2. **A weakly personalized base model** (:func:`experiments.harness.train_weak_base`).
   A tiny Llama (hidden 128, 2 layers)
   whose tokenizer is trained on the task's text, fine-tuned with a plain torch
   loop (cross-entropy on response tokens only, tokenized as TRL tokenizes a
   conversation) on examples drawn from the training rows like this:

   * with probability 1/2 the prompt has NO context and the response is a
     fresh reference answer of a uniformly random user: the model learns the
     population's marginal ``p(y | x)``;
   * otherwise the prompt has the user's context, and the response is that
     user's own reference answer with probability ``alpha = 0.25``, and a
     uniformly random user's answer otherwise.

   So the best this model can do is ``p(y | x, c) = alpha p_user(y) +
   (1 - alpha) p_marginal(y)``: it follows the context, but weakly, by design
   of its data, not by stopping training early. This stands in for a real
   instruct model that reads a user profile but answers generically most of the
   time. Nothing in this step knows about MIPO.
3. **Evaluate** it on the held-out rows (:func:`evaluate_model`): responses
   sampled WITH the context at temperature 1 (so the mean pointwise MI estimates
   ``I(Y; C | X)``), pointwise MI, context identification for K = 2, 4, 8,
   ROUGE-L / METEOR against the references, self-BLEU, and the task's own
   preference checkers.
4. **MIPO with the plugin**: a YAML with ``plugins: [axolotl_mipo.MIPOPlugin]``,
   ``strategy: drop_context`` (chosen generated with the context, rejected
   without it; MIPO's (arXiv 2603.19294) generation settings, temperature 0.1, top-p 0.9) on
   the 256 training rows, LoRA (r 16) DPO with beta 0.1 (MIPO's), 2
   epochs, lr 5e-4 cosine (a LoRA learning rate for a tiny model: MIPO's
   1e-6 is for full fine-tuning of 1B+ models), run as a real
   ``axolotl train`` subprocess. MIPO sees no references and no labels.
5. **Evaluate** base + adapter with the same sampling seed (paired comparison).

6. **Diagnose** what DPO did to its own training pairs: the change of mean
   ``log p`` of chosen and rejected, scored WITH the row's context and WITHOUT
   it. The margin's change splits into a part that also appears without the
   context (the model now prefers y+ over y- whatever the prompt says: no
   personalization) and the context-specific remainder; the pairs' own
   preference satisfaction shows which preferences they carry signal about.

The main process then writes ``OUT/report.json``, ``OUT/summary.md``, the
plots, and ``OUT/table.md`` with mean ± sample standard deviation across seeds,
and says whether MI and identification accuracy rose by more than the spread
(the larger of the before / after standard deviations across seeds), followed
by the diagnostics. Wall and CPU seconds are recorded per stage: the wall time
depends on what else runs on the machine, the CPU seconds much less.

``--strategy swap_context`` runs MIPO's appendix ablation (rejected
generated with another user's context) on the same base models.

The seed changes everything: the task's users and phrasings, the split, the
model's initialisation and SFT data, MIPO's sampling, LoRA's initialisation and
the evaluation's sampling. Settings were chosen before the first run and not
tuned on its outcome.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

from experiments.harness import (
    MAX_NEW_TOKENS,
    cpu_seconds,
    logger,
    mipo_config,
    run_axolotl,
    run_seed_workers,
    train_metrics,
    train_weak_base,
    worker_command,
    worker_threads,
)
from experiments.harness.weak_base import ALPHA, P_CONTEXT, SFT_STEPS

N_USERS = 32
QUERIES_PER_USER = 10
N_HELDOUT = 64
K_VALUES = (2, 4, 8)

HEADLINE = ["mi_mean", "accuracy@K2", "accuracy@K4", "accuracy@K8"]
SECONDARY = ["mi_per_token", "ref_mi_mean", "ref_accuracy@K4", "pref_all", "pref_length", "pref_formality",
             "pref_topic", "pref_format", "rouge_l", "meteor", "self_bleu", "distinct_2", "response_tokens"]


log = logger("proof")


# ------------------------------------------------------------------ worker


def _examples(rows):
    from axolotl_mipo.data.example import Example

    return [Example(index=i, messages=(("user", r["query"]),), context=r["context"], source="heldout",
                    meta={"reference": r["reference"], "user_id": r["user_id"], "preferences": r["preferences"]})
            for i, r in enumerate(rows)]


def read_pairs(out: Path, tok, train_rows, strategy: str, seed: int) -> list[dict]:
    """The training pairs MIPO built, rebuilt from its generation cache with the same strategy and seed.

    Pairs the builder dropped (an empty or identical response) are left out, as in training.
    """
    from axolotl_mipo.data.example import Example
    from axolotl_mipo.data.prompts import build_messages
    from axolotl_mipo.generation.cache import prompt_key
    from axolotl_mipo.pairing import get_strategy
    from axolotl_mipo.pipeline.builder import render_prompt

    cache = {}
    for shard in sorted((out / "prepared" / "mipo_cache").glob("*/shard-*.jsonl")):
        for line in shard.read_text(encoding="utf-8").split("\n")[:-1]:
            rec = json.loads(line)
            cache[rec["k"]] = rec["r"]
    examples = [Example(index=i, messages=(("user", r["query"]),), context=r["context"])
                for i, r in enumerate(train_rows)]
    strat = get_strategy(strategy)
    responses = {}
    for req in dict.fromkeys(strat.requests(examples, seed)):
        text = cache.get(prompt_key(render_prompt(tok, build_messages(examples[req.row].messages, req.context))))
        if text is not None:
            responses[req] = text
    pairs = []
    for pr in strat.pair(examples, responses, seed):
        c, j = responses.get(pr.chosen), responses.get(pr.rejected)
        if c is not None and j is not None and c.strip() and j.strip() and c.strip() != j.strip():
            pairs.append({"row": train_rows[pr.row], "chosen": c, "rejected": j})
    return pairs


def pair_diagnostics(pairs: list[dict], base_dir: Path, adapter: Path, tok) -> dict:
    """What the DPO update did to the training pairs, and how much of it depends on the context.

    For each model: mean log p of chosen and rejected, under the row's context and without it.
    The DPO margin's change splits into a part that also appears WITHOUT the context
    (the model learned to prefer y+ over y- whatever the prompt says: no personalization)
    and a context-specific remainder. Also: how often chosen / rejected obey the
    user's preferences (what signal the pairs carry).
    """
    from axolotl_mipo.data.prompts import build_messages
    from axolotl_mipo.evaluation.evaluate import load_model
    from axolotl_mipo.evaluation.metrics import preference_satisfaction
    from axolotl_mipo.scoring import response_logprobs
    from experiments.tasks import synthetic as S

    if not pairs:
        return {}
    msgs = [[("user", p["row"]["query"])] for p in pairs]
    with_c = [build_messages(m, p["row"]["context"]) for m, p in zip(msgs, pairs)]
    without = [build_messages(m, None) for m in msgs]
    ys_c, ys_r = [p["chosen"] for p in pairs], [p["rejected"] for p in pairs]
    lp = {}
    for label, ad in (("before", None), ("after", adapter)):
        model = load_model(str(base_dir), str(ad) if ad else None, device="cpu")
        scored = response_logprobs(model, tok, with_c * 2 + without * 2, ys_c + ys_r + ys_c + ys_r, batch_size=32)
        n = len(pairs)

        def mean(i, scored=scored, n=n):
            return sum(v for v, _ in scored[i * n:(i + 1) * n]) / n

        lp[label] = {"chosen|c": mean(0), "rejected|c": mean(1), "chosen|no c": mean(2), "rejected|no c": mean(3)}
    d = {k: lp["after"][k] - lp["before"][k] for k in lp["before"]}
    margin_c = d["chosen|c"] - d["rejected|c"]
    margin_0 = d["chosen|no c"] - d["rejected|no c"]
    prefs = [p["row"]["preferences"] for p in pairs]
    return {
        "pairs": len(pairs),
        "distinct_rejected": len({p["rejected"] for p in pairs}),
        "logp": lp,
        "delta_logp": d,
        "margin_change_with_context": margin_c,
        "margin_change_without_context": margin_0,
        "context_specific_margin_change": margin_c - margin_0,
        "chosen_satisfaction": preference_satisfaction(ys_c, prefs, S.check_preferences, S.DIMENSIONS),
        "rejected_satisfaction": preference_satisfaction(ys_r, prefs, S.check_preferences, S.DIMENSIONS),
    }


def worker(seed: int, out: Path, threads: int, strategy: str = "drop_context") -> None:
    import torch
    import yaml
    from transformers import AutoTokenizer

    from axolotl_mipo.evaluation.evaluate import evaluate_model, load_model
    from experiments.tasks import synthetic as S
    from experiments.tasks.synthetic import synthetic_checker

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t, c = time.time(), cpu_seconds()
    rows = S.make_task(N_USERS, QUERIES_PER_USER, seed)
    random.Random(f"{seed}-split").shuffle(rows)
    heldout, train = rows[:N_HELDOUT], rows[N_HELDOUT:]
    S.write_jsonl(train, out / "train.jsonl")
    S.write_jsonl(heldout, out / "heldout.jsonl")
    users = S.users_from_rows(rows)
    sft_info = train_weak_base(seed, train, users, out / "sft-model", threads)
    times["sft"], cpu["sft"] = time.time() - t, cpu_seconds() - c

    examples = _examples(heldout)
    tok = AutoTokenizer.from_pretrained(out / "sft-model")
    eval_kw = dict(k_values=K_VALUES, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0, top_p=1.0, seed=seed,
                   batch_size=32, checker=synthetic_checker, progress=False)
    t, c = time.time(), cpu_seconds()
    before = evaluate_model(load_model(str(out / "sft-model"), device="cpu"), tok, examples, **eval_kw)
    times["eval_before"], cpu["eval_before"] = time.time() - t, cpu_seconds() - c
    log(f"seed {seed}: before: MI {before.figures['mi_mean']:.3f}, acc@K4 {before.accuracy_per_k.get(4)}")

    cfg_path = out / "mipo.yml"
    cfg_path.write_text(yaml.safe_dump(mipo_config(seed, out / "sft-model", out / "train.jsonl", out, strategy)))
    t, c = time.time(), cpu_seconds()
    log(f"seed {seed}: axolotl train {cfg_path}")
    train_log = run_axolotl(cfg_path, out / "axolotl_train.log", threads)
    times["axolotl_train"], cpu["axolotl_train"] = time.time() - t, cpu_seconds() - c
    adapter = out / "mipo"
    if not (adapter / "adapter_model.safetensors").exists():
        raise RuntimeError(f"no adapter in {adapter}")

    t, c = time.time(), cpu_seconds()
    after = evaluate_model(load_model(str(out / "sft-model"), str(adapter), device="cpu"), tok, examples, **eval_kw)
    times["eval_after"], cpu["eval_after"] = time.time() - t, cpu_seconds() - c
    t, c = time.time(), cpu_seconds()
    diag = pair_diagnostics(read_pairs(out, tok, train, strategy, seed), out / "sft-model", adapter, tok)
    times["pair_diagnostics"], cpu["pair_diagnostics"] = time.time() - t, cpu_seconds() - c
    log(f"seed {seed}: after: MI {after.figures['mi_mean']:.3f}, acc@K4 {after.accuracy_per_k.get(4)}")
    result = {
        "seed": seed,
        "sft": sft_info,
        "mipo_training": train_metrics(train_log),
        "times_s": times,
        "cpu_s": cpu,
        "pair_diagnostics": diag,
        "strategy": strategy,
        "before": before.to_run("before", seed).__dict__,
        "after": after.to_run("after", seed).__dict__,
    }
    (out / "result.json").write_text(json.dumps(result, default=str, indent=1))


# -------------------------------------------------------------------- main


def _stats(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def table(results: list[dict]) -> tuple[str, dict]:
    from axolotl_mipo.evaluation.report import EvalRun

    def figs(r, label):
        return EvalRun(**r[label]).all_figures()

    lines = ["| figure | before (mean ± sd) | after (mean ± sd) | Δ mean | spread | Δ > spread | Δ per seed |",
             "|---|---|---|---|---|---|---|"]
    verdict = {}
    for name in HEADLINE + SECONDARY:
        b = [figs(r, "before").get(name) for r in results]
        a = [figs(r, "after").get(name) for r in results]
        (mb, sb), (ma, sa) = _stats(b), _stats(a)
        if mb is None or ma is None:
            continue
        delta = ma - mb
        spread = max(sb, sa)
        per_seed = ", ".join(f"{x - y:+.3f}" for x, y in zip(a, b) if x is not None and y is not None)
        ok = delta > spread
        if name in HEADLINE:
            verdict[name] = {"before": mb, "before_sd": sb, "after": ma, "after_sd": sa, "delta": delta,
                             "spread": spread, "rises_beyond_spread": ok}
        lines.append(f"| {'**' + name + '**' if name in HEADLINE else name} | {mb:.3f} ± {sb:.3f} | "
                     f"{ma:.3f} ± {sa:.3f} | {delta:+.3f} | {spread:.3f} | {'yes' if ok else 'no'} | {per_seed} |")
    return "\n".join(lines) + "\n", verdict


def diagnostics_table(results: list[dict]) -> str:
    """Per seed: what DPO did to the training pairs, with and without the context."""
    rows = [r for r in results if r.get("pair_diagnostics")]
    if not rows:
        return ""
    lines = ["What MIPO's DPO did to its own training pairs (after − before, mean log p in nats; "
             "'no c' = the same response scored without the context):", "",
             "| seed | pairs (distinct rejected) | Δ chosen\\|c | Δ rejected\\|c | Δ chosen\\|no c | "
             "Δ rejected\\|no c | "
             "margin change with c | without c | context-specific | chosen / rejected obey the user (all 4; topic) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["pair_diagnostics"]
        dl = d["delta_logp"]
        cs, rs = d["chosen_satisfaction"], d["rejected_satisfaction"]
        lines.append(
            f"| {r['seed']} | {d['pairs']} ({d['distinct_rejected']}) | "
            f"{dl['chosen|c']:+.2f} | {dl['rejected|c']:+.2f} | "
            f"{dl['chosen|no c']:+.2f} | {dl['rejected|no c']:+.2f} | {d['margin_change_with_context']:+.2f} | "
            f"{d['margin_change_without_context']:+.2f} | {d['context_specific_margin_change']:+.2f} | "
            f"{cs['all']:.2f} / {rs['all']:.2f}; {cs['topic']:.2f} / {rs['topic']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/proof")
    p.add_argument("--jobs", type=int, default=None, help="seeds run at once (default: all)")
    p.add_argument("--strategy", default="drop_context",
                   help="MIPO pairing strategy (the proof: drop_context, MIPO's default; swap_context is "
                        "MIPO's appendix ablation)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    os.environ.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if a.worker is not None:
        worker(a.worker, out, worker_threads(), a.strategy)
        return 0

    start, cpu0 = time.time(), cpu_seconds()
    out.mkdir(parents=True, exist_ok=True)
    jobs = a.jobs or len(a.seeds)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log(f"{len(a.seeds)} seeds, {jobs} at a time, {threads} thread(s) each; logs in {out}/seed*/worker.log")
    failed = run_seed_workers(
        a.seeds, lambda s: worker_command(__spec__.name, "--worker", str(s), "--out", str(out / f"seed{s}"),
                                          "--strategy", a.strategy),
        lambda s: out / f"seed{s}" / "worker.log", jobs, threads)
    if failed:
        log(f"seeds {failed} failed")
        return 1

    from axolotl_mipo.evaluation.report import EvalRun, write_report

    results = [json.loads((out / f"seed{s}" / "result.json").read_text()) for s in a.seeds]
    runs = [EvalRun(**r[label]) for label in ("before", "after") for r in results]
    md, verdict = table(results)
    wall, cpu_total = time.time() - start, cpu_seconds() - cpu0
    notes = [
        f"{len(a.seeds)} seeds ({', '.join(map(str, a.seeds))}); per seed {N_HELDOUT} held-out rows; "
        f"responses sampled with the context at temperature 1; MI in nats; accuracy@K strict, chance 1/K",
        f"before: tiny Llama SFT'd to follow the context weakly (alpha={ALPHA}); after: + MIPO (drop_context) "
        "LoRA DPO through `axolotl train`",
        f"MIPO pairing strategy: {a.strategy}",
        f"total wall time {wall:.0f}s on {os.cpu_count()} CPU cores ({cpu_total:.0f} CPU-seconds)",
    ]
    write_report(out, runs, title="MIPO on the synthetic personalization task (CPU proof)", notes=notes,
                 settings={"seeds": a.seeds, "n_users": N_USERS, "queries_per_user": QUERIES_PER_USER,
                           "heldout": N_HELDOUT, "alpha": ALPHA, "p_context": P_CONTEXT, "sft_steps": SFT_STEPS,
                           "k": list(K_VALUES), "max_new_tokens": MAX_NEW_TOKENS,
                           "strategy": a.strategy, "wall_s": wall, "cpu_s": cpu_total,
                           "per_seed": [{k: r.get(k) for k in ("seed", "sft", "mipo_training", "times_s", "cpu_s",
                                                               "pair_diagnostics")} for r in results]})
    head = ("Before/after MIPO, mean ± sample sd across seeds; spread = the larger sd; "
            "'Δ > spread' is the pass criterion.\n\n")
    diag_md = diagnostics_table(results)
    wall_line = f"\nTotal wall time: {wall:.0f}s ({cpu_total:.0f} CPU-seconds, {os.cpu_count()} cores)\n"
    (out / "table.md").write_text(head + md + "\n" + diag_md + wall_line)
    (out / "verdict.json").write_text(json.dumps({"wall_s": wall, "cpu_s": cpu_total, "strategy": a.strategy,
                                                  "headline": verdict}, indent=1))
    print(head + md)
    print(diag_md)
    for r in results:
        mt = r["mipo_training"]
        print(f"seed {r['seed']}: SFT loss {r['sft']['final_loss']:.3f}; MIPO pairs kept {mt.get('pairs_kept')} of "
              f"{mt.get('pairs_planned')} ({mt.get('dropped_identical')} identical); "
              f"DPO last step {mt.get('last_step')}; "
              f"wall {', '.join(f'{k} {v:.0f}s' for k, v in r['times_s'].items())}; "
              f"CPU {', '.join(f'{k} {v:.0f}s' for k, v in r['cpu_s'].items())}")
    ok = all(v["rises_beyond_spread"] for v in verdict.values())
    detail = ", ".join(f"{k}: {v['delta']:+.3f} vs {v['spread']:.3f}" for k, v in verdict.items())
    print(f"\nMI and context identification rise beyond the seed spread: {'YES' if ok else 'NO'} ({detail})")
    print(f"total wall time {wall:.0f}s ({cpu_total:.0f} CPU-seconds on {os.cpu_count()} cores); "
          f"report: {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
