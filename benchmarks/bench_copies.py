"""Generation on several model copies at once (``generation.devices``) against one copy.

    python benchmarks/bench_copies.py [--copies 2] [--prompts 96] [--rounds 3]

The ``hf`` backend runs one model copy per device, each in its own thread of one
process. That only pays if the threads overlap: the decode loop is Python, and
Python holds the GIL between operations. A GPU runs its kernels while the thread
that queued them waits, so a GPU machine is the easy case. This script checks
the hard case on a CPU: ``N`` copies of the CPU-sized Llama (hidden 512, 8
layers), each with one intra-op thread, against one copy with one thread, on
the same prompts, interleaved round by round. On ``N`` free cores the ideal is
``N``x; the gap to it is what the GIL and the shared memory bandwidth cost.
Each round also checks that the copies return exactly the one-copy responses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import transformers

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench_generation import make_prompts

from axolotl_mipo.generation.base import generate_with_cache
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.generation.hf import HFBackend
from axolotl_mipo.testing.tiny import TinyModelSpec, build_tiny_model


def main() -> None:
    transformers.logging.set_verbosity_error()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-new", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)  # one core per copy: the copies' threads are the only parallelism
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = TinyModelSpec(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                         intermediate_size=1376)
    with tempfile.TemporaryDirectory() as d:
        path = build_tiny_model(os.path.join(d, "cpu-sized"), spec)

        def backend(copies: int) -> HFBackend:
            made = [HFBackend(AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path),
                              model_id={}, max_new_tokens=args.max_new, temperature=0.7, top_p=0.9, batch_size=8)
                    for _ in range(copies)]
            made[0].replicas = made[1:]
            return made[0]

        tok = AutoTokenizer.from_pretrained(path)
        prompts = make_prompts(tok, args.prompts, [32, 64, 96, 128, 160, 192, 224, 256], seed=1)
        runs = {"one copy": backend(1), f"{args.copies} copies": backend(args.copies)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        tokens, texts = {}, {}
        for r in range(args.rounds):
            for name in (list(runs) if r % 2 == 0 else list(reversed(runs))):
                with tempfile.TemporaryDirectory() as c:
                    t0 = time.perf_counter()
                    out, stats = generate_with_cache(runs[name], prompts, GenerationCache(c, {"bench": r}),
                                                     progress=False)
                    times[name].append(time.perf_counter() - t0)
                tokens[name] = stats.tokens
                texts[name] = {p: res.text for p, res in out.items()}
            one, many = texts.values()
            assert one == many, "the copies returned other responses than one copy"
        tps = {name: tokens[name] / statistics.median(times[name]) for name in runs}
        print(f"{args.prompts} mixed-length prompts, {args.max_new} new tokens, median of {args.rounds} rounds, "
              f"1 intra-op thread per copy, {os.cpu_count()} cores")
        for name, v in tps.items():
            print(f"  {name:10s} {v:7.1f} tok/s")
        first, second = tps.values()
        print(f"{args.copies} copies / one copy: {second / first:.2f}x (ideal {args.copies}x on {args.copies} free "
              "cores); responses identical")


if __name__ == "__main__":
    main()
