"""Every difference between the supported Axolotl / TRL versions, in one place.

Tested stacks: Axolotl 0.19.0 with TRL 1.9 (Python 3.11) and Axolotl 0.21.0 with
TRL 1.14 (Python 3.12). The rest of the package asks this module instead of
checking versions itself. Each helper detects the feature it needs (an
attribute, a function) rather than comparing version numbers, so a release in
between (Axolotl 0.20 with TRL 1.13) gets whichever behaviour it ships.

What differs, and what the trainer does about it:

* Token counting: TRL 1.14's ``DPOTrainer._compute_loss`` divides the batch's
  token count by ``_tp_size`` (tensor-parallel ranks see the same tokens); TRL
  1.9 has no ``_tp_size`` and counts every rank's tokens.
* Dataset preparation order: TRL 1.14 tokenizes under
  ``global_then_local_main_first()`` (global main, then each node's local main,
  then the rest); TRL 1.9 under ``PartialState().main_process_first()``.
* Liger kernel (``dpo_use_liger_kernel``): TRL 1.9 routes the whole loss to
  ``_compute_loss_liger`` (Liger's fused DPO sigmoid loss), which never calls
  ``_compute_loss``; TRL 1.14 computes chunked per-token log-probs inside
  ``_compute_loss`` and no logits exist. See :func:`liger_refusal`.
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

LOG = logging.getLogger("axolotl_mipo.compat")

# what CI runs; README's table says the same
TESTED = {"0.19.0": {"python": "3.11", "trl": "1.9.0"}, "0.21.0": {"python": "3.12", "trl": "1.14.1"}}


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


def liger_refusal(loss: str) -> str | None:
    """Why ``dpo_use_liger_kernel: true`` cannot train ``mipo.loss: loss`` with the installed TRL, or None if it can.

    ``dpo`` defers to TRL's own Liger path on every version. The other losses
    need per-token log-probs of several forwards:

    * TRL 1.9 sends the whole loss to Liger's fused DPO sigmoid loss, which would
      skip RMiPO / PerCE silently (the override is never called);
    * TRL 1.14 has no logits in its chunked path, and axolotl-mipo's no-context,
      response-alone and reference forwards are not chunked: the memory Liger
      saves would be spent again on them.
    """
    if loss == "dpo":
        return None
    trl = installed_version("trl") or "?"
    if trl_has_fused_liger_dpo():
        why = (f"TRL {trl} replaces the whole loss with Liger's fused DPO loss, so mipo.loss {loss} "
               "would silently train plain DPO")
    else:
        why = (f"TRL {trl}'s Liger path computes chunked log-probs without logits, and mipo.loss {loss}'s "
               "extra forwards (no-context, response-alone, reference) are not chunked")
    return (f"'dpo_use_liger_kernel: true' cannot be used with mipo.loss {loss}: {why}; "
            "set 'dpo_use_liger_kernel: false' or use mipo.loss dpo")


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
