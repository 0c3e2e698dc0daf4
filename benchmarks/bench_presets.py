"""Load, validate and pair a synthetic 1.3M-row AlignX file through the alignx preset (everything but generation).

    python benchmarks/bench_presets.py [--rows 1311622] [--strategy drop_context] [--file /tmp/alignx.parquet]

Target (issue 16): under 5 minutes and under 8 GB of memory for the 1,311,622 rows of AlignX.

The file is written once (and reused when it exists with the same row count) in the published shape
(the AlignX card's "Dataset Format"): ``prompt``, ``chosen``, ``rejected``, ``Preference Direction``
(90 values of 0/0.5/1), ``Demographic Information``, ``User-Generated Content`` (4 items of ``{prompt,
comment, Preference Direction}``) and ``Pair-wise Comparative Feedback`` (4 items of ``{prompt,
chosen, rejected, Preference Direction}``), as parquet (the format the hub serves through datasets).
Text lengths are a choice (the card gives none): prompt ~200 characters, responses ~150,
demographics ~300, each comment / past prompt / past response ~150; ~6 KB of text per row before
rendering. Every row is a distinct user; 1 query in ``--shared-queries`` is asked by many users, so
the degenerate-pair diagnostic has something to find.

Phases, each with its wall time and the peak resident memory (RSS, sampled every 20 ms by a thread,
plus ``ru_maxrss`` at the end): ``load`` (read + validate + split every row into an Example, the
preset's work), ``validate`` (the strategy's checks), ``requests``, ``diagnostic`` (rows per rejected
prompt) and ``pair`` (with a placeholder response per request instead of generation; making those
is not timed, as in bench_pairing).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALIGNX_ROWS = 1_311_622
WORDS = ("the user often writes about cooking travel music code parents money health sleep games books "
         "rent work tea coffee weather dogs cats garden football history science art movies jokes").split()


class PeakRSS:
    """Samples this process's RSS in a thread; ``phase()`` returns and resets the peak since the last call."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self._proc, self._interval = psutil.Process(), interval
        self._peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def phase(self) -> int:
        peak = max(self._peak, self._proc.memory_info().rss)
        self._peak = self._proc.memory_info().rss
        return peak

    def close(self):
        self._stop.set()
        self._thread.join()


def _texts(rng, n: int, chars: int, tag: str, unique: bool = False):
    """``n`` strings of about ``chars`` characters from a pool of 4096 (with a row number when ``unique``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    words = np.array(WORDS)
    pool = pa.array([f"{tag} " + " ".join(rng.choice(words, size=max(1, chars // 6))) for _ in range(4096)])
    out = pool.take(pa.array(rng.integers(0, len(pool), size=n)))
    if unique:
        out = pc.binary_join_element_wise(pa.array(np.arange(n).astype(str)), out, ": ")
    return out


def _direction(rng, n: int):
    import pyarrow as pa

    values = pa.array(rng.choice(np.array([0.0, 0.5, 1.0]), size=n * 90))
    return pa.FixedSizeListArray.from_arrays(values, 90).cast(pa.list_(pa.float64()))


def _items(rng, n: int, fields: dict[str, int], per_row: int = 4):
    import pyarrow as pa

    m = n * per_row
    children = [_texts(rng, m, chars, name) for name, chars in fields.items()] + [_direction(rng, m)]
    structs = pa.StructArray.from_arrays(children, names=[*fields, "Preference Direction"])
    offsets = pa.array(np.arange(0, m + 1, per_row, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, structs)


def write_alignx(path: Path, rows: int, shared_queries: int, seed: int = 0, chunk: int = 100_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            prompt = _texts(rng, n, 200, "post", unique=True)
            if shared_queries:
                # a quarter of the rows ask one of a few popular questions (many users, one query)
                import pyarrow.compute as pc

                popular = pa.array([f"popular question {i}: what do you all think?" for i in range(shared_queries)])
                mask = pa.array(rng.random(n) < 0.25)
                prompt = pc.if_else(mask, popular.take(pa.array(rng.integers(0, shared_queries, n))), prompt)
            table = pa.table({
                "prompt": prompt,
                "chosen": _texts(rng, n, 150, "yes"),
                "rejected": _texts(rng, n, 150, "no"),
                "Preference Direction": _direction(rng, n),
                "Demographic Information": _texts(rng, n, 300, f"user {start}", unique=True),
                "User-Generated Content": _items(rng, n, {"prompt": 150, "comment": 150}),
                "Pair-wise Comparative Feedback": _items(rng, n, {"prompt": 150, "chosen": 150, "rejected": 150}),
            })
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=ALIGNX_ROWS)
    ap.add_argument("--file", default="/tmp/mipo_bench_alignx.parquet")
    ap.add_argument("--strategy", default="drop_context")
    ap.add_argument("--shared-queries", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import pyarrow.parquet as pq

    path = Path(args.file)
    if not path.exists() or pq.ParquetFile(path).metadata.num_rows != args.rows:
        t = time.perf_counter()
        write_alignx(path, args.rows, args.shared_queries, seed=args.seed)
        print(f"wrote {args.rows} rows to {path} ({path.stat().st_size / 2**30:.2f} GiB) "
              f"in {time.perf_counter() - t:.0f} s (not part of the target)")

    from axolotl_mipo.args import MIPODatasetConfig
    from axolotl_mipo.data.diagnostics import rejected_prompt_sharing, warn_if_degenerate
    from axolotl_mipo.data.rows import LoadReport, load_examples
    from axolotl_mipo.pairing import build_strategy

    mem = PeakRSS()
    times: dict[str, float] = {}
    peaks: dict[str, int] = {}

    def done(name: str, t0: float) -> None:
        times[name] = time.perf_counter() - t0
        peaks[name] = mem.phase()
        print(f"{name:>10}: {times[name]:7.1f} s, peak RSS {peaks[name] / 2**30:5.2f} GiB", flush=True)

    print(f"  baseline: peak RSS {mem.phase() / 2**30:5.2f} GiB (interpreter and imports)")
    t = time.perf_counter()
    report = LoadReport()
    examples = load_examples([MIPODatasetConfig(path=str(path), format="alignx")], report=report)
    done("load", t)
    print(f"            {report.summary()}")
    strategy = build_strategy(args.strategy, {})
    t = time.perf_counter()
    strategy.validate(examples)
    done("validate", t)
    t = time.perf_counter()
    requests = list(dict.fromkeys(strategy.requests(examples, args.seed)))
    done("requests", t)
    t = time.perf_counter()
    sharing = rejected_prompt_sharing(examples, strategy, args.seed, requests)
    warn_if_degenerate(sharing, strategy.name)
    done("diagnostic", t)
    print(f"            {sharing.summary()}")
    responses = {r: f"response {i}" for i, r in enumerate(requests)}
    mem.phase()
    t = time.perf_counter()
    pairs = strategy.pair(examples, responses, args.seed)
    done("pair", t)
    mem.close()
    assert len(pairs) == len(examples)
    total = sum(times.values())
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(f"     total: {total:7.1f} s for {len(examples)} rows ({args.strategy}); peak RSS "
          f"{max(peaks.values()) / 2**30:.2f} GiB (ru_maxrss {maxrss / 2**30:.2f} GiB); "
          f"target < 300 s and < 8 GiB: {'met' if total < 300 and maxrss < 8 * 2**30 else 'NOT met'}")
    print(f"(measured on {os.cpu_count()} CPUs shared with other jobs)")


if __name__ == "__main__":
    main()
