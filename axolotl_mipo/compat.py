"""Every difference between the supported Axolotl / TRL versions, in one place.

Tested stacks: Axolotl 0.19.0 with TRL 1.9 (Python 3.11) and Axolotl 0.21.0 with
TRL 1.14 (Python 3.12), and Axolotl 0.21.0 with TRL 1.15 / 1.16 put beside it
(``scripts/trl_overlay.sh``: the TRL the next Axolotl release will pin). The
rest of the package asks this module instead of checking versions itself. Each helper detects the feature it needs (an
attribute, a function) rather than comparing version numbers, so a release in
between (Axolotl 0.20 with TRL 1.13) gets whichever behaviour it ships.

What differs, and what the trainer does about it:

* Token counting: TRL 1.14's ``DPOTrainer._compute_loss`` divides the batch's
  token count by ``_tp_size`` (tensor-parallel ranks see the same tokens); TRL
  1.9 has no ``_tp_size`` and counts every rank's tokens.
* Dataset preparation order: TRL 1.14 tokenizes under
  ``global_then_local_main_first()`` (global main, then each node's local main,
  then the rest); TRL 1.9 under ``PartialState().main_process_first()``.
* Scoring: TRL >= 1.15 patches the policy and the reference with a fused LM
  head (``trl.trainer.utils.add_fused_lm_head``): ``model(..., labels=labels,
  fused_lm_head=True)`` returns per-token ``log_probs`` (and ``entropy``,
  ``mean_logits``, ``is_top1`` for the policy) and never builds the
  ``[N, T, vocab]`` logits. TRL 1.9 / 1.14 score from ``outputs.logits``. Every
  forward of the trainer goes through :func:`score_tokens`, which uses the fused
  head where TRL installed one.
* Liger kernel (``dpo_use_liger_kernel``): TRL 1.9 routes the whole loss to
  ``_compute_loss_liger`` (Liger's fused DPO sigmoid loss), which never calls
  ``_compute_loss``; TRL 1.14 computes chunked per-token log-probs inside
  ``_compute_loss`` and no logits exist; TRL >= 1.15 applies only Liger's layer
  kernels and scores through its fused LM head. See :func:`liger_refusal`.
* Axolotl's multi-process environment check (both versions) calls
  ``torch.cuda.can_device_access_peer``, which raises ``RuntimeError`` on a CUDA
  build of torch without a GPU driver; Axolotl only catches the
  ``AssertionError`` a CPU build raises. See :func:`patch_axolotl_peer_check`.
* Axolotl 0.21 loads plugins registered under the ``axolotl.plugins`` entry-point
  group for every run (the plugin's hooks do nothing without a ``mipo:`` block);
  0.19 loads only those listed in ``plugins:``.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, NamedTuple

from axolotl_mipo.errors import MIPOConfigError

if TYPE_CHECKING:
    import torch

LOG = logging.getLogger("axolotl_mipo.compat")

# what CI runs; README's table says the same
TESTED = {"0.19.0": {"python": "3.11", "trl": "1.9.0"}, "0.21.0": {"python": "3.12", "trl": "1.14.1"}}
# TRL releases newer than any Axolotl pin, run beside Axolotl 0.21.0 in CI (scripts/trl_overlay.sh)
TESTED_AHEAD = {"0.21.0": ("1.15.0", "1.16.0")}


def installed_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- TRL
def main_process_first():
    """The context TRL's own ``DPOTrainer._prepare_dataset`` tokenizes under, for our extra tokenization."""
    try:
        from trl.trainer.utils import global_then_local_main_first  # TRL >= 1.13
    except ImportError:
        from accelerate import PartialState

        return PartialState().main_process_first()
    return global_then_local_main_first()


def tp_size(trainer) -> int:
    """What TRL divides the train-token count by: ``_tp_size`` where TRL sets it (1.14), else 1 (1.9)."""
    return int(getattr(trainer, "_tp_size", 1) or 1)


def trl_has_fused_liger_dpo() -> bool:
    """TRL 1.9: with the Liger kernel on, ``compute_loss`` calls ``_compute_loss_liger``, not ``_compute_loss``."""
    from trl.trainer.dpo_trainer import DPOTrainer

    return hasattr(DPOTrainer, "_compute_loss_liger")


def trl_fused_lm_head() -> bool:
    """TRL >= 1.15: ``DPOTrainer.__init__`` patches its policy and reference with ``add_fused_lm_head``, so both
    accept ``fused_lm_head=True`` (the DPO trainer module imports the patch function only where it uses it)."""
    from trl.trainer import dpo_trainer

    return hasattr(dpo_trainer, "add_fused_lm_head")


class TokenScores(NamedTuple):
    """One forward's per-token results, ``[N, T-1]`` for the labels ``input_ids[:, 1:]``.

    ``logps`` is zero off the scored positions. The statistics TRL logs
    (``entropy``, ``mean_logits`` over the vocabulary, ``is_top1``: the label is
    the argmax) are detached, and ``None`` unless asked for.
    """

    logps: "torch.Tensor"
    entropy: "torch.Tensor | None" = None
    mean_logits: "torch.Tensor | None" = None
    is_top1: "torch.Tensor | None" = None


def score_tokens(model, model_kwargs: dict, score_mask, *, fused: bool, stats: bool = False):
    """``(TokenScores, outputs)`` of one forward of ``model`` over ``model_kwargs["input_ids"]``.

    ``score_mask`` ``[N, T]`` marks the tokens whose log-prob is wanted (the
    completion; all real tokens for a no-grad helper forward): position ``i`` of
    the result scores ``input_ids[:, i + 1]`` where ``score_mask[:, i + 1]``.
    ``fused``: the model carries TRL's fused LM head (:func:`trl_fused_lm_head`),
    so the logits are never built; else they are, and scored as TRL 1.9 / 1.14
    do (``selective_log_softmax``, ``entropy_from_logits``). ``outputs`` keeps
    the model's ``aux_loss`` for MoE models.
    """
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    input_ids = model_kwargs["input_ids"]
    mask = score_mask[:, 1:].bool()
    if fused:
        labels = input_ids.masked_fill(~score_mask.bool(), -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        # prompt-learning PEFT prepends virtual tokens; keep the real positions, as TRL's _compute_loss does
        cut = mask.shape[1]
        logps = outputs.log_probs[:, -cut:]
        if not stats:
            return TokenScores(logps), outputs
        return TokenScores(logps, outputs.entropy[:, -cut:].detach(), outputs.mean_logits[:, -cut:].detach(),
                           outputs.is_top1[:, -cut:].detach()), outputs
    outputs = model(**model_kwargs)
    shift_logits = outputs.logits[:, :-1, :]
    labels = input_ids[:, 1:]
    logps = selective_log_softmax(shift_logits, labels).masked_fill(~mask, 0.0)
    if not stats:
        return TokenScores(logps), outputs
    logits = shift_logits.detach()
    return TokenScores(logps, entropy_from_logits(logits), logits.mean(-1), logits.argmax(-1) == labels), outputs


def liger_refusal(loss: str) -> str | None:
    """Why ``dpo_use_liger_kernel: true`` cannot train ``mipo.loss: loss`` with the installed TRL, or None if it can.

    The one place this is decided: the plugin asks at config load, and a
    trainer built without the plugin asks through :func:`check_liger`.
    ``dpo`` defers to TRL's own Liger path on every version. The other losses:

    * TRL 1.9 sends the whole loss to Liger's fused DPO sigmoid loss, which would
      skip RMiPO / PerCE silently (the override is never called);
    * TRL 1.14 has no logits in its chunked path, and axolotl-mipo's no-context,
      response-alone and reference forwards are not chunked: the memory Liger
      saves would be spent again on them;
    * TRL >= 1.15 applies only Liger's layer kernels and calls ``_compute_loss``,
      and every forward of ours goes through its fused LM head, so nothing in
      the code stands in the way; but Liger's kernels are Triton (GPU only) and
      the combination has not been trained on a GPU, so it stays refused.
    """
    if loss == "dpo":
        return None
    trl = installed_version("trl") or "?"
    if trl_has_fused_liger_dpo():
        why = (f"TRL {trl} replaces the whole loss with Liger's fused DPO loss, so mipo.loss {loss} "
               "would silently train plain DPO")
    elif trl_fused_lm_head():
        why = (f"TRL {trl} would run mipo.loss {loss} with Liger's layer kernels, but that combination has not "
               "been tested on a GPU yet")
    else:
        why = (f"TRL {trl}'s Liger path computes chunked log-probs without logits, and mipo.loss {loss}'s "
               "extra forwards (no-context, response-alone, reference) are not chunked")
    return (f"'dpo_use_liger_kernel: true' cannot be used with mipo.loss {loss}: {why}; "
            "set 'dpo_use_liger_kernel: false' or use mipo.loss dpo")


def check_liger(use_liger: bool, loss: str) -> None:
    """Raise :class:`~axolotl_mipo.errors.MIPOConfigError` with :func:`liger_refusal`'s reason, if it has one."""
    if not use_liger:
        return
    refusal = liger_refusal(loss)
    if refusal:
        raise MIPOConfigError(refusal)


# --------------------------------------------------------------------------- Axolotl
def _peer_check_without_driver(check):
    @functools.wraps(check)
    def guarded(*args, **kwargs):
        try:
            return check(*args, **kwargs)
        except RuntimeError:
            import torch

            if torch.cuda.is_available():
                raise
            # a CUDA build of torch on a machine with no usable GPU: there is no peer to reach, and the
            # CPU build's answer (AssertionError, which Axolotl maps to "fine") is the right one
            LOG.debug("CUDA peer-access check raised without a usable GPU; treating it as a CPU run")
            return True

    guarded._mipo_guarded = True
    return guarded


def patch_axolotl_peer_check() -> bool:
    """Make Axolotl's multi-process P2P check answer like a CPU torch build when no GPU is usable.

    ``axolotl.utils.environment.check_cuda_p2p_support`` (0.19 and 0.21) catches
    only ``AssertionError``; a CUDA torch build without a driver raises
    ``RuntimeError`` instead, which stops ``load_cfg`` under ``torchrun`` on a CPU
    machine. Only that case changes: with a usable GPU the error propagates as
    before. Idempotent; returns whether the check is guarded.
    """
    try:
        from axolotl.utils import environment
    except ImportError:
        return False
    check = getattr(environment, "check_cuda_p2p_support", None)
    if check is None:
        return False
    if not getattr(check, "_mipo_guarded", False):
        environment.check_cuda_p2p_support = _peer_check_without_driver(check)
    return True
