"""``MIPOPlugin``: the Axolotl plugin that builds MIPO pairs and installs the trainer.

Enable with::

    plugins:
      - axolotl_mipo.MIPOPlugin
    rl: dpo
    mipo:
      datasets:
        - path: data/users.jsonl

On Axolotl >= 0.21 the plugin is also registered under the ``axolotl.plugins``
entry-point group, so a ``mipo:`` block alone enables it (``plugins:`` may still
name it: it is not run twice). Axolotl 0.21 then loads it for every run, so
every hook does nothing for a config without a ``mipo:`` block that does not
list the plugin. Axolotl 0.19 has no such group: list it in ``plugins:``.

Hooks used (the same signatures in Axolotl 0.19 and 0.21; 0.21's new
``post_lora_merge`` has nothing to do here):

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


def _listed(cfg) -> bool:
    """Whether the config's ``plugins:`` names this plugin (under any spelling of its path; the package's other
    plugin, ``axolotl_mipo.POPIPlugin``, does not count)."""
    for name in cfg.get("plugins") or []:
        parts = str(name).replace(":", ".").split(".")
        if parts[0] == "axolotl_mipo" and parts[-1] == "MIPOPlugin":
            return True
    return False


class MIPOPlugin(BasePlugin):
    """MIPO / RMiPO / PerCE for Axolotl's DPO pipeline."""

    # a second instance adds nothing: Axolotl would merge the same model twice, which pydantic refuses
    def get_input_args(self) -> str | None:
        return None if self._is_duplicate() else "axolotl_mipo.args.MIPOArgs"

    def get_training_args_mixin(self) -> str | None:
        return None if self._is_duplicate() else "axolotl_mipo.args.MIPOTrainingArgsMixin"

    def _is_duplicate(self) -> bool:
        """Another instance was registered first (the entry point and ``plugins:`` under another spelling)."""
        from axolotl.integrations.base import PluginManager

        manager = PluginManager._instance
        plugins = list(manager.plugins.values()) if manager is not None else []
        if not any(p is self for p in plugins):
            return False  # not run by Axolotl's manager (a test, a script): nothing to be a duplicate of
        return next(p for p in plugins if isinstance(p, MIPOPlugin)) is not self

    def _active(self, cfg) -> bool:
        return cfg.get("mipo") is not None and not self._is_duplicate()

    # -- config --------------------------------------------------------------
    def register(self, cfg: dict):
        if self._is_duplicate() or (cfg.get("mipo") is None and not _listed(cfg)):
            # loaded through the entry point (Axolotl >= 0.21) for a config that does not use it
            return
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
        import axolotl_mipo.compat as compat

        # the one Liger decision (compat.liger_refusal), taken at config load so the run stops before the model loads
        compat.check_liger(bool(cfg.get("dpo_use_liger_kernel")), str(raw.get("loss") or "dpo"))
        # runs before Axolotl's environment check in load_cfg (both `axolotl` and `axolotl-mipo` commands)
        compat.patch_axolotl_peer_check()

    def get_training_args(self, cfg):
        if not self._active(cfg):
            return None
        return training_args_from_config(as_config(cfg.get("mipo")))

    # -- model ---------------------------------------------------------------
    def pre_model_load(self, cfg):
        if not self._active(cfg):
            return
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
        if not self._active(cfg):
            return None
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
