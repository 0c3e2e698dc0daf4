"""``POPIPlugin``: train a preference summarizer with Axolotl's own GRPO (``rl: grpo``).

Enable with::

    plugins:
      - axolotl_mipo.POPIPlugin
    rl: grpo
    trl:
      reward_funcs: [axolotl_mipo.popi.reward.popi_reward]
      use_vllm: false
    popi:
      datasets:
        - path: data/alignx.jsonl
          format: alignx

Hooks: ``register`` (validates the ``popi:`` block, requires ``rl: grpo`` and the reward function),
``load_datasets`` (the summarizer prompts, :mod:`axolotl_mipo.popi.data`), ``pre_model_load`` (seed),
``post_trainer_create`` (points the reward at the trainer's device). The MIPO plugin keeps refusing
any ``rl`` but ``dpo``: the two are separate runs (train the summarizer here, then let
``mipo.summary.summarizer`` write MIPO's contexts with it).
"""

from __future__ import annotations

import logging
import math
import os

from axolotl.integrations.base import BasePlugin

from axolotl_mipo.errors import MIPOConfigError
from axolotl_mipo.popi.args import REWARD_FUNC

LOG = logging.getLogger("axolotl_mipo.popi")
logging.getLogger("axolotl_mipo").setLevel(os.getenv("AXOLOTL_LOG_LEVEL", "INFO").upper())


def _as_config(raw):
    from axolotl_mipo.popi.args import POPIConfig

    if raw is None:
        raise MIPOConfigError("the plugin axolotl_mipo.POPIPlugin is enabled but the config has no 'popi:' block")
    if isinstance(raw, POPIConfig):
        return raw
    return POPIConfig.model_validate(dict(raw))


def _get(obj, key, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def reward_settings(cfg, popi_cfg, device: str | None = None):
    from axolotl_mipo.data.prompts import PromptFormat
    from axolotl_mipo.popi.reward import RewardSettings

    generator = popi_cfg.generator or cfg.get("base_model")
    tokenizer = None
    if popi_cfg.generator is None and popi_cfg.generator_adapter is None:
        tokenizer = cfg.get("tokenizer_config") or None
    return RewardSettings(
        generator=generator, adapter=popi_cfg.generator_adapter, tokenizer=tokenizer, beta=popi_cfg.beta,
        length_penalty=popi_cfg.length_penalty, batch_size=popi_cfg.batch_size, dtype=popi_cfg.generator_dtype,
        device=device,
        fmt=PromptFormat(placement=popi_cfg.context_placement, context_template=popi_cfg.context_template,
                         user_prefix_template=popi_cfg.user_prefix_template),
        trust_remote_code=bool(cfg.get("trust_remote_code") or False),
    )


class POPIPlugin(BasePlugin):
    """POPI's trained summarizer: GRPO on preference summaries, rewarded by a frozen generator."""

    def get_input_args(self) -> str:
        return "axolotl_mipo.popi.args.POPIArgs"

    def register(self, cfg: dict):
        raw = cfg.get("popi")
        if not isinstance(raw, dict):
            raise MIPOConfigError(
                "the plugin axolotl_mipo.POPIPlugin needs a 'popi:' block with at least "
                "'datasets: [{path: ..., format: alignx}]'; see example_configs/popi-summarizer-tiny-cpu.yml"
            )
        from axolotl_mipo.popi.args import validate_popi_block

        validate_popi_block(raw)
        if cfg.get("mipo") is not None:
            raise MIPOConfigError("'mipo:' and 'popi:' are two runs: train the summarizer (POPIPlugin, rl: grpo) "
                                  "first, then MIPO (MIPOPlugin, rl: dpo) with mipo.summary.summarizer")
        rl = cfg.get("rl")
        if rl is None:
            cfg["rl"] = "grpo"
        elif str(getattr(rl, "value", rl)) != "grpo":
            raise MIPOConfigError(
                f"'rl: {rl}' cannot train the POPI summarizer, which trains with GRPO; set 'rl: grpo'")
        trl = cfg.get("trl")
        funcs = _get(trl, "reward_funcs") or []
        if REWARD_FUNC not in funcs:
            have = f" (it has {list(funcs)})" if funcs else ""
            raise MIPOConfigError(
                f"POPI's summarizer is trained on POPI's reward, but trl.reward_funcs does not list it{have}; add "
                f"'trl: {{reward_funcs: [{REWARD_FUNC}]}}'"
            )
        if cfg.get("datasets") is None:
            # Axolotl's schema requires top-level datasets; this plugin's loader reads popi.datasets
            cfg["datasets"] = [{"path": d.get("path")} for d in raw["datasets"] if isinstance(d, dict)
                               and d.get("path")] or None

    def pre_model_load(self, cfg):
        from transformers import set_seed

        seed = cfg.get("seed")
        if seed is None:
            seed = _as_config(cfg.get("popi")).seed
        set_seed(int(seed))

    def load_datasets(self, cfg, preprocess: bool = False):
        from axolotl.common.datasets import TrainDatasetMeta
        from axolotl.loaders import load_tokenizer
        from datasets import Dataset

        from axolotl_mipo.data.rows import load_examples
        from axolotl_mipo.popi.data import summarizer_rows

        popi_cfg = _as_config(cfg.get("popi"))
        tokenizer = load_tokenizer(cfg)
        examples = load_examples(popi_cfg.datasets, on_bad_row=popi_cfg.on_bad_row, dedupe=popi_cfg.dedupe_rows)
        limit = popi_cfg.max_prompt_tokens
        if limit is None and cfg.get("sequence_len"):
            completion = _get(cfg.get("trl"), "max_completion_length") or 256
            limit = max(int(cfg.get("sequence_len")) - int(completion), 1)
        rows, report = summarizer_rows(examples, tokenizer, template=popi_cfg.template, max_words=popi_cfg.max_words,
                                       max_prompt_tokens=limit, on_bad_row=popi_cfg.on_bad_row)
        LOG.info(report.summary())
        ds = Dataset.from_list(rows)
        steps = int(math.ceil(len(ds) * (cfg.get("num_epochs") or 1) / (cfg.get("batch_size") or 1)))
        if cfg.get("max_steps"):
            steps = min(steps, int(cfg.get("max_steps")))
        return TrainDatasetMeta(train_dataset=ds, eval_dataset=None, total_num_steps=steps)

    def post_trainer_create(self, cfg, trainer):
        from axolotl_mipo.popi.reward import configure

        device = str(trainer.accelerator.device) if getattr(trainer, "accelerator", None) is not None else None
        configure(reward_settings(cfg, _as_config(cfg.get("popi")), device=device))
        LOG.info(f"popi: reward {REWARD_FUNC} configured (beta {_as_config(cfg.get('popi')).beta}, frozen generator "
                 "loaded at its first call)")
