"""What every study shares: seed workers, ``axolotl train`` runs, resumable stages, the CPU clock.

A study is a module ``experiments/<study>/run.py`` started from the repository root as
``python -m experiments.<study>.run``. Its usual shape::

    from experiments.harness import check_out, mipo_config, stage, train_arm

    check_out(out, plan)                                    # refuse to resume with another plan
    base = stage(d / "base.json", lambda: evaluate_base())  # a JSON per stage; a rerun reads it back
    for arm in plan["arms"]:
        def run_arm(arm=arm):
            cfg = mipo_config(seed, base_model, d / "train.jsonl", d / arm)  # then override what the arm varies
            trained = train_arm(d / arm, cfg, threads, label=f"seed {seed} {arm}")
            return {**evaluate(trained.adapter), "training": trained.training}
        stage(d / f"{arm}.json", run_arm)

Seeds run side by side with :func:`run_seed_workers` (each worker a ``python -m`` of the same module,
started with :func:`worker_command`, reading its thread count with :func:`worker_threads`) or one after
the other in one process.

* :mod:`~experiments.harness.stages`: :func:`stage`, :func:`check_out`, :func:`cpu_seconds`, :func:`logger`,
  :func:`plan_settings` (a plan's YAML block).
* :mod:`~experiments.harness.training`: :func:`mipo_config`, :func:`plan_train_config`, :func:`run_axolotl`,
  :func:`train_arm` (:class:`TrainedArm`), :func:`train_metrics` and :func:`read_train_log` (what a training log says).
* :mod:`~experiments.harness.workers`: :func:`run_seed_workers`, :func:`worker_command`, :func:`worker_threads`.
* :mod:`~experiments.harness.weak_base`: :func:`train_weak_base`, the synthetic tasks' weakly personalized
  tiny Llama (imports torch when called).
* :mod:`~experiments.harness.persona_eval`: the persona task's per-row evaluation, checker-ordered pairs and
  :func:`~experiments.harness.persona_eval.pair_accuracy` (SmolLM2, losses and rounds).
* :mod:`~experiments.harness.synthetic_eval`: :func:`evaluate_synthetic` and :func:`synthetic_per_row`.
"""

from experiments.harness.stages import check_out, cpu_seconds, logger, plan_settings, stage
from experiments.harness.synthetic_eval import evaluate_synthetic, synthetic_per_row
from experiments.harness.training import (
    MAX_NEW_TOKENS,
    TrainedArm,
    mipo_config,
    plan_train_config,
    read_train_log,
    run_axolotl,
    train_arm,
    train_metrics,
)
from experiments.harness.weak_base import train_weak_base
from experiments.harness.workers import run_seed_workers, worker_command, worker_threads

__all__ = [
    "MAX_NEW_TOKENS", "TrainedArm", "check_out", "cpu_seconds", "evaluate_synthetic", "logger", "mipo_config",
    "plan_settings", "plan_train_config", "read_train_log", "run_axolotl", "run_seed_workers", "stage",
    "synthetic_per_row", "train_arm", "train_metrics", "train_weak_base", "worker_command", "worker_threads",
]
