"""Reference data computed once, before training: ``precompute_ref_log_probs`` for the MIPO losses.

TRL's ``DPOTrainer._precompute_ref_logps`` stores each row's reference
sequence sums. The RMiPO and PerCE hooks can need more from the frozen
reference, all from the same forwards, so one pass computes (as the settings
ask):

* the sequence sums ``ref_chosen_logps`` / ``ref_rejected_logps`` (TRL's columns);
* the per-token log-probs of each response, for token-weighted DPO
  (``COL_REF_TOKENS``);
* PerCE's per-token PIR, ``log p_ref(y_i | x, c) - log p_ref(y_i | x)``, with
  ``perce_weights_from: reference`` (``COL_REF_PIR``; PerCE, arXiv 2603.06595);
* RMiPO's per-response PMI with ``rmipo_pmi_from: reference``
  (``COL_REF_PMI``; RMiPO, arXiv 2604.24804).

The columns are cached as a ``datasets`` cache file next to the dataset's own,
keyed by the dataset's fingerprint, the reference model's hash and every
setting that changes a value, as TRL caches its sums. Every rank computes the
whole dataset: the per-token lists differ in length between rows, which
``gather`` cannot stitch; only the main process writes the cache file.

The forwards are the trainer's (``_mipo_ref_token_logps``, ``_response_pmi``),
so a precomputed value is the one the loss would compute per step.
"""

from __future__ import annotations

import os
from collections import defaultdict

import torch
from accelerate.utils import broadcast_object_list
from datasets import Dataset, IterableDataset, concatenate_datasets
from datasets.fingerprint import Hasher
from torch.utils.data import DataLoader
from trl.models import prepare_deepspeed
from trl.trainer.utils import hash_module

from axolotl_mipo.collator import COL_REF_PIR, COL_REF_PMI, COL_REF_TOKENS
from axolotl_mipo.errors import MIPOConfigError
from axolotl_mipo.losses import align_right, masked_sum

__all__ = ["cache_key", "compact_rows", "precompute_reference_data"]

# bump the version when a column's meaning changes: old cache files are then never read
CACHE_VERSION = "axolotl_mipo.ref.v1"


def compact_rows(values: torch.Tensor, mask: torch.Tensor) -> list[list[float]]:
    """Each row's values on its ``mask``, as a list (the rows' lengths differ)."""
    values, mask = values.detach().float().cpu(), mask.bool().cpu()
    return [values[i][mask[i]].tolist() for i in range(values.shape[0])]


def cache_key(dataset_fingerprint: str, model_hash: str, settings, max_length, truncation_mode) -> tuple:
    """What the cached columns depend on: the rows, the reference weights, which columns, and the cut."""
    s = settings
    return (CACHE_VERSION, dataset_fingerprint, model_hash, s.needs_ref_tokens, s.ref_weights, s.ref_pmi,
            max_length, truncation_mode)


def _cache_file(trainer, dataset) -> tuple[str, str]:
    key = cache_key(dataset._fingerprint, hash_module(trainer.ref_model or trainer.model), trainer._mipo,
                    trainer.args.max_length, trainer.args.truncation_mode)
    fingerprint = [Hasher.hash(key)]
    broadcast_object_list(fingerprint, from_process=0)  # every rank reads the file rank 0 writes
    return fingerprint[0], dataset._get_cache_file_path(fingerprint[0])


def _reference_model(trainer):
    """The model the reference forwards run on: the ``ref_model``, else the policy (PEFT: adapter off),
    wrapped once in its own DeepSpeed engine when DeepSpeed is on, as TRL does."""
    if trainer.ref_model is None and trainer.is_deepspeed_enabled:
        if trainer._precompute_engine is None:
            trainer._precompute_engine = prepare_deepspeed(trainer.model, trainer.accelerator)
        return trainer._precompute_engine
    return trainer.ref_model or trainer.model


def _batch_columns(trainer, model, batch: dict, cols: dict[str, list]) -> None:
    """Append one batch's reference columns (chosen rows first, then rejected) to ``cols``."""
    s = trainer._mipo
    ref_logps, mask = trainer._mipo_ref_token_logps(model, batch["input_ids"], batch["attention_mask"],
                                                    batch["completion_mask"])
    half = batch["input_ids"].shape[0] // 2

    def add(names: tuple[str, str], rows) -> None:
        cols[names[0]] += rows[:half]
        cols[names[1]] += rows[half:]

    add(("ref_chosen_logps", "ref_rejected_logps"), masked_sum(ref_logps, mask).float().cpu().tolist())
    if s.needs_ref_tokens:
        add(COL_REF_TOKENS, compact_rows(ref_logps, mask))
    if s.ref_weights:
        nc_logps, nc_mask = trainer._mipo_ref_token_logps(
            model, batch["nc_input_ids"], batch["nc_attention_mask"], batch["nc_completion_mask"]
        )
        aligned, matched = align_right(nc_logps, nc_mask, mask)
        pir = torch.where(matched, ref_logps - aligned, torch.zeros_like(ref_logps))
        add(COL_REF_PIR, compact_rows(pir, mask))
    if s.ref_pmi:
        pmi = trainer._response_pmi(batch["input_ids"], batch["completion_mask"], ref_logps, mask,
                                    lambda ids, att: trainer._mipo_ref_token_logps(model, ids, att, att)[0])
        add(COL_REF_PMI, pmi.float().cpu().tolist())


def precompute_reference_data(trainer, dataset, name: str, batch_size: int):
    """``dataset`` with the reference columns the trainer's settings need, from the cache when it has them.

    ``trainer`` is a :class:`~axolotl_mipo.trainer.MIPODPOTrainer` (its settings, models, accelerator and
    forwards); ``name`` only labels the progress bar.
    """
    s = trainer._mipo
    if isinstance(dataset, IterableDataset):
        raise MIPOConfigError(
            "precompute_ref_log_probs with mipo.loss perce needs a map-style dataset, not an IterableDataset"
        )
    fingerprint, cache_file = _cache_file(trainer, dataset)
    if os.path.exists(cache_file):
        return concatenate_datasets([dataset, Dataset.from_file(cache_file)], axis=1)

    collator = trainer._mipo_collator(emit_no_context=s.ref_weights, no_context_rows="both")
    # not sharded by accelerate: rows have per-token lists of different lengths (see the module docstring)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collator, shuffle=False)
    model = _reference_model(trainer)
    cols: dict[str, list] = defaultdict(list)
    device = trainer.accelerator.device
    for batch in loader:
        _batch_columns(trainer, model, {k: v.to(device) if isinstance(v, torch.Tensor) else v
                                        for k, v in batch.items()}, cols)
    if not s.needs_reference:
        del cols["ref_chosen_logps"], cols["ref_rejected_logps"]

    if trainer.accelerator.is_main_process:

        def add_columns(batch, indices):
            return {k: [v[i] for i in indices] for k, v in cols.items()}

        dataset.map(
            add_columns,
            with_indices=True,
            batched=True,
            remove_columns=dataset.column_names,
            new_fingerprint=fingerprint,
            cache_file_name=cache_file,
            desc=f"Caching reference data for {name} dataset",
        )
    trainer.accelerator.wait_for_everyone()
    return concatenate_datasets([dataset, Dataset.from_file(cache_file)], axis=1)
