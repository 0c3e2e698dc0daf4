"""``axolotl-mipo``: the plugin's own commands.

* ``axolotl-mipo generate CONFIG [--out pairs.jsonl]`` — generate and pair only
  (no training); resumable, and under ``torchrun --nproc_per_node N`` each rank
  generates its share. ``axolotl train CONFIG`` then finds everything cached.
* ``axolotl-mipo make-tiny DIR`` — build the tiny local Llama used by the CPU demo and tests.
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

    from axolotl_mipo.plugin import _as_config
    from axolotl_mipo.pipeline import build_rows, cache_root

    cfg = _load_cfg(args.config)
    mipo_cfg = _as_config(cfg.get("mipo"))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="axolotl-mipo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate and pair (no training)")
    g.add_argument("config")
    g.add_argument("--out", default=None, help="write the DPO pairs here as JSONL")
    g.set_defaults(fn=cmd_generate)
    t = sub.add_parser("make-tiny", help="build a tiny local Llama + tokenizer")
    t.add_argument("out_dir")
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(fn=cmd_make_tiny)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
