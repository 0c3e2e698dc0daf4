"""``MIPOPlugin``: the Axolotl plugin that builds MIPO pairs and installs the trainer.

Enable with::

    plugins:
      - axolotl_mipo.MIPOPlugin
    rl: dpo
    mipo:
      datasets:
        - path: data/users.jsonl

Hooks used (Axolotl 0.19):

* ``register`` — sees the raw YAML: rejects misplaced ``mipo_*`` keys and
  impossible combinations, fills ``rl``, the top-level ``datasets`` Axolotl's
  schema requires, and ``trainer_cls``;
* ``get_input_args`` — the ``mipo:`` block's pydantic model (extra keys forbidden);
* ``load_datasets`` — rows -> generation (cached) -> pairing -> DPO dataset. It
  runs for both ``axolotl preprocess`` and ``axolotl train``; the second finds
  every response in the cache and says so in the log;
* ``get_training_args_mixin`` / ``get_training_args`` — loss options for the trainer.

The trainer is set through ``trainer_cls`` rather than ``get_trainer_cls``: the
RL builder passes no model to a class returned by ``get_trainer_cls``.
"""

from __future__ import annotations

import logging
import math
import os

from axolotl.integrations.base import BasePlugin

from axolotl_mipo.args import as_config, training_args_from_config, validate_mipo_block
from axolotl_mipo.errors import MIPOConfigError

LOG = logging.getLogger(__name__)
# Axolotl's console filter lets axolotl* loggers through at INFO, but the root
# level (WARNING) would drop our records before they get there. Every module
# logs under getLogger(__name__), a child of this one.
logging.getLogger("axolotl_mipo").setLevel(os.getenv("AXOLOTL_LOG_LEVEL", "INFO").upper())

TRAINER_CLS = "axolotl_mipo.trainer.MIPODPOTrainer"


class MIPOPlugin(BasePlugin):
    """MIPO / RMiPO / PerCE for Axolotl's DPO pipeline."""

    def get_input_args(self) -> str:
        return "axolotl_mipo.args.MIPOArgs"

    def get_training_args_mixin(self) -> str:
        return "axolotl_mipo.args.MIPOTrainingArgsMixin"

    # -- config --------------------------------------------------------------
    def register(self, cfg: dict):
        flat = sorted(k for k in cfg if isinstance(k, str) and k.startswith("mipo_"))
        if flat:
            raise MIPOConfigError(
                f"unknown top-level key(s) {flat}: axolotl-mipo options live inside the 'mipo:' block, "
                f"e.g. 'mipo: {{{flat[0][5:]}: ...}}'"
            )
        raw = cfg.get("mipo")
        if not isinstance(raw, dict):
            raise MIPOConfigError(
                "the plugin axolotl_mipo.MIPOPlugin needs a 'mipo:' block with at least "
                "'datasets: [{path: ...}]'; see example_configs/mipo-tiny-cpu.yml"
            )
        # validated here too (Axolotl validates again later) for a message that names the key and a fix
        validate_mipo_block(raw)
        rl = cfg.get("rl")
        if rl is None:
            cfg["rl"] = "dpo"
        elif str(getattr(rl, "value", rl)) != "dpo":
            raise MIPOConfigError(f"'rl: {rl}' cannot be used with axolotl-mipo, which trains with DPO; set 'rl: dpo'")
        if cfg.get("datasets") is None and isinstance(raw.get("datasets"), list):
            # Axolotl's schema requires top-level datasets; the plugin's own loader reads mipo.datasets
            cfg["datasets"] = [
                {"path": d.get("path")} for d in raw["datasets"] if isinstance(d, dict) and d.get("path")
            ] or None
        if cfg.get("trainer_cls") is None:
            cfg["trainer_cls"] = TRAINER_CLS
        if cfg.get("sample_packing"):
            raise MIPOConfigError("'sample_packing: true' is not supported by DPO training; remove it")

    def get_training_args(self, cfg):
        return training_args_from_config(as_config(cfg.get("mipo")))

    # -- model ---------------------------------------------------------------
    def pre_model_load(self, cfg):
        # Axolotl builds the model and its LoRA adapter before the HF Trainer seeds torch, so the adapter's
        # random init, and with it the whole run, would change between two identical runs. Seed first.
        from transformers import set_seed

        seed = cfg.get("seed")
        if seed is None:
            seed = as_config(cfg.get("mipo")).seed
        set_seed(int(seed))
        LOG.info(f"seeded python/numpy/torch with {seed} before loading the model (top-level 'seed', else mipo.seed)")

    # -- data ----------------------------------------------------------------
    def load_datasets(self, cfg, preprocess: bool = False):
        from axolotl.common.datasets import TrainDatasetMeta
        from axolotl.loaders import load_tokenizer
        from datasets import Dataset

        from axolotl_mipo.pipeline import build_rows

        mipo_cfg = as_config(cfg.get("mipo"))
        rows, _ = build_rows(cfg, mipo_cfg, load_tokenizer(cfg))
        ds = Dataset.from_list(rows)
        eval_ds = None
        if mipo_cfg.val_fraction > 0 and len(ds) >= 2:
            split = ds.train_test_split(test_size=mipo_cfg.val_fraction, seed=mipo_cfg.seed)
            ds, eval_ds = split["train"], split["test"]
        total_num_steps = int(math.ceil(len(ds) * (cfg.get("num_epochs") or 1) / (cfg.get("batch_size") or 1)))
        if cfg.get("max_steps"):
            total_num_steps = min(total_num_steps, int(cfg.get("max_steps")))
        return TrainDatasetMeta(train_dataset=ds, eval_dataset=eval_ds, total_num_steps=total_num_steps)
