"""Generation throughput: naive one-at-a-time vs a plain batched ``model.generate`` vs the ``hf`` backend.

    python benchmarks/bench_generation.py [--quick] [--prompts N] [--sets equal,mixed,eos] [--vllm]

For each model (the tiny test model, and a CPU-sized Llama: hidden 512, 8
layers) and each prompt set (equal lengths; mixed lengths spread 1x-8x, as user
contexts are), it measures in one process, interleaving the methods round by
round so that machine noise hits them alike:

* ``naive``  — one prompt at a time, ``model.generate``;
* ``plain``  — the prompts in input order, batches of 16, left-padded ``model.generate``;
* ``hf``     — ``HFBackend`` through ``generate_with_cache`` (length-sorted
  batches: the longest has 16 rows and sets the token budget the shorter ones
  fill, per-prompt seeded sampling), with an empty cache each round.

All three sample with the same settings (temperature 0.7, top-p 0.9, no top-k)
and the same ``max_new_tokens``. In the first two prompt sets EOS is disabled, so every
method generates the same number of tokens and tokens/s compare like for like.
Prints tokens/s (median over rounds) and the ratios the targets refer to:
hf / plain >= 1.0 on equal lengths and >= 1.3 on mixed lengths; plain / naive
for reference.

A third set, "mixed lengths, EOS", lets responses end at different lengths, as
a real model's do: a batched ``generate`` keeps a finished row in the batch
until its longest neighbour ends, while the ``hf`` backend drops it. The
randomly initialised test models practically never sample their EOS token, so
the tokens these models find most likely, as many as hold 1/16 of their mean
sampling probability, stand in for it (the same for all methods); tokens/s
counts only the tokens before the first of them.

The default 48 prompts are 3 plain batches, too few for the token budget to
form fewer batches than plain batching does; ``--prompts 192 --sets mixed``
shows what it gains on a longer run (a real one has thousands of rows).

``--smollm2 DIR`` (a folder made by ``axolotl-mipo make-smollm2``; ``auto``: convert into a
temporary folder) adds SmolLM2-135M-Instruct, a real 30-layer model, on prompts of the persona set
(:mod:`experiments.tasks.personas`: a persona system message and an everyday question) with its
real end of turn (``<|im_end|>``: answers end at their own lengths) and without it (every row runs
to ``max_new_tokens``). ``--models smollm2`` measures it alone.

With ``--vllm`` on a GPU machine it also times raw ``vllm.LLM.generate`` and the
``vllm`` backend on the same prompts (target >= 0.9x raw vLLM) and hf against vllm.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from axolotl_mipo.generation.base import generate_with_cache
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.generation.hf import HFBackend
from axolotl_mipo.testing.tiny import TinyModelSpec, build_tiny_model

WORDS = ("user likes short answers formal language cooking recipes football news python code jazz music travel "
         "tips gardening advice math puzzles poetry history facts").split()


def make_prompts(tok, n: int, lengths: list[int], seed: int) -> list[str]:
    rng = random.Random(seed)
    prompts = []
    for i in range(n):
        target = lengths[i % len(lengths)]
        words = []
        while len(tok(" ".join(words), add_special_tokens=False)["input_ids"]) < target:
            words.extend(rng.choice(WORDS) for _ in range(8))
        ctx = " ".join(words)
        prompts.append(tok.apply_chat_template([{"role": "system", "content": ctx},
                                                {"role": "user", "content": f"question {i}?"}],
                                               tokenize=False, add_generation_prompt=True))
    rng.shuffle(prompts)
    return prompts


STOP = {"eos": [-1]}  # -1 never matches: every method generates exactly max_new tokens


def _sample_kwargs(max_new, pad_id):
    # top_k=0: generate() otherwise adds its default top-k of 50, which the hf backend (top_k unset) does not
    return dict(max_new_tokens=max_new, do_sample=True, temperature=0.7, top_p=0.9, top_k=0, pad_token_id=pad_id,
                eos_token_id=STOP["eos"])


def _real_tokens(new: torch.Tensor) -> int:
    """Tokens before each row's first stop token (all of them when it never stops)."""
    stop = torch.isin(new, torch.tensor(STOP["eos"], device=new.device))
    first = torch.where(stop.any(1), stop.int().argmax(1), torch.full_like(stop[:, 0], new.shape[1], dtype=torch.long))
    return int(first.sum())


@torch.no_grad()
def run_naive(model, tok, prompts, max_new):
    n = 0
    for p in prompts:
        ids = tok(p, add_special_tokens=False, return_tensors="pt").to(model.device)
        out = model.generate(**ids, **_sample_kwargs(max_new, tok.pad_token_id))
        n += _real_tokens(out[:, ids["input_ids"].shape[1]:])
    return n


@torch.no_grad()
def run_plain(model, tok, prompts, max_new, bs=16):
    n = 0
    tok.padding_side = "left"
    for i in range(0, len(prompts), bs):
        enc = tok(prompts[i : i + bs], add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
        out = model.generate(**enc, **_sample_kwargs(max_new, tok.pad_token_id))
        n += _real_tokens(out[:, enc["input_ids"].shape[1]:])
    return n


def run_hf(model, tok, prompts, max_new, bs=16):
    backend = HFBackend(model, tok, model_id={}, max_new_tokens=max_new, temperature=0.7, top_p=0.9, batch_size=bs)
    backend.eos_ids = list(STOP["eos"])  # the same stop tokens as the others
    with tempfile.TemporaryDirectory() as d:
        _, stats = generate_with_cache(backend, prompts, GenerationCache(d, {"bench": time.time()}), progress=False)
    return stats.tokens


@torch.no_grad()
def stop_tokens(model, tok, prompts, max_new, rate: float = 1 / 16) -> list[int]:
    """The most likely tokens of this model on these prompts, as many as hold ``rate`` of its mean sampling
    probability.

    They stand in for EOS in the EOS prompt set: a stop chance of about 1/16 per token spreads response
    lengths from 1 to ``max_new`` (mean about 12 of 32), as a real model's answers vary.
    """
    tok.padding_side = "left"
    enc = tok(prompts[:16], add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
    out = model.generate(**enc, **_sample_kwargs(max_new, tok.pad_token_id))
    # the sampling distribution averaged over the generated positions, not sample counts: with a flat
    # distribution the most frequent tokens of a small sample are mostly luck, and would stop far less often
    att = torch.cat([enc["attention_mask"], torch.ones_like(out[:, enc["input_ids"].shape[1]:])], dim=1)
    logits = model(input_ids=out, attention_mask=att).logits[:, enc["input_ids"].shape[1] - 1 : -1]
    mean = torch.softmax(logits.double() / 0.7, -1).mean((0, 1))
    probs, ids = mean.sort(descending=True)
    k = int((probs.cumsum(0) < rate).sum()) + 1  # the fewest most likely tokens reaching the rate
    return ids[:k].tolist()


def vllm_compare(path, tok, prompts, max_new, rounds, hf_model):
    """tokens/s of raw ``vllm.LLM.generate``, of the ``vllm`` backend, and of the ``hf`` backend, same prompts."""
    try:
        import vllm
    except ImportError:
        print("vLLM comparison skipped: vllm is not installed (pip install 'axolotl-mipo[vllm]'; GPU only)")
        return None
    from axolotl_mipo.generation.vllm import VLLMBackend

    llm = vllm.LLM(model=path, seed=0, gpu_memory_utilization=0.4)
    backend = VLLMBackend(llm, tok, model_id={}, max_new_tokens=max_new, temperature=0.7, top_p=0.9,
                          batch_size=len(prompts))
    token_prompts = [{"prompt_token_ids": tok(p, add_special_tokens=False).input_ids} for p in prompts]

    def raw(*_):
        params = vllm.SamplingParams(max_tokens=max_new, temperature=0.7, top_p=0.9, seed=0)
        outs = llm.generate(token_prompts, params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs)

    def ours(*_):
        with tempfile.TemporaryDirectory() as d:
            _, stats = generate_with_cache(backend, prompts, GenerationCache(d, {"bench": time.time()}),
                                           progress=False)
        return stats.tokens

    tps = bench(hf_model, tok, prompts, max_new, rounds, {"raw_vllm": raw, "vllm": ours, "hf": run_hf})
    llm = backend = None  # drop the engine before returning
    return tps


def persona_prompts(tok, n: int, seed: int) -> list[str]:
    """Chat prompts of the persona set: one persona (system message) and one everyday question each."""
    from axolotl_mipo.data.prompts import build_messages
    from experiments.tasks.personas import make_personas

    rows = make_personas(n, 1, seed)
    return [tok.apply_chat_template(build_messages([("user", r["query"])], r["context"]), tokenize=False,
                                    add_generation_prompt=True) for r in rows]


def smollm2_rows(path: str, n: int, max_new: int, rounds: int, device: str) -> list:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path == "auto":
        from axolotl_mipo.smollm2 import make_smollm2

        path = str(make_smollm2(os.path.join(tempfile.mkdtemp(), "smollm2"), log=lambda *_: None))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    prompts = persona_prompts(tok, n, seed=1)
    label = "SmolLM2-135M (30 layers)"
    rows = []
    for shape, eos in (("personas, real EOS", [tok.convert_tokens_to_ids("<|im_end|>")]),
                       ("personas, no EOS", [-1])):
        STOP["eos"] = eos
        mean_len: dict = {}
        tps = bench(model, tok, prompts, max_new, rounds, {"plain": run_plain, "hf": run_hf}, mean_len)
        rows.append((label, shape, tps))
        print(f"{label:34s} {shape:24s} " + ", ".join(f"{m} {v:.1f} tok/s" for m, v in tps.items())
              + f"; hf/plain {tps['hf'] / tps['plain']:.2f}x; mean response {mean_len['plain']:.1f} / "
              f"{mean_len['hf']:.1f} tokens (plain / hf)", flush=True)
    STOP["eos"] = [-1]
    return rows


def bench(model, tok, prompts, max_new, rounds, methods, lengths_out: dict | None = None):
    times = {m: [] for m in methods}
    tokens = {}
    for r in range(rounds):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for m in order:
            t0 = time.perf_counter()
            tokens[m] = methods[m](model, tok, prompts, max_new)
            times[m].append(time.perf_counter() - t0)
    if lengths_out is not None:  # mean response length per method (below max_new_tokens when rows stop early)
        lengths_out.update({m: tokens[m] / len(prompts) for m in methods})
    return {m: tokens[m] / statistics.median(times[m]) for m in methods}


def main() -> None:
    transformers.logging.set_verbosity_error()  # the "eos_token_id=-1" warning is intended here
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer prompts and rounds (a smoke run)")
    ap.add_argument("--vllm", action="store_true", help="also compare with vLLM (GPU only)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--prompts", type=int, default=None, help="prompts per set (default 48; 16 with --quick)")
    ap.add_argument("--sets", default="equal,mixed,eos", help="comma-separated prompt sets: equal, mixed, eos")
    ap.add_argument("--smollm2", default=None, metavar="DIR",
                    help="also measure SmolLM2-135M-Instruct from this make-smollm2 folder ('auto': convert now)")
    ap.add_argument("--models", default="tiny,cpu,smollm2", help="comma-separated: tiny, cpu, smollm2")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per measurement (default 3; 1 with --quick)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 32; 16 with --quick")
    args = ap.parse_args()
    picked = {m.strip() for m in args.models.split(",")}
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        "tiny (hidden 64, 2 layers)": TinyModelSpec(),
        "cpu-sized (hidden 512, 8 layers)": TinyModelSpec(hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                                                          num_key_value_heads=4, intermediate_size=1376),
    }
    n = args.prompts or (16 if args.quick else 48)
    sets = {s.strip() for s in args.sets.split(",")}
    if not sets <= {"equal", "mixed", "eos"}:
        ap.error(f"--sets takes equal, mixed and eos; got {args.sets!r}")
    rounds = args.rounds or (1 if args.quick else 3)
    max_new = args.max_new_tokens or (16 if args.quick else 32)
    rows, vllm_rows = [], []
    print(f"{n} prompts per set, {max_new} new tokens each, median of {rounds} rounds, device {args.device}")
    with tempfile.TemporaryDirectory() as d:
        for label, spec in models.items():
            if label.split()[0].replace("cpu-sized", "cpu") not in picked:
                continue
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = build_tiny_model(os.path.join(d, label.split()[0]), spec)
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path).to(args.device).eval()
            mixed = [32, 64, 96, 128, 160, 192, 224, 256]
            chosen = {"equal lengths (128)": ("equal", [128]), "mixed lengths (32-256)": ("mixed", mixed),
                      "mixed lengths, EOS": ("eos", mixed)}
            for shape, (key, lengths) in chosen.items():
                if key not in sets:
                    continue
                prompts = make_prompts(tok, n, lengths, seed=1)
                STOP["eos"] = [-1]
                if key == "eos":
                    STOP["eos"] = stop_tokens(model, tok, prompts, max_new)
                methods = {"plain": run_plain, "hf": run_hf}
                if "equal" in shape:
                    methods = {"naive": run_naive, **methods}
                mean_len: dict = {}
                tps = bench(model, tok, prompts, max_new, rounds, methods, mean_len)
                rows.append((label, shape, tps))
                line = ", ".join(f"{m} {v:.0f} tok/s" for m, v in tps.items())
                ratio = tps["hf"] / tps["plain"]
                extra = f"; plain/naive {tps['plain'] / tps['naive']:.2f}x" if "naive" in tps else ""
                if key == "eos":
                    extra += f"; mean response {mean_len['plain']:.1f} / {mean_len['hf']:.1f} tokens (plain / hf)"
                print(f"{label:34s} {shape:24s} {line}; hf/plain {ratio:.2f}x{extra}", flush=True)
            if args.vllm:
                STOP["eos"] = [-1]
                prompts = make_prompts(tok, n, mixed, seed=1)
                tps = vllm_compare(path, tok, prompts, max_new, rounds, model)
                if tps:
                    vllm_rows.append((label, tps))
                    print(f"{label:34s} {'mixed lengths, vLLM':24s} "
                          + ", ".join(f"{m} {v:.0f} tok/s" for m, v in tps.items()), flush=True)
            del model
    if args.smollm2 and "smollm2" in picked:
        rows += smollm2_rows(args.smollm2, n, max_new, rounds, args.device)
    print("\ntargets: hf/plain >= 1.0x on equal lengths, >= 1.3x on mixed lengths")
    for label, shape, tps in rows:
        if "personas" in shape:  # no target set for the real model: reported as measured
            print(f"  {label:34s} {shape:24s} hf/plain {tps['hf'] / tps['plain']:.2f}x  (measured, no target)")
            continue
        target = 1.0 if "equal" in shape else 1.3
        r = tps["hf"] / tps["plain"]
        print(f"  {label:34s} {shape:24s} hf/plain {r:.2f}x  {'OK' if r >= target else 'MISSED'} (target {target}x)")
    for label, tps in vllm_rows:
        r = tps["vllm"] / tps["raw_vllm"]
        print(f"  {label:34s} vllm backend / raw vLLM {r:.2f}x  {'OK' if r >= 0.9 else 'MISSED'} (target 0.9x); "
              f"hf / vllm backend {tps['hf'] / tps['vllm']:.2f}x")


if __name__ == "__main__":
    main()
