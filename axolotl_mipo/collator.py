"""``MIPOPreferenceCollator``: TRL's preference collator plus the inputs the loss hooks need.

The column and batch-key names are shared with :mod:`axolotl_mipo.trainer`,
which adds the columns to the dataset and reads the keys from each batch.
"""

from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.utils import pad

from axolotl_mipo.errors import MIPOError

# dataset columns this trainer adds
COL_PROMPT_NC_IDS = "prompt_no_context_ids"
COL_REF_TOKENS = ("ref_chosen_token_logps", "ref_rejected_token_logps")
COL_REF_PIR = ("perce_ref_chosen_pir", "perce_ref_rejected_pir")
COL_REF_PMI = ("rmipo_ref_chosen_pmi", "rmipo_ref_rejected_pmi")
MIPO_COLUMNS = (COL_PROMPT_NC_IDS, *COL_REF_TOKENS, *COL_REF_PIR, *COL_REF_PMI)

# batch keys the collator wrapper adds; never passed to the model
NC_KEYS = ("nc_input_ids", "nc_attention_mask", "nc_completion_mask")
REF_TOKEN_KEYS = ("ref_token_logps", "ref_token_mask")
REF_PIR_KEYS = ("perce_ref_pir", "perce_ref_pir_mask")
REF_PMI_KEY = "rmipo_ref_pmi"
MIPO_BATCH_KEYS = frozenset((*NC_KEYS, *REF_TOKEN_KEYS, *REF_PIR_KEYS, REF_PMI_KEY))


def _pad_floats(rows: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(r) for r in rows), default=0)
    values = torch.zeros(len(rows), width, dtype=torch.float32)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        if r:
            values[i, : len(r)] = torch.tensor(r, dtype=torch.float32)
            mask[i, : len(r)] = True
    return values, mask


@dataclass
class MIPOPreferenceCollator:
    """Wraps TRL's preference collator and adds the inputs the loss hooks need.

    TRL's ``DataCollatorForPreference`` keeps only the columns it knows. This
    wrapper calls it, then adds:

    * ``nc_*`` (``emit_no_context``): ``prompt_no_context_ids + response`` rows
      for PerCE's no-context forward, chosen rows then (``no_context_rows="both"``)
      rejected rows. The response is the part of it the main row kept after
      truncation, so both forwards score the same tokens. With ``keep_end`` the
      row is cut to ``max_length`` from the left like the main row; with
      ``keep_start`` it is not cut (that would drop response tokens the main
      row scores; without the context it is normally the shorter row anyway).
    * ``ref_token_logps``/``ref_token_mask``: precomputed reference per-token
      log-probs, ``[2B, K]`` left-aligned (chosen rows first).
    * ``perce_ref_pir``/``perce_ref_pir_mask``: precomputed reference PIR, same layout.
    * ``rmipo_ref_pmi``: precomputed reference PMI of each response, ``[2B]`` (chosen first).
    """

    inner: Any
    pad_token_id: int
    max_length: int | None = None
    truncation_mode: str = "keep_start"
    emit_no_context: bool = False
    no_context_rows: str = "both"

    def _kept(self, prompt_len: int, response: list[int]) -> list[int]:
        if self.max_length is None:
            return response
        if self.truncation_mode == "keep_end":
            return response[max(0, len(response) - self.max_length) :]
        return response[: max(0, self.max_length - prompt_len)]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = self.inner(examples)
        if self.emit_no_context:
            keys = ("chosen_ids", "rejected_ids") if self.no_context_rows == "both" else ("chosen_ids",)
            ids, comp = [], []
            for key in keys:
                for ex in examples:
                    if COL_PROMPT_NC_IDS not in ex:
                        raise MIPOError(
                            f"batch has no {COL_PROMPT_NC_IDS!r}: the dataset was not prepared by MIPODPOTrainer"
                        )
                    nc = list(ex[COL_PROMPT_NC_IDS])
                    kept = self._kept(len(ex["prompt_ids"]), list(ex[key]))
                    row, row_mask = nc + kept, [0] * len(nc) + [1] * len(kept)
                    if self.max_length is not None and self.truncation_mode == "keep_end":
                        # the main row lost its start, so this one loses the same amount of left context
                        row, row_mask = row[-self.max_length :], row_mask[-self.max_length :]
                    ids.append(torch.tensor(row, dtype=torch.long))
                    comp.append(torch.tensor(row_mask, dtype=torch.long))
            out["nc_input_ids"] = pad(ids, padding_value=self.pad_token_id, padding_side="right")
            out["nc_attention_mask"] = pad([torch.ones_like(t) for t in ids], padding_value=0, padding_side="right")
            out["nc_completion_mask"] = pad(comp, padding_value=0, padding_side="right")
        for cols, keys in ((COL_REF_TOKENS, REF_TOKEN_KEYS), (COL_REF_PIR, REF_PIR_KEYS)):
            if cols[0] in examples[0]:
                rows = [list(ex[cols[0]]) for ex in examples] + [list(ex[cols[1]]) for ex in examples]
                out[keys[0]], out[keys[1]] = _pad_floats(rows)
        if COL_REF_PMI[0] in examples[0]:
            out[REF_PMI_KEY] = torch.tensor([float(ex[c]) for c in COL_REF_PMI for ex in examples])
        return out
