#!/usr/bin/env python
"""POPI's trained summarizer against the zero-shot one, on the synthetic task with held-out users (CPU).

    python scripts/proof_popi.py --seeds 0 1 2 --out runs/popi

Resumable: every stage of every seed writes its output under ``OUT/seed-N/`` and is skipped when
that output exists, so rerunning the same command continues where it stopped. Per seed:

1. **Task and pairs.** :func:`axolotl_mipo.evaluation.synthetic.make_task` (32 users x 10 queries);
   the users are split 24 for training, 8 held out (users, not rows: the summarizer never sees a
   held-out user). Each row's held-out pair: chosen = the user's own reference answer, rejected = a
   reference written for another user for the same query (it fails at least one of the user's
   preferences). Written in the ``alignx`` shape: the user's stated preferences as ``Demographic
   Information`` and two of the user's other pairs as ``Pair-wise Comparative Feedback`` (the
   history); the row's own pair is never in its history.
2. **Base.** ``scripts/proof_cpu.py``'s weakly personalized tiny Llama (its ``sft``).
3. **Summarizer.** ``axolotl train`` with ``axolotl_mipo.POPIPlugin`` (``rl: grpo``, no vLLM, LoRA)
   on the training users' rows.
4. **Measure** on the held-out users' rows: a summary per row from the base model (zero-shot) and
   from base + the trained adapter (same prompt, greedy), each scored with POPI's reward by the
   frozen base model, and its preference accuracy: the share of rows whose summary raises the
   generator's chosen-over-rejected log-ratio above the query-alone one (``delta > 0``).

``OUT/table.md``: mean ± sample std over seeds. NOT included yet: MIPO trained on each kind of
summary (``mipo.summary.summarizer``) and evaluated; that is the issue's second half.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

N_USERS, QUERIES_PER_USER, HELDOUT_USERS = 32, 10, 8
HISTORY_PAIRS = 2
SUMMARY_TOKENS = 48
SEQUENCE_LEN = 1024
GRPO = {"num_generations": 4, "max_steps": 60, "micro_batch_size": 8, "learning_rate": 5e-4}


def log(msg: str) -> None:
    print(f"[popi {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def task(seed: int, out: Path) -> None:
    from axolotl_mipo.evaluation import synthetic as S

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


def measure(seed: int, out: Path) -> dict:
    """Summaries of the held-out users' rows, zero-shot and trained, with POPI's reward and accuracy."""
    from axolotl.utils.dict import DictDefault
    from transformers import AutoTokenizer

    from axolotl_mipo.args import MIPOConfig, MIPODatasetConfig
    from axolotl_mipo.data.rows import load_examples
    from axolotl_mipo.generation.hf import HFBackend
    from axolotl_mipo.generation.summarizer import summarizer_backend
    from axolotl_mipo.pipeline.summary import summarize_contexts
    from axolotl_mipo.popi.reward import FrozenGenerator, POPIReward, RewardSettings, load_generator

    base = str(out / "sft-model")
    tok = AutoTokenizer.from_pretrained(base)
    examples = load_examples([MIPODatasetConfig(path=str(out / "heldout.jsonl"), format="alignx",
                                                context_parts=["demographics", "pairs"])])
    cfg = DictDefault({"base_model": base})
    result = {}
    gen: FrozenGenerator = load_generator(RewardSettings(generator=base, device="cpu", batch_size=32))
    for kind, summarizer in (("zero_shot", None), ("trained", str(out / "summarizer"))):
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
        result[kind] = {"reward": statistics.fmean(rewards), "accuracy": statistics.fmean(d > half for d in dpo),
                        "empty_summaries": reward.stats.empty_summaries, "rows": len(rewards),
                        "summary_tokens_mean": report.summary_tokens_mean}
        log(f"seed {seed}: {kind}: {result[kind]}")
    return result


def worker(seed: int, root: Path, threads: int, max_steps: int) -> dict:
    import proof_cpu as P
    import torch
    import yaml

    from axolotl_mipo.evaluation import synthetic as S

    torch.set_num_threads(threads)
    out = root / f"seed-{seed}"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "heldout.jsonl").exists():
        task(seed, out)
    if not (out / "sft-model" / "config.json").exists():
        rows = [json.loads(x) for x in (out / "task.jsonl").read_text().splitlines()]
        train_users = {json.loads(x)["user_id"] for x in (out / "train.jsonl").read_text().splitlines()}
        train = [r for r in rows if r["user_id"] in train_users]  # held-out users are new to the base too
        P.sft(seed, train, S.users_from_rows(train), out / "sft-model", threads)
    if not (out / "summarizer" / "adapter_model.safetensors").exists():
        path = out / "summarizer.yml"
        path.write_text(yaml.safe_dump(summarizer_config(seed, out, max_steps)))
        log(f"seed {seed}: axolotl train {path}")
        P.run_axolotl(path, out / "summarizer_train.log", threads)
    if not (out / "measure.json").exists():
        (out / "measure.json").write_text(json.dumps(measure(seed, out), indent=1))
    return json.loads((out / "measure.json").read_text())


def table(results: dict[int, dict]) -> str:
    def cell(kind, key):
        vals = [r[kind][key] for r in results.values()]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.fmean(vals):.3f} ± {sd:.3f}"

    lines = [f"| figure (mean ± std over {len(results)} seeds) | zero-shot summaries | trained summarizer |",
             "|---|---|---|"]
    for key, name in (("reward", "POPI reward (beta 0.01)"), ("accuracy", "preference accuracy (delta > 0)"),
                      ("summary_tokens_mean", "summary tokens")):
        lines.append(f"| {name} | {cell('zero_shot', key)} | {cell('trained', key)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/popi")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=GRPO["max_steps"], help="GRPO steps of the summarizer")
    a = p.parse_args(argv)
    root = Path(a.out)
    results = {s: worker(s, root, a.threads, a.max_steps) for s in a.seeds}  # one seed at a time, resumable
    (root / "results.json").write_text(json.dumps(results, indent=1))
    (root / "table.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
