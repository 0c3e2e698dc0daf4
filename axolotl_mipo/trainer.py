"""``MIPODPOTrainer``: Axolotl's DPO trainer with the RMiPO and PerCE loss hooks.

The math lives in :mod:`axolotl_mipo.losses`; this module runs the forwards the
hooks need and feeds the results to it. Options come from the training
arguments (``mipo_*`` fields of :class:`~axolotl_mipo.args.MIPOTrainingArgsMixin`,
which the plugin merges into ``AxolotlDPOConfig``);
:func:`~axolotl_mipo.args.training_args_from_config` maps the ``mipo:`` block to
them. The batches come from :class:`~axolotl_mipo.collator.MIPOPreferenceCollator`.

What each ``mipo_loss`` costs per step, on top of plain DPO
(policy forward + backward, reference forward):

* ``dpo`` — nothing: every method defers to TRL's ``DPOTrainer``.
* ``rmipo`` — one no-grad policy forward over the two responses alone (no
  prompt, no BOS); the ``reference_free`` form also drops DPO's reference
  forward. With ``rmipo_pmi_from: reference`` the PMI terms come from the
  frozen reference instead and are computed once, while precomputing the
  reference log-probs: the per-pair margin is then fixed and costs nothing per
  step. RMiPO, arXiv 2604.24804 (and liavonpenn/rmipo, whose trainer uses the policy).
* ``perce`` — DPO sigmoid loss on token-weighted sequence log-probs plus
  ``alpha`` x PerCE on the chosen response. Weights from ``policy``: one
  no-grad forward of ``prompt_no_context + response`` (both responses when
  ``perce_token_weighted_dpo``, else the chosen one only). Weights from
  ``reference``: computed once with the reference model while precomputing the
  reference log-probs and stored in the dataset, so nothing extra per step.
  PerContrast / PerCE, arXiv 2603.06595 (an SFT loss there; its DPO form is this project's).
* ``rmipo+perce`` — both: RMiPO's preference term (token-weighted like
  ``perce``) plus the PerCE term.

Choices this module makes where the papers leave them open:

* Token weights, when ``perce_token_weighted_dpo`` is on, replace the sequence
  log-probs of policy AND reference in whichever preference term is active
  (DPO sums ``sum w_i log p``; RMiPO reference-free averages
  ``(1/n) sum w_i log p``). RMiPO's dPMI always uses unweighted log-probs: it
  measures the pair, not the weighting.
* RMiPO's DPO form uses DPO's ``beta`` (``rl_beta``), because its log-ratios are
  DPO's sequence sums; ``rmipo_beta`` is the reference-free form's scale
  (per-token averages). With ``gamma = 0`` the DPO form is exactly DPO.
* The weights' no-context forward and RMiPO's response-alone forward use the
  policy as it is at this step (adapter enabled), as PerCE (arXiv 2603.06595) and
  liavonpenn/rmipo do.
* ``rewards/*`` metrics: ``beta x`` the log-ratios the loss uses; for the
  reference-free form, ``rmipo_beta x`` the average log-probs (SimPO's
  convention). ``logps/*`` stay TRL's unweighted sequence sums.
* Precomputed reference data (``precompute_ref_log_probs``): one pass and its
  cache, in :mod:`axolotl_mipo.reference`, which runs this trainer's forwards.
"""

import json
import logging
from dataclasses import dataclass

import torch
from accelerate.utils import is_peft_model
from axolotl.core.trainers.dpo.args import AxolotlDPOConfig
from axolotl.core.trainers.dpo.trainer import AxolotlDPOTrainer
from datasets import Dataset
from trl.data_utils import _tokenize
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import use_adapter

import axolotl_mipo.compat as compat
from axolotl_mipo.args import MIPOLossSettings, MIPOTrainingArgsMixin
from axolotl_mipo.collator import (
    COL_PROMPT_NC_IDS,
    MIPO_BATCH_KEYS,
    MIPO_COLUMNS,
    REF_PMI_KEY,
    MIPOPreferenceCollator,
)
from axolotl_mipo.errors import MIPOConfigError, MIPOError
from axolotl_mipo.losses import (
    PerCEStats,
    align_right,
    dpo_sigmoid_loss,
    masked_mean,
    masked_sum,
    perce_loss,
    perce_weights,
    response_alone,
    rmipo_dpmi,
    rmipo_dpo_loss,
    rmipo_gamma,
    rmipo_reference_free_loss,
)
from axolotl_mipo.reference import precompute_reference_data

LOG = logging.getLogger(__name__)

__all__ = ["MIPODPOConfig", "MIPODPOTrainer"]

_NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}) | MIPO_BATCH_KEYS

if issubclass(AxolotlDPOConfig, MIPOTrainingArgsMixin):
    # the plugin was registered before Axolotl built its training args: the fields are already there
    MIPODPOConfig = AxolotlDPOConfig
else:

    @dataclass
    class MIPODPOConfig(MIPOTrainingArgsMixin, AxolotlDPOConfig):
        """``AxolotlDPOConfig`` with the ``mipo_*`` fields, for building the trainer without the plugin."""


# --------------------------------------------------------------------------- trainer
class MIPODPOTrainer(AxolotlDPOTrainer):
    """``AxolotlDPOTrainer`` whose loss is DPO, RMiPO, PerCE or RMiPO + PerCE (``args.mipo_loss``).

    With ``mipo_loss="dpo"`` (or args without ``mipo_*`` fields) every
    overridden method defers to the parent, so training is exactly TRL's DPO.

    Metrics, logged through TRL's metric store next to ``rewards/*``:
    ``rmipo/gamma``, ``rmipo/dpmi``, ``rmipo/pmi_chosen``, ``rmipo/pmi_rejected``;
    ``perce/weight_mean``, ``perce/clipped_frac``, ``perce/pir_mean``,
    ``perce/aux_loss``.
    """

    def __init__(self, model, ref_model=None, args=None, *pargs, **kwargs):
        # set before the parent's __init__: it prepares datasets through our overrides
        self._mipo = MIPOLossSettings.from_args(args)
        # TRL >= 1.15 patches the models with its fused LM head in the parent's __init__, before it precomputes
        self._mipo_fused = compat.trl_fused_lm_head()
        if self._mipo.loss != "dpo":
            self._check_compatible(args)
        super().__init__(model, ref_model, args, *pargs, **kwargs)
        if self._mipo.loss == "dpo":
            return
        if self._is_vision_dataset:
            raise MIPOConfigError(f"mipo.loss {self._mipo.loss} does not support vision datasets; use loss dpo")
        self.data_collator = self._mipo_collator(
            emit_no_context=self._mipo.policy_weights,
            no_context_rows="both" if self._mipo.token_weighted else "chosen",
        )

    # -- setup ---------------------------------------------------------------
    def _check_compatible(self, args) -> None:
        s = self._mipo
        if args is None:
            return
        clashes = []
        if list(getattr(args, "loss_type", ["sigmoid"])) != ["sigmoid"]:
            clashes.append(f"dpo_loss_type/loss_type={args.loss_type} (must be ['sigmoid'])")
        if getattr(args, "loss_weights", None) not in (None, [1.0]):
            clashes.append(f"loss_weights={args.loss_weights}")
        if getattr(args, "f_divergence_type", "reverse_kl") != "reverse_kl":
            clashes.append(f"f_divergence_type={args.f_divergence_type}")
        if getattr(args, "ld_alpha", None) is not None:
            clashes.append(f"ld_alpha={args.ld_alpha}")
        if getattr(args, "label_smoothing", 0.0):
            clashes.append(f"label_smoothing={args.label_smoothing}")
        if getattr(args, "use_weighting", False):
            clashes.append("use_weighting=True")
        if clashes:
            raise MIPOConfigError(
                f"mipo.loss {s.loss} computes its own preference loss and cannot honour: {', '.join(clashes)}; "
                "remove these options or use mipo.loss dpo"
            )
        # the plugin asked the same question at config load; this covers a trainer built without it
        compat.check_liger(getattr(args, "use_liger_kernel", False), s.loss)
        if s.ref_pmi and not getattr(args, "precompute_ref_log_probs", False):
            raise MIPOConfigError(
                "mipo.rmipo_pmi_from: reference computes each pair's PMI once, while precomputing the reference "
                "log-probs; set 'precompute_ref_log_probs: true' (or use rmipo_pmi_from: policy)"
            )
        if s.ref_weights and not getattr(args, "precompute_ref_log_probs", False):
            raise MIPOConfigError(
                "mipo.perce_weights_from: reference computes the weights once, while precomputing the reference "
                "log-probs; set 'precompute_ref_log_probs: true' (or use perce_weights_from: policy)"
            )

    def _mipo_collator(self, emit_no_context: bool, no_context_rows: str) -> MIPOPreferenceCollator:
        return MIPOPreferenceCollator(
            inner=getattr(self.data_collator, "inner", self.data_collator),
            pad_token_id=self._tokenizer.pad_token_id,
            max_length=self.args.max_length,
            truncation_mode=self.args.truncation_mode,
            emit_no_context=emit_no_context,
            no_context_rows=no_context_rows,
        )

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._mipo.loss != "dpo":
            extra = [c for c in MIPO_COLUMNS if c not in self._signature_columns]
            self._signature_columns = list(self._signature_columns) + extra

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if not self._mipo.uses_perce:
            return dataset
        first = next(iter(dataset))
        if COL_PROMPT_NC_IDS in first:
            return dataset
        if "prompt_no_context" not in first:
            raise MIPOConfigError(
                f"mipo.loss {self._mipo.loss} needs a 'prompt_no_context' column in the {dataset_name} dataset "
                "(the prompt without the user context, as axolotl-mipo's pair builder writes it)"
            )

        def tokenize_nc(example, processing_class):
            nc = example["prompt_no_context"]
            if isinstance(nc, str):
                return {COL_PROMPT_NC_IDS: _tokenize(processing_class, nc)["input_ids"]}
            tools = example.get("tools")
            tools = json.loads(tools) if isinstance(tools, str) else tools
            kwargs = {"tools": tools, **(example.get("chat_template_kwargs") or {})}
            ids = _tokenize(processing_class, nc, add_generation_prompt=True, **kwargs)["input_ids"]
            return {COL_PROMPT_NC_IDS: ids}

        map_kwargs = {}
        if isinstance(dataset, Dataset):
            map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Tokenizing prompt_no_context ({dataset_name})"}
        with compat.main_process_first():  # the order TRL's own tokenization uses
            return dataset.map(tokenize_nc, fn_kwargs={"processing_class": processing_class}, **map_kwargs)

    # -- reference data ------------------------------------------------------
    def compute_ref_log_probs(self, model, inputs):
        # the parent hands every non-TRL key of the batch to the model
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k not in MIPO_BATCH_KEYS})

    def _precompute_ref_logps(self, dataset, name, batch_size):
        s = self._mipo
        if s.loss == "dpo":
            return super()._precompute_ref_logps(dataset, name, batch_size)
        if not s.needs_reference and not s.ref_extras:
            LOG.info("mipo.loss %s (%s form) uses no reference model: nothing to precompute", s.loss, s.rmipo_form)
            return dataset
        if not s.needs_ref_tokens and not s.ref_extras:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        return precompute_reference_data(self, dataset, name, batch_size)

    # -- forwards ------------------------------------------------------------
    def _no_grad_token_logps(self, model_inputs: dict, *, reference: bool, model=None, score_mask=None):
        """Per-token log-probs ``[N, T-1]`` of ``input_ids[:, 1:]`` under one no-grad forward.

        Scored where ``score_mask`` ``[N, T]`` is true (default: the attention
        mask), zero elsewhere; callers mask again with what they need.
        ``reference=False``: the policy as it is at this step (adapter enabled).
        ``reference=True``: the frozen reference: ``model`` when given (while
        precomputing: the reference, or the policy's DeepSpeed engine), else
        ``ref_model``. A PEFT policy without a ``ref_model`` is its own
        reference with the adapter disabled (or its ``ref`` adapter), as TRL does.
        """
        kwargs = {**model_inputs, "use_cache": False}
        if score_mask is None:
            score_mask = model_inputs.get("attention_mask")
            if score_mask is None:
                score_mask = torch.ones_like(model_inputs["input_ids"])

        def score(m):
            return compat.score_tokens(m, kwargs, score_mask, fused=self._mipo_fused)[0].logps

        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if reference and self.ref_model is None and is_peft_model(self.model):
                unwrapped = self.accelerator.unwrap_model(self.model)
                with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                    return score(self.model if model is None else model)
            if model is None:
                model = self.ref_model if reference else self.model
            return score(model)

    def _mipo_ref_token_logps(self, model, input_ids, attention_mask, completion_mask):
        """Reference per-token log-probs of the completion while precomputing, ``([N, T-1], mask)``."""
        logps = self._no_grad_token_logps({"input_ids": input_ids, "attention_mask": attention_mask},
                                          reference=True, model=model, score_mask=completion_mask)
        mask = completion_mask[:, 1:].bool()
        return logps.masked_fill(~mask, 0.0), mask

    def _policy_token_logps_no_grad(self, input_ids, attention_mask):
        return self._no_grad_token_logps({"input_ids": input_ids, "attention_mask": attention_mask}, reference=False)

    # -- the loss ------------------------------------------------------------
    def _perce_token_weights(self, inputs, per_token_logps, mask) -> tuple[torch.Tensor, PerCEStats]:
        """PerCE weights for the rows that use them (chosen, or all when token-weighted), ``[2B, T-1]``."""
        s = self._mipo
        rows = mask.shape[0] if s.token_weighted else mask.shape[0] // 2
        if s.ref_weights:
            pir, matched = align_right(inputs["perce_ref_pir"][:rows].to(per_token_logps.dtype),
                                       inputs["perce_ref_pir_mask"][:rows], mask[:rows])
            if not torch.equal(matched, mask[:rows]):
                raise MIPOError(
                    "precomputed PerCE weights do not line up with the batch's tokens (was max_length or "
                    "truncation_mode changed after they were cached?)"
                )
            weights, stats = perce_weights(pir, torch.zeros_like(pir), mask[:rows], s.perce_clip_min, s.perce_clip_max)
        else:
            nc_ids = inputs["nc_input_ids"]
            nc_logps = self._policy_token_logps_no_grad(nc_ids, inputs["nc_attention_mask"])
            nc_mask = inputs["nc_completion_mask"][:, 1:].bool()
            ctx = per_token_logps[:rows].detach()
            aligned, matched = align_right(nc_logps, nc_mask, mask[:rows])
            # a token with no no-context counterpart (empty prompt_no_context) gets PIR 0
            aligned = torch.where(matched, aligned, ctx)
            weights, stats = perce_weights(ctx, aligned, mask[:rows], s.perce_clip_min, s.perce_clip_max)
        if rows < mask.shape[0]:
            weights = torch.cat([weights, torch.zeros_like(weights)], dim=0)
        return weights.to(per_token_logps.dtype), stats

    def _response_pmi(self, input_ids, completion_mask, per_token_logps, mask, alone_logps_fn):
        """PMI of each row's response, ``[N]``: mean log p(y_i | prompt, y<i) - mean log p(y_i | y<i) over
        tokens 2..n (the response alone has no prompt and no BOS, so its first token is not predicted).

        ``per_token_logps`` are the with-prompt log-probs of the rows; ``alone_logps_fn(ids, attention_mask)``
        scores the responses alone with the same model (policy or reference), no grad.
        """
        resp_ids, resp_att = response_alone(input_ids, completion_mask, self._tokenizer.pad_token_id)
        if resp_ids.shape[1] < 2:  # single-token responses: nothing is predicted without a prompt
            return per_token_logps.new_zeros(input_ids.shape[0])
        alone = alone_logps_fn(resp_ids, resp_att)
        alone_mask = resp_att[:, 1:].bool()
        ctx, matched = align_right(per_token_logps.detach(), mask, alone_mask)
        both = alone_mask & matched
        return masked_mean(ctx, both) - masked_mean(alone.to(ctx.dtype), both)

    def _rmipo_dpmi(self, inputs, per_token_logps, mask):
        """``(dPMI [B], PMI [2B])``: precomputed from the reference, or one no-grad policy forward over the
        responses alone."""
        if self._mipo.ref_pmi:
            if REF_PMI_KEY not in inputs:
                raise MIPOError(
                    f"batch has no {REF_PMI_KEY!r}: rmipo_pmi_from reference needs the dataset prepared with "
                    "precompute_ref_log_probs by MIPODPOTrainer"
                )
            pmi = inputs[REF_PMI_KEY].to(per_token_logps.dtype)
        else:
            pmi = self._response_pmi(inputs["input_ids"], inputs["completion_mask"], per_token_logps, mask,
                                     self._policy_token_logps_no_grad)
        pmi_c, pmi_r = pmi.chunk(2)
        return rmipo_dpmi(pmi_c, torch.zeros_like(pmi_c), pmi_r, torch.zeros_like(pmi_r)), pmi

    def _reference_logps(self, inputs, model_kwargs, mask, seq_weights):
        """Reference sequence log-probs ``[2B]`` (token-weighted when ``seq_weights`` is given): precomputed, or
        one no-grad reference forward over the batch."""
        if self.precompute_ref_logps:
            if seq_weights is None:
                return torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]])
            ref_tok, matched = align_right(
                inputs["ref_token_logps"].to(seq_weights.dtype), inputs["ref_token_mask"], mask
            )
            if not torch.equal(matched, mask):
                raise MIPOError(
                    "precomputed reference log-probs do not line up with the batch's tokens (was max_length or "
                    "truncation_mode changed after they were cached?)"
                )
            return masked_sum(ref_tok, mask, seq_weights)
        ref_kwargs = {k: v for k, v in model_kwargs.items() if k != "output_router_logits"}
        ref = self._no_grad_token_logps(ref_kwargs, reference=True, score_mask=inputs["completion_mask"])
        return masked_sum(ref, mask, seq_weights)

    def _preference_loss(self, per_token_logps, mask, seq_weights, logratios, gamma):
        """The preference term: ``(per_pair_loss [B], chosen_rewards [B], rejected_rewards [B])``.

        The return contract of Liger-Kernel's alignment losses (rewards detached).

        Args:
            per_token_logps: policy log-probs ``[2B, T-1]``, chosen rows first, zero off ``mask``.
            mask: the completion tokens ``[2B, T-1]``.
            seq_weights: PerCE token weights ``[2B, T-1]`` when the term is token-weighted, else ``None``.
            logratios: ``(chosen, rejected)`` policy-minus-reference sequence log-probs ``[B]`` for DPO and
                RMiPO's DPO form; ``None`` for RMiPO's reference-free form, which has no reference.
            gamma: RMiPO's per-pair margin ``[B]`` (no gradient), or ``None`` for DPO.
        """
        s = self._mipo
        if logratios is None:
            # RMiPO reference-free (arXiv 2604.24804; liavonpenn/rmipo): average log-probs, scale rmipo_beta
            scale = s.rmipo_beta
            chosen, rejected = masked_mean(per_token_logps, mask, seq_weights).chunk(2)
            per_pair = rmipo_reference_free_loss(chosen, rejected, gamma, scale)
        else:
            # DPO (arXiv 2305.18290, Eq. 7), or RMiPO's DPO form with the margin inside the sigmoid
            scale = self.beta
            chosen, rejected = logratios
            if gamma is None:
                per_pair = dpo_sigmoid_loss(chosen, rejected, scale)
            else:
                per_pair = rmipo_dpo_loss(chosen, rejected, gamma, scale)
        return per_pair, scale * chosen.detach(), scale * rejected.detach()

    def _compute_loss(self, model, inputs, return_outputs):
        s = self._mipo
        if s.loss == "dpo":
            return super()._compute_loss(model, inputs, return_outputs)
        mode = "train" if self.model.training else "eval"

        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        input_ids, completion_mask = inputs["input_ids"], inputs["completion_mask"]
        # TRL >= 1.15: through its fused LM head, no logits (compat.score_tokens)
        scores, outputs = compat.score_tokens(model, model_kwargs, completion_mask, fused=self._mipo_fused,
                                              stats=True)
        mask = completion_mask[..., 1:].bool()
        per_token_logps = scores.logps
        half = input_ids.shape[0] // 2

        weights, perce_stats = None, None
        if s.uses_perce:
            weights, perce_stats = self._perce_token_weights(inputs, per_token_logps, mask)
        seq_weights = weights if s.token_weighted else None

        # the reference forward runs before the PMI forward, as it always has (dropout draws in the same order)
        logratios = None
        if s.needs_reference:
            ref_logps = self._reference_logps(inputs, model_kwargs, mask, seq_weights)
            logratios = (masked_sum(per_token_logps, mask, seq_weights) - ref_logps).chunk(2)
        gamma = dpmi = pmi = None
        if s.uses_rmipo:
            dpmi, pmi = self._rmipo_dpmi(inputs, per_token_logps, mask)
            gamma = rmipo_gamma(dpmi, s.rmipo_gamma_min, s.rmipo_gamma_max)
        per_pair, chosen_rewards, rejected_rewards = self._preference_loss(
            per_token_logps, mask, seq_weights, logratios, gamma
        )
        loss = per_pair.mean()

        aux = None
        if s.uses_perce:
            aux = perce_loss(per_token_logps[:half], weights[:half], mask[:half])
            loss = loss + s.perce_alpha * aux

        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(outputs.aux_loss).mean().item())

        self._log_dpo_metrics(mode, inputs, scores, mask, per_token_logps, chosen_rewards, rejected_rewards)
        metrics = self._metrics[mode]
        gather = self.accelerator.gather_for_metrics
        if s.uses_rmipo:
            metrics["rmipo/gamma"].append(gather(gamma.detach()).float().mean().item())
            metrics["rmipo/dpmi"].append(gather(dpmi).float().mean().item())
            pmi_c, pmi_r = pmi.chunk(2)
            metrics["rmipo/pmi_chosen"].append(gather(pmi_c.detach()).float().mean().item())
            metrics["rmipo/pmi_rejected"].append(gather(pmi_r.detach()).float().mean().item())
        if s.uses_perce:
            n = gather(perce_stats.n_tokens.reshape(1).float())
            total = n.sum().clamp(min=1)
            for key, value in (("weight_mean", perce_stats.mean_weight), ("clipped_frac", perce_stats.clipped_frac),
                               ("pir_mean", perce_stats.mean_pir)):
                metrics[f"perce/{key}"].append((gather(value.reshape(1).float()) * n).sum().div(total).item())
            metrics["perce/aux_loss"].append(gather(aux.detach().reshape(1)).float().mean().item())

        if return_outputs and self._mipo_fused:
            # the fused head built no logits; TRL >= 1.15 recomputes them the same way for compute_metrics
            with torch.no_grad():
                outputs = model(**model_kwargs)
        return (loss, outputs) if return_outputs else loss

    def _log_dpo_metrics(self, mode, inputs, scores, mask, per_token_logps, chosen_rewards, rejected_rewards):
        """TRL's DPO metrics, with TRL's keys and definitions (``DPOTrainer._compute_loss``), from our loss's
        rewards. ``tests/test_losses.py::test_dpo_metrics_match_trls_on_the_installed_version`` runs the
        installed TRL's ``_compute_loss`` beside this and fails when a key or a value differs, so a TRL
        release that changes its metrics fails the suite of the stack that installs it."""
        acc = self.accelerator
        metrics = self._metrics[mode]
        # scores: compat.TokenScores, from the logits (TRL 1.9 / 1.14) or TRL's fused LM head (>= 1.15)
        entropy_sum = acc.gather_for_metrics((scores.entropy * mask).sum()).sum()
        total_tokens = acc.gather_for_metrics(mask.sum()).sum()
        metrics["entropy"].append((entropy_sum / total_tokens).item() if total_tokens > 0 else 0.0)

        if mode == "train":
            n_tokens = acc.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += n_tokens // compat.tp_size(self)
        metrics["num_tokens"] = [self._total_train_tokens]

        chosen_logits, rejected_logits = scores.mean_logits.chunk(2, dim=0)
        chosen_mask, rejected_mask = mask.chunk(2, dim=0)
        for tag, logits, m in (("chosen", chosen_logits, chosen_mask), ("rejected", rejected_logits, rejected_mask)):
            total = acc.gather_for_metrics(logits[m].sum()).sum().item()
            count = acc.gather_for_metrics(m.sum()).sum().item()
            metrics[f"logits/{tag}"].append(total / count if count > 0 else 0.0)

        correct = (scores.is_top1.chunk(2, dim=0)[0] & chosen_mask).sum()
        correct = acc.gather_for_metrics(correct).sum()
        count = acc.gather_for_metrics(chosen_mask.sum()).sum()
        metrics["mean_token_accuracy"].append((correct / count).item() if count > 0 else 0.0)

        agg_chosen, agg_rejected = acc.gather(chosen_rewards), acc.gather(rejected_rewards)
        metrics["rewards/chosen"].append(agg_chosen.mean().item())
        metrics["rewards/rejected"].append(agg_rejected.mean().item())
        metrics["rewards/accuracies"].append(acc.gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["rewards/margins"].append(acc.gather(chosen_rewards - rejected_rewards).mean().item())

        chosen_sum, rejected_sum = masked_sum(per_token_logps.detach(), mask).chunk(2)
        metrics["logps/chosen"].append(acc.gather(chosen_sum).mean().item())
        metrics["logps/rejected"].append(acc.gather(rejected_sum).mean().item())
