"""Time pairing (validate + requests + pair) on synthetic rows, with fake responses instead of generation.

    python benchmarks/bench_pairing.py [--rows 1000000] [--seed 0]

Target: each strategy under 10 s for 1M rows on one CPU core. Building the
rows and the fake responses is not timed (that is data loading and
generation); the time is what the dataset builder spends planning and pairing.
"""

from __future__ import annotations

import argparse
import time

from axolotl_mipo.data.example import Example
from axolotl_mipo.pairing import get_strategy


def synthetic_rows(n: int) -> list[Example]:
    # ~n/4 distinct prompts (duplicates exercise the constraint) and 1000 users
    return [
        Example(index=i, messages=(("user", f"question {i % (n // 4 + 1)} about topic {i % 97}"),),
                context=f"user {i % 1000} likes short answers about topic {i % 13}", source="bench")
        for i in range(n)
    ]


def time_pairing(strategy, examples: list[Example], seed: int, respond) -> tuple[list, dict[str, float]]:
    """Run ``strategy`` on ``examples`` with fake responses ``respond(request)``: ``(pairs, seconds per phase)``.

    Making the fake responses is not timed (in a run, that is generation).
    """
    t0 = time.perf_counter()
    strategy.validate(examples)
    t1 = time.perf_counter()
    requests = strategy.requests(examples, seed)
    t2 = time.perf_counter()
    responses = {r: respond(r) for r in dict.fromkeys(requests)}
    t3 = time.perf_counter()
    pairs = strategy.pair(examples, responses, seed)
    t4 = time.perf_counter()
    return pairs, {"validate": t1 - t0, "requests": t2 - t1, "pair": t4 - t3, "total": (t2 - t0) + (t4 - t3)}


def bench(name: str, examples: list[Example], seed: int) -> dict[str, float]:
    # a few distinct texts repeat on purpose: identical responses are a constraint of mismatched_prompt
    pairs, times = time_pairing(get_strategy(name), examples, seed,
                                lambda r: f"response {r.row % 200_000} / {r.context is None}")
    assert len(pairs) == len(examples)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strategies", nargs="+", default=["drop_context", "mismatched_prompt", "swap_context"])
    args = ap.parse_args()
    t = time.perf_counter()
    examples = synthetic_rows(args.rows)
    print(f"built {args.rows} rows in {time.perf_counter() - t:.2f} s (not timed below)")
    for name in args.strategies:
        r = bench(name, examples, args.seed)
        verdict = "ok" if r["total"] < 10 else "OVER the 10 s target"
        print(f"{name:>18}: validate {r['validate']:.2f} s  requests {r['requests']:.2f} s  "
              f"pair {r['pair']:.2f} s  total {r['total']:.2f} s  ({verdict})")


if __name__ == "__main__":
    main()
