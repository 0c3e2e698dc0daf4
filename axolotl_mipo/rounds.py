"""Iterated MIPO: each round generates pairs with the previous round's model, trains and merges.

Round ``k`` (1-based) runs three stages, each as its own subprocess so that a
model's memory is freed before the next one loads:

1. ``axolotl-mipo generate`` with ``base_model`` = the model of round ``k-1``
   (the config's own ``base_model`` for round 1) writes ``pairs.jsonl``;
2. ``axolotl train`` trains a new LoRA adapter on them (the generation cache
   answers every prompt, so nothing is generated twice);
3. ``axolotl merge-lora`` merges the adapter into that model.

The merged model is round ``k``'s policy and round ``k+1``'s base. With an
adapter and no ``rl_adapter_ref_model``, Axolotl passes TRL's ``DPOTrainer``
no reference model and only the LoRA config (``axolotl.train``,
``axolotl.loaders.model``); TRL wraps a new adapter and takes the reference
with the adapters disabled, i.e. the base model: the reference of round ``k``
is the merged model of round ``k-1``. A config with ``lora_model_dir`` (a
pretrained adapter, so another reference) is refused.

Layout under ``OUT``::

    rounds.json            state: config and base-model identity, finished rounds
    cache/                 the generation cache shared by all rounds (keyed by model)
    round_1/config.yml     the round's Axolotl config (base_model = previous model)
    round_1/pairs.jsonl    its MIPO pairs
    round_1/adapter/       the trained LoRA adapter (Axolotl's output_dir)
    round_1/merged/        the merged model, with its weights' content hash
    round_1/logs/          one log per stage

A round is finished once its merged model is complete and recorded in
``rounds.json`` (both written by rename, so a kill leaves the old state or the
new). A rerun skips finished rounds and redoes an unfinished one from scratch;
its generation is then read from the cache.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from axolotl_mipo.errors import MIPOConfigError
from axolotl_mipo.generation.cache import atomic_write, model_fingerprint, record_weights, stable_hash

STATE = "rounds.json"
STATE_VERSION = 1
STAGES = ("generate", "train", "merge", "record")


class RoundsError(MIPOConfigError):
    """A rounds run cannot start or continue; the message names the cause and the fix."""


@dataclass
class StageTime:
    wall_s: float
    cpu_s: float  # user + system time of the stage's processes (children included)


@dataclass
class RoundResult:
    round: int
    dir: str
    config: str
    pairs: str
    adapter: str
    merged: str
    model_in: str
    timings: dict[str, StageTime] = field(default_factory=dict)
    disk_bytes: dict[str, int] = field(default_factory=dict)
    resumed: bool = False  # finished by an earlier run, not redone by this one

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("resumed")
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RoundResult:
        d = dict(d)
        d["timings"] = {k: StageTime(**v) for k, v in d.get("timings", {}).items()}
        d.pop("merged_fingerprint", None)
        return cls(**d, resumed=True)


def disk_bytes(path: str | Path) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def load_round_config(config_path: str | Path) -> dict[str, Any]:
    """The YAML as a dict, checked for what rounds need (the message names the key and the fix)."""
    path = Path(config_path)
    if not path.is_file():
        raise RoundsError(f"rounds: config {path} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not raw.get("base_model"):
        raise RoundsError(f"{path}: base_model is missing; set it to the model round 1 generates with")
    if raw.get("adapter") not in ("lora", "qlora"):
        raise RoundsError(f"{path}: adapter is {raw.get('adapter')!r}; rounds train a LoRA adapter per round and "
                          "merge it, so set adapter: lora (or qlora)")
    if raw.get("lora_model_dir"):
        raise RoundsError(f"{path}: lora_model_dir is set; each round trains a new adapter against the previous "
                          "round's merged model as its DPO reference, so remove lora_model_dir")
    if not isinstance(raw.get("mipo"), dict):
        raise RoundsError(f"{path}: no mipo: block; rounds generate MIPO pairs, see example_configs/")
    return raw


def round_config(raw: dict[str, Any], k: int, model_in: str, round_dir: Path, cache_dir: str) -> dict[str, Any]:
    """Round ``k``'s Axolotl config: the user's, with the previous model as base and this round's folders."""
    cfg = copy.deepcopy(raw)
    cfg["base_model"] = model_in
    if k > 1:
        # the merged folder holds its own config and tokenizer; a hub revision no longer applies
        cfg.pop("revision_of_model", None)
        if cfg.get("base_model_config"):
            cfg["base_model_config"] = model_in
    cfg["output_dir"] = str(round_dir / "adapter")
    cfg["dataset_prepared_path"] = str(round_dir / "prepared")
    # regenerate would clear the cache in `axolotl train` too and generate every response twice; each
    # round's model has its own cache key anyway
    cfg["mipo"] = {**cfg["mipo"], "cache_dir": cache_dir, "regenerate": False}
    return cfg


def _executables(python: str | None, axolotl: str | None) -> tuple[str, str]:
    python = python or sys.executable
    axolotl = axolotl or os.path.join(os.path.dirname(python), "axolotl")
    if not os.path.exists(axolotl):
        axolotl = shutil.which("axolotl") or axolotl
    if not os.path.exists(axolotl):
        raise RoundsError(f"rounds: no axolotl executable next to {python} or on PATH; install axolotl in this "
                          "environment or pass axolotl=PATH")
    return python, axolotl


def _run_stage(name: str, cmd: list[str], log_path: Path, env: dict[str, str], cwd: str | None) -> StageTime:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RoundsError(f"rounds: stage {name} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                          f"full log: {log_path}\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return StageTime(round(wall, 3), round(cpu, 3))


def _identity(raw: dict[str, Any], cwd: str | None) -> dict[str, Any]:
    base = str(raw["base_model"])
    local = Path(cwd or ".") / base
    return {"config": stable_hash(raw, 64),
            "base_model": model_fingerprint(str(local) if local.is_dir() else base, raw.get("revision_of_model"))}


def _check_state(state: dict[str, Any], ident: dict[str, Any], out: Path, config_path: str) -> None:
    if state.get("version") != STATE_VERSION:
        raise RoundsError(f"{out / STATE} was written by another version of axolotl-mipo rounds; "
                          "use a new output folder")
    if state["config"] != ident["config"]:
        raise RoundsError(f"{config_path} differs from the config {out} was started with "
                          f"({state.get('config_path')}); restore it, or pass a new output folder: rounds never "
                          "mix pairs or models of two configs")
    if state["base_model"] != ident["base_model"]:
        raise RoundsError(f"base_model {state['base_model'].get('path') or state['base_model'].get('name')} changed "
                          f"since {out} was started (its files or revision differ); restore it, or pass a new "
                          "output folder")
    for rec in state["rounds"]:
        now = model_fingerprint(rec["merged"])
        if now != rec["merged_fingerprint"]:
            raise RoundsError(f"{rec['merged']} changed after round {rec['round']} recorded it; later rounds "
                              f"were (or would be) generated from the recorded model. Restore it, or delete "
                              f"{rec['dir']} and every later round_* folder (and their entries in {out / STATE}) "
                              "to redo them")


def _read_state(out: Path) -> dict[str, Any] | None:
    p = out / STATE
    if not p.exists():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def run_rounds(
    config_path: str | Path,
    out_dir: str | Path,
    rounds: int,
    *,
    cache_dir: str | None = None,
    cwd: str | None = None,
    python: str | None = None,
    axolotl: str | None = None,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> list[RoundResult]:
    """Run (or continue) ``rounds`` MIPO rounds of ``config_path`` under ``out_dir``.

    Returns one :class:`RoundResult` per round, finished ones included (``resumed=True``), with
    the round's paths, its wall and CPU seconds per stage and the bytes of its pairs, adapter and
    merged model. ``cache_dir`` defaults to the config's ``mipo.cache_dir``, else ``OUT/cache``;
    subprocesses run in ``cwd`` (default: this one), so relative paths in the config keep their meaning.
    """
    if rounds < 1:
        raise RoundsError(f"rounds must be >= 1 (got {rounds})")
    config_path = str(config_path)
    raw = load_round_config(config_path)
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ident = _identity(raw, cwd)
    state = _read_state(out)
    if state is None:
        state = {"version": STATE_VERSION, **ident, "config_path": os.path.abspath(config_path), "rounds": []}
        atomic_write(out / STATE, json.dumps(state, indent=2), mode=0o644)
    else:
        _check_state(state, ident, out, config_path)
    cache = os.path.abspath(os.path.join(cwd or ".", cache_dir or raw["mipo"].get("cache_dir") or str(out / "cache")))
    python, axolotl = _executables(python, axolotl)
    run_env = dict(os.environ if env is None else env)
    # `axolotl train` re-launches itself through `accelerate`, which must be on PATH
    run_env["PATH"] = os.path.dirname(axolotl) + os.pathsep + run_env.get("PATH", "")
    run_env.update(AXOLOTL_DO_NOT_TRACK="1", TOKENIZERS_PARALLELISM=run_env.get("TOKENIZERS_PARALLELISM", "false"))

    results = [RoundResult.from_json(r) for r in state["rounds"][:rounds]]
    for r in results:
        log(f"rounds: round {r.round} already finished ({r.merged})")
    for k in range(len(state["rounds"]) + 1, rounds + 1):
        model_in = str(raw["base_model"]) if k == 1 else state["rounds"][-1]["merged"]
        res = _run_round(raw, k, model_in, out, cache, python, axolotl, run_env, cwd, log)
        rec = {**res.to_json(), "merged_fingerprint": model_fingerprint(res.merged)}
        state["rounds"].append(rec)
        atomic_write(out / STATE, json.dumps(state, indent=2), mode=0o644)  # the round counts as finished from here
        log(f"rounds: round {k} finished: {res.merged}")
        results.append(res)
    return results


def _run_round(raw, k, model_in, out: Path, cache: str, python, axolotl, env, cwd, log) -> RoundResult:
    rdir = out / f"round_{k}"
    if rdir.exists():  # an interrupted attempt: nothing in it is trusted
        log(f"rounds: round {k} was interrupted; redoing it (generation is read from the cache)")
        shutil.rmtree(rdir)
    rdir.mkdir(parents=True)
    cfg = round_config(raw, k, model_in, rdir, cache)
    cfg_path = rdir / "config.yml"
    atomic_write(cfg_path, yaml.safe_dump(cfg, sort_keys=False), mode=0o644)
    merge_tmp = rdir / "merge.partial"
    merge_cfg = {**cfg, "lora_model_dir": cfg["output_dir"], "output_dir": str(merge_tmp)}
    merge_cfg_path = rdir / "logs" / "merge.yml"
    merge_cfg_path.parent.mkdir()
    atomic_write(merge_cfg_path, yaml.safe_dump(merge_cfg, sort_keys=False), mode=0o644)
    res = RoundResult(round=k, dir=str(rdir), config=str(cfg_path), pairs=str(rdir / "pairs.jsonl"),
                      adapter=cfg["output_dir"], merged=str(rdir / "merged"), model_in=model_in)
    logs = rdir / "logs"

    log(f"rounds: round {k}: generating pairs with {model_in}")
    tmp_pairs = rdir / ".pairs.partial.jsonl"
    res.timings["generate"] = _run_stage(
        "generate", [python, "-m", "axolotl_mipo.cli", "generate", str(cfg_path), "--out", str(tmp_pairs)],
        logs / "generate.log", env, cwd)
    os.replace(tmp_pairs, res.pairs)

    log(f"rounds: round {k}: training the adapter ({res.adapter})")
    res.timings["train"] = _run_stage("train", [axolotl, "train", str(cfg_path)], logs / "train.log", env, cwd)
    if not any(Path(res.adapter).glob("adapter_model.*")):
        raise RoundsError(f"rounds: round {k}: axolotl train finished but wrote no adapter_model.* to "
                          f"{res.adapter}; see {logs / 'train.log'}")

    log(f"rounds: round {k}: merging the adapter into {model_in}")
    res.timings["merge"] = _run_stage("merge", [axolotl, "merge-lora", str(merge_cfg_path)],
                                      logs / "merge.log", env, cwd)
    produced = merge_tmp / "merged"
    if not any(produced.glob("*.safetensors")) and not any(produced.glob("*.bin")):
        raise RoundsError(f"rounds: round {k}: axolotl merge-lora wrote no weights to {produced}; "
                          f"see {logs / 'merge.log'}")
    t0, c0 = time.perf_counter(), time.process_time()
    record_weights(produced)  # before the rename: a folder named merged/ is always complete and recorded
    os.replace(produced, res.merged)
    shutil.rmtree(merge_tmp)
    res.timings["record"] = StageTime(round(time.perf_counter() - t0, 3), round(time.process_time() - c0, 3))
    res.disk_bytes = {"pairs": disk_bytes(res.pairs), "adapter": disk_bytes(res.adapter),
                      "merged": disk_bytes(res.merged)}
    return res


def summary(results: list[RoundResult]) -> str:
    """One line per round: stage times and disk."""
    lines = []
    for r in results:
        t = ", ".join(f"{s} {r.timings[s].wall_s:.1f}s wall/{r.timings[s].cpu_s:.1f}s cpu"
                      for s in STAGES if s in r.timings)
        mib = sum(r.disk_bytes.values()) / 2**20
        lines.append(f"round {r.round}{' (earlier run)' if r.resumed else ''}: {t}; {mib:.1f} MiB; {r.merged}")
    return "\n".join(lines)
