"""Running ``axolotl train`` as a user would, reading its log, and training one arm of a study.

Every study trains through the real command line (``axolotl train config.yml`` in a subprocess) so that
what is measured is the plugin as users run it, not a shortcut around Axolotl.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from experiments.harness.stages import cpu_seconds, logger

# the first study's MIPO response length (tokens); the other studies start from mipo_config and override it
MAX_NEW_TOKENS = 128
_log = logger("harness")


def mipo_config(seed: int, base: Path, train_path: Path, out: Path, strategy: str = "drop_context") -> dict:
    """The first study's MIPO run, which every study starts from and overrides.

    ``drop_context`` pairs with MIPO's (arXiv 2603.19294) generation settings (temperature 0.1, top-p 0.9),
    LoRA r 16 DPO with beta 0.1, 2 epochs at 5e-4 cosine (a LoRA rate for a tiny model: MIPO's 1e-6 is for
    full fine-tuning of 1B+ models), on the CPU in float32. The adapter lands in ``out/mipo``."""
    return {
        "base_model": str(base),
        "tokenizer_type": "AutoTokenizer",
        "plugins": ["axolotl_mipo.MIPOPlugin"],
        "rl": "dpo",
        "mipo": {
            "datasets": [{"path": str(train_path), "format": "context_query"}],
            "strategy": strategy,
            "seed": seed,
            "generation": {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0.1, "top_p": 0.9,
                           "batch_size": 32, "device": "cpu"},
            "loss": "dpo",
        },
        "adapter": "lora",
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "lora_target_linear": True,
        "sequence_len": 256,
        "micro_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "num_epochs": 2,
        "learning_rate": 5e-4,
        "optimizer": "adamw_torch",
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.03,
        "rl_beta": 0.1,
        "seed": seed,
        "bf16": False,
        "fp16": False,
        "tf32": False,
        "output_dir": str(out / "mipo"),
        "dataset_prepared_path": str(out / "prepared"),
        "save_safetensors": True,
        "logging_steps": 4,
        "save_strategy": "no",
        "dataloader_num_workers": 0,
    }


def plan_train_config(plan: dict, arm: dict, seed: int, base: Path, train_path: Path, d: Path, cache: Path) -> dict:
    """:func:`mipo_config` with a persona study's plan applied (SmolLM2, losses and rounds).

    ``plan``: ``generation`` (MIPO's sampling) and ``training`` (LoRA, rate, epochs, batch, beta, sequence
    length; ``max_steps`` in a smoke run); ``arm``: ``strategy``, ``loss``, optional ``strategy_kwargs``. Every
    step is logged (``logging_steps`` 1), so the log's step count is the optimizer's. The seed's arms share
    the generation cache ``cache``."""
    cfg = mipo_config(seed, base, train_path, d, arm["strategy"])
    g, t = plan["generation"], plan["training"]
    cfg["mipo"].update(loss=arm["loss"], cache_dir=str(cache))
    if arm.get("strategy_kwargs"):
        cfg["mipo"]["strategy_kwargs"] = arm["strategy_kwargs"]
    cfg["mipo"]["generation"].update(max_new_tokens=g["max_new_tokens"], temperature=g["temperature"],
                                     top_p=g["top_p"], batch_size=g["batch_size"], device="cpu")
    cfg.update(lora_r=t["lora_r"], lora_alpha=t["lora_alpha"], learning_rate=t["learning_rate"],
               num_epochs=t["num_epochs"], micro_batch_size=t["micro_batch_size"], rl_beta=t["rl_beta"],
               sequence_len=t["sequence_len"], logging_steps=1)
    if t.get("max_steps"):
        cfg["max_steps"] = t["max_steps"]
    return cfg


def run_axolotl(cfg_path: Path, log_path: Path, threads: int) -> str:
    """``axolotl train cfg_path`` (working directory: the config's folder), its output in ``log_path``.

    Returns the log's text; a non-zero exit raises ``RuntimeError`` with the log's tail."""
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")  # `axolotl train` re-launches through `accelerate`
    env.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with log_path.open("w") as f:
        proc = subprocess.run([os.path.join(bindir, "axolotl"), "train", str(cfg_path)], cwd=cfg_path.parent,
                              env=env, stdout=f, stderr=subprocess.STDOUT)
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"axolotl train failed ({proc.returncode}); see {log_path}:\n{text[-3000:]}")
    return text


def train_metrics(text: str) -> dict:
    """What a training log says: MIPO's pair counts, the first and last logged DPO step, the runtime."""
    out: dict = {}
    m = re.search(r"mipo: (\d+) rows -> (\d+) pairs planned, (\d+) kept \((\d+) dropped for an empty response, "
                  r"(\d+) for identical", text)
    if m:
        out.update(rows=int(m[1]), pairs_planned=int(m[2]), pairs_kept=int(m[3]), dropped_empty=int(m[4]),
                   dropped_identical=int(m[5]))
    steps = [dict(re.findall(r"'([\w/]+)': '([-\d.e]+)'", line)) for line in re.findall(r"\{'loss'[^}]*\}", text)]
    if steps:
        first, last = steps[0], steps[-1]
        keys = ("loss", "rewards/accuracies", "rewards/margins")
        out["first_step"] = {k: float(first[k]) for k in keys if k in first}
        out["last_step"] = {k: float(last[k]) for k in ("loss", "rewards/accuracies", "rewards/margins") if k in last}
        out["logged_steps"] = len(steps)
    m = re.search(r"'train_runtime': '([\d.]+)'", text)
    if m:
        out["train_runtime_s"] = float(m[1])
    return out


def read_train_log(path: Path) -> dict:
    """:func:`train_metrics` of the log at ``path`` (``{}`` when there is none, e.g. a copied adapter)."""
    return train_metrics(path.read_text(errors="replace") if path.exists() else "")


@dataclass
class TrainedArm:
    """One trained arm: where its adapter is, and ``training`` (the log's metrics, ``wall_s``, ``cpu_s``)."""

    adapter: Path
    training: dict


def train_arm(d: Path, cfg: dict, threads: int, label: str) -> TrainedArm:
    """Write ``d/mipo.yml`` and train it unless its adapter (``cfg['output_dir']``) already exists.

    An existing adapter is kept (a resumed run does not retrain; its training log is read again), so
    the wall and CPU seconds are those of this call: near zero when resumed."""
    d.mkdir(parents=True, exist_ok=True)
    cfg_path = d / "mipo.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    adapter = Path(cfg["output_dir"])
    t, c = time.time(), cpu_seconds()
    if not (adapter / "adapter_model.safetensors").exists():
        _log(f"{label}: axolotl train {cfg_path}")
        run_axolotl(cfg_path, d / "axolotl_train.log", threads)
    wall, cpu = time.time() - t, cpu_seconds() - c
    return TrainedArm(adapter, {**read_train_log(d / "axolotl_train.log"), "wall_s": wall, "cpu_s": cpu})
