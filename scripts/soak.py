"""Soak test (not in CI): generate + train on synthetic rows while killing the job every N seconds.

    python scripts/soak.py --rows 5000 --kill-every 60 --workdir /tmp/mipo-soak

``--kill-every`` must leave a restarted ``axolotl train`` time to get past its
start-up (about 20-30 s on a 2-core machine) and do some work, or no run ever
finishes. Measured here (idle 2-core VM, 5000 rows, ``--kill-every 60``): 5
kills, some during generation and some during training, 4983 pairs identical to
the uninterrupted run's, adapter written, 8.4 minutes in all.

1. builds the tiny model and ``rows`` synthetic rows;
2. runs ``axolotl train`` (generation happens inside it) and SIGKILLs the whole
   process group every ``--kill-every`` seconds, restarting until a run exits 0
   (training resumes from its last checkpoint: ``auto_resume_from_checkpoints``);
3. dumps the final DPO pairs (``axolotl-mipo generate``, all cached by then) and
   the pairs of an uninterrupted run in a fresh folder, and checks they are
   identical row by row.
Exit status 0 when they match. Prints the number of kills and the time taken.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = str(BIN) + os.pathsep + e.get("PATH", "")
    e.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return e


def write_config(work: Path, name: str, model: Path, data: Path, args) -> Path:
    cfg = yaml.safe_load((REPO / "example_configs" / "mipo-tiny-cpu.yml").read_text())
    cfg.update(
        base_model=str(model),
        output_dir=str(work / name / "out"),
        dataset_prepared_path=str(work / name / "prepared"),
        max_steps=args.max_steps,
        save_strategy="steps",
        save_steps=max(1, args.max_steps // 10),
        auto_resume_from_checkpoints=True,
    )
    cfg["mipo"]["datasets"] = [{"path": str(data)}]
    cfg["mipo"]["generation"].update(max_new_tokens=args.max_new_tokens, batch_size=16, temperature=0.7)
    path = work / f"{name}.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_with_kills(cmd: list[str], every: float, limit_s: float) -> int:
    kills, start = 0, time.time()
    while time.time() - start < limit_s:
        proc = subprocess.Popen(cmd, env=env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rc = proc.wait(timeout=every)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            print(f"  killed after {every}s (kill #{kills})", flush=True)
            continue
        if rc != 0:
            raise SystemExit(f"{' '.join(cmd)} failed with exit status {rc} (not a kill)")
        return kills
    raise SystemExit(f"did not finish within {limit_s}s")


def dump_pairs(cfg: Path, out: Path) -> list[dict]:
    subprocess.run([str(BIN / "axolotl-mipo"), "generate", str(cfg), "--out", str(out)], env=env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--kill-every", type=float, default=60.0)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--limit-s", type=float, default=4 * 3600)
    p.add_argument("--workdir", default="/tmp/mipo-soak")
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    from axolotl_mipo.testing.tiny import build_tiny_model

    model = build_tiny_model(work / "tiny-model")
    data = work / "rows.jsonl"
    data.write_text("".join(json.dumps({"context": f"user {i % 97} prefers style {i % 13} and topic {i % 7}",
                                        "query": f"request {i}: tell me about item {i % 211}"}) + "\n"
                            for i in range(args.rows)))
    t0 = time.time()
    killed_cfg = write_config(work, "killed", model, data, args)
    kills = run_with_kills([str(BIN / "axolotl"), "train", str(killed_cfg)], args.kill_every, args.limit_s)
    t_killed = time.time() - t0
    clean_cfg = write_config(work, "clean", model, data, args)
    killed = dump_pairs(killed_cfg, work / "killed_pairs.jsonl")
    clean = dump_pairs(clean_cfg, work / "clean_pairs.jsonl")
    same = killed == clean
    print(f"soak: {args.rows} rows, {kills} kills, interrupted run took {t_killed:.0f}s; "
          f"{len(killed)} pairs; identical to an uninterrupted run: {same}")
    adapter = work / "killed" / "out" / "adapter_model.safetensors"
    print(f"adapter written: {adapter.exists()}")
    return 0 if same and adapter.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
