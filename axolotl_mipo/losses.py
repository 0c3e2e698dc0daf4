"""The loss math of the RMiPO and PerCE hooks: pure tensor functions, no trainer state.

Every function takes tensors and returns tensors; the trainer
(:mod:`axolotl_mipo.trainer`) runs the forwards and calls these. Formulas
follow the papers, cited at each function: DPO (Rafailov et al., arXiv
2305.18290), RMiPO (Liao et al., arXiv 2604.24804, and its released trainer,
github liavonpenn/rmipo, ``scripts/rmipo_trainer.py``) and PerContrast / PerCE
(Zhang et al., arXiv 2603.06595, which has no released code). Where a paper
leaves a detail open, the choice is stated in the function's docstring and
pinned by ``tests/test_losses.py``.

Shapes: ``N`` rows (sequences), ``T`` token positions. A *mask* is a bool (or
0/1) tensor ``[N, T]`` that is true on the tokens that count. Values under a
false mask are never read, so they may be anything, including ``-inf`` or NaN
(``torch.where`` rather than multiplication keeps them out of sums and grads).

Conventions shared by all functions:

* a row whose mask is all false has sum 0 and mean 0 (never NaN);
* per-pair losses are returned unreduced (``[B]``) so the caller chooses the
  reduction, exactly as TRL's ``_compute_loss`` does with ``.mean()``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "PerCEStats",
    "align_right",
    "dpo_sigmoid_loss",
    "masked_count",
    "masked_mean",
    "masked_sum",
    "perce_loss",
    "perce_weights",
    "response_alone",
    "rmipo_dpmi",
    "rmipo_dpo_loss",
    "rmipo_gamma",
    "rmipo_reference_free_loss",
]


# --------------------------------------------------------------------------- masked reductions
def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def masked_count(mask: torch.Tensor) -> torch.Tensor:
    """Number of true entries per row, ``[N]`` (same dtype as a float result would have: long)."""
    return _as_bool(mask).sum(dim=-1)


def masked_sum(values: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i m_i * w_i * v_i`` per row, ``[N]``.

    With ``values`` the per-token log-probs of a completion this is the sequence
    log-prob DPO uses (``weights=None``) or PerCE's token-weighted sequence
    log-prob ``sum_i w_i log p(y_i)`` (PerCE's token weights, arXiv 2603.06595, applied
    to DPO's sequence log-prob: this project's DPO form of PerCE). Weights enter as
    given: detach them first if they must not carry gradient.
    """
    mask = _as_bool(mask)
    terms = values if weights is None else values * weights
    return torch.where(mask, terms, torch.zeros((), dtype=terms.dtype, device=terms.device)).sum(dim=-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``(1/n) sum_i m_i * w_i * v_i`` per row with ``n = sum_i m_i``; 0 for an all-masked row.

    The per-token average log-prob of RMiPO (arXiv 2604.24804; liavonpenn/rmipo
    averages over the response tokens, as SimPO does). With weights, the normaliser stays the token count
    ``n`` (not ``sum w``), the same convention as PerCE's ``-(1/n) sum w_i log p``,
    so that a weight of 1 everywhere gives back the plain average.
    """
    count = masked_count(mask).clamp(min=1).to(values.dtype)
    return masked_sum(values, mask, weights) / count


def align_right(
    src: torch.Tensor, src_mask: torch.Tensor, dst_mask: torch.Tensor, fill: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move per-token values from one layout to another, matching tokens from the END of each row.

    Row ``r``'s k-th true position from the end of ``dst_mask`` receives the k-th
    true value from the end of ``src``. This lines up the same response tokens
    scored in two different forwards: with the prompt (``[prompt, y]``), without
    the user context (``[prompt_no_context, y]``) and the response alone
    (``[y]``, whose first token has nothing to be predicted from, so it has one
    scored token fewer). All of them end with the response's last token, so
    counting from the end is the one alignment that holds in every case,
    including truncation that removed the start of the row.

    Returns ``(values [N, T_dst], matched [N, T_dst] bool)``; positions of
    ``dst_mask`` with no counterpart in ``src`` (src had fewer tokens) are
    ``fill`` and ``matched`` is false there. Differentiable w.r.t. ``src``.
    """
    src_mask, dst_mask = _as_bool(src_mask), _as_bool(dst_mask)
    n_rows = src.shape[0]
    n_src = src_mask.sum(dim=-1)
    # 0 for the last true position of a row, 1 for the one before, ...
    src_rank = src_mask.flip(-1).long().cumsum(-1).flip(-1) - 1
    dst_rank = dst_mask.flip(-1).long().cumsum(-1).flip(-1) - 1
    width = int(n_src.max().item()) if n_rows else 0
    # column `width` is a sink for the positions that carry nothing
    fill_t = torch.full((), fill, dtype=src.dtype, device=src.device)
    src_idx = torch.where(src_mask, src_rank, width)
    dense = src.new_full((n_rows, width + 1), fill).scatter(-1, src_idx, torch.where(src_mask, src, fill_t))
    matched = dst_mask & (dst_rank < n_src.unsqueeze(-1))
    out = dense.gather(-1, torch.where(matched, dst_rank, width))
    return torch.where(matched, out, fill_t), matched


def response_alone(values: torch.Tensor, mask: torch.Tensor, fill) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's masked entries moved, in order, to the start of a new row: ``(values [N, W], attention [N, W])``.

    ``W`` is the largest row count; the rest of a row is ``fill`` and its
    attention 0. With ``input_ids`` and the completion mask this is the
    response alone, without prompt or BOS, which RMiPO's PMI scores
    (``log p(y)`` next to ``log p(y | x)``). Works for any dtype.
    """
    m = _as_bool(mask)
    n = m.sum(-1)
    width = int(n.max().item()) if n.numel() else 0
    pos = m.long().cumsum(-1) - 1
    # column `width` is a sink for the entries that are not moved
    idx = torch.where(m, pos, torch.full_like(pos, width))
    fill_t = torch.full_like(values, fill)
    out = values.new_full((values.shape[0], width + 1), fill).scatter(-1, idx, torch.where(m, values, fill_t))
    att = (torch.arange(width, device=values.device).unsqueeze(0) < n.unsqueeze(-1)).long()
    return out[:, :width], att


# --------------------------------------------------------------------------- DPO
def dpo_sigmoid_loss(
    chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float
) -> torch.Tensor:
    """TRL's ``sigmoid`` DPO loss per pair: ``-log sigmoid(beta * (r_w - r_l))``, ``[B]``.

    DPO, Rafailov et al., arXiv 2305.18290, Eq. 7, per pair.
    ``r = log pi(y|x) - log pi_ref(y|x)`` (sequence sums). Identical to
    ``trl.DPOTrainer._compute_loss`` with ``loss_type="sigmoid"``,
    ``f_divergence_type="reverse_kl"`` and no label smoothing.
    """
    return -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))


# --------------------------------------------------------------------------- RMiPO
def rmipo_dpmi(
    chosen_ctx_logps: torch.Tensor,
    chosen_alone_logps: torch.Tensor,
    rejected_ctx_logps: torch.Tensor,
    rejected_alone_logps: torch.Tensor,
) -> torch.Tensor:
    """The pair's PMI gap ``dPMI = (lw - uw) - (ll - ul)``, detached, ``[B]``.

    RMiPO's response-level mutual information, arXiv 2604.24804, computed as
    liavonpenn/rmipo ``scripts/rmipo_trainer.py`` does (response alone: no
    prompt, no BOS).

    ``l*`` are per-token average log pi(y|x) and ``u*`` per-token average
    log pi(y) of the response alone. The trainer averages both over the SAME
    tokens: the response alone has no prompt and no BOS, so its first token is
    not predicted; that token is then left out of ``l*`` as well (tokens
    2..n in both). liavonpenn/rmipo mixes an n-token average with an
    (n-1)-token one; matching the sets keeps dPMI a sum of per-token PMIs.
    """
    return ((chosen_ctx_logps - chosen_alone_logps) - (rejected_ctx_logps - rejected_alone_logps)).detach()


def rmipo_gamma(dpmi: torch.Tensor, gamma_min: float, gamma_max: float) -> torch.Tensor:
    """Dynamic margin ``gamma = gmin + (gmax - gmin) * exp(-max(0, dPMI))``, detached.

    RMiPO's MI-modulated margin, arXiv 2604.24804, with the schedule and
    defaults (gmin 0.3, gmax 1.6) of liavonpenn/rmipo ``scripts/rmipo_trainer.py``.

    ``gmax`` when the pair's PMI gap is zero or negative, decaying toward
    ``gmin`` as the gap grows.
    """
    dpmi = dpmi.detach()
    return gamma_min + (gamma_max - gamma_min) * torch.exp(-dpmi.clamp(min=0.0))


def rmipo_reference_free_loss(
    chosen_avg_logps: torch.Tensor, rejected_avg_logps: torch.Tensor, gamma: torch.Tensor, beta: float
) -> torch.Tensor:
    """RMiPO's reference-free (SimPO-style) loss: ``-log sigmoid(beta * ((lw - ll) - gamma))``, ``[B]``.

    RMiPO, arXiv 2604.24804, in the form of its released trainer
    (liavonpenn/rmipo, ``scripts/rmipo_trainer.py``: gamma inside the beta
    product). ``lw``/``ll`` are per-token average log-probs with gradient;
    ``gamma`` (from :func:`rmipo_gamma`) carries none.
    """
    return -F.logsigmoid(beta * ((chosen_avg_logps - rejected_avg_logps) - gamma.detach()))


def rmipo_dpo_loss(
    chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, gamma: torch.Tensor, beta: float
) -> torch.Tensor:
    """RMiPO's DPO form: ``-log sigmoid(beta * ((r_w - r_l) - gamma))``, ``[B]``.

    RMiPO's DPO form (arXiv 2604.24804; an earlier variant in liavonpenn/rmipo kept the
    reference model): the reference log-ratios ``r`` of DPO (sums,
    as TRL computes them) minus the same dynamic ``gamma`` as the
    reference-free form. The trainer passes DPO's ``beta`` here (the log-ratios
    are on DPO's scale), so ``gamma = 0`` gives back :func:`dpo_sigmoid_loss`.
    """
    return -F.logsigmoid(beta * ((chosen_logratios - rejected_logratios) - gamma.detach()))


# --------------------------------------------------------------------------- PerCE
class PerCEStats(NamedTuple):
    """Detached 0-dim summaries over the valid tokens (0 when there are none)."""

    mean_weight: torch.Tensor
    clipped_frac: torch.Tensor
    mean_pir: torch.Tensor
    n_tokens: torch.Tensor


def perce_weights(
    logp_with_ctx: torch.Tensor,
    logp_without_ctx: torch.Tensor,
    mask: torch.Tensor,
    clip_min: float,
    clip_max: float,
) -> tuple[torch.Tensor, PerCEStats]:
    """PerCE token weights ``w_i = clip(PIR_i, m, M)``, detached, 0 on masked tokens.

    ``PIR_i = log pi(y_i | c, x, y_<i) - log pi(y_i | x, y_<i)`` (Personal
    Influence Ratio of PerContrast, arXiv 2603.06595), no softmax or
    renormalisation. ``clipped_frac`` counts valid tokens with ``PIR < m`` or
    ``PIR > M`` (strictly: a PIR exactly on a bound is not clipped). Computed
    in at least float32 whatever the input dtype.
    """
    mask = _as_bool(mask)
    dtype = torch.promote_types(logp_with_ctx.dtype, torch.float32)
    with torch.no_grad():
        zero = torch.zeros((), dtype=dtype, device=logp_with_ctx.device)
        pir = torch.where(mask, logp_with_ctx.detach().to(dtype) - logp_without_ctx.detach().to(dtype), zero)
        weights = torch.where(mask, pir.clamp(min=clip_min, max=clip_max), zero)
        n = mask.sum()
        denom = n.clamp(min=1).to(dtype)
        clipped = mask & ((pir < clip_min) | (pir > clip_max))
        stats = PerCEStats(
            mean_weight=weights.sum() / denom,
            clipped_frac=clipped.sum().to(dtype) / denom,
            mean_pir=pir.sum() / denom,
            n_tokens=n,
        )
    return weights, stats


def perce_loss(logps: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy ``-(1/n) sum_i w_i log pi(y_i | c, x, y_<i)``, a scalar.

    PerCE, arXiv 2603.06595. ``n`` is the number of valid tokens in
    the whole batch (a token-level mean, like TRL's ``sft`` loss type and
    Hugging Face's causal-LM loss), so long responses are not down-weighted
    per token; 0 when no token is valid. The weights are detached here: they
    are an estimate fixed for the step ("bootstrap"/EM), never a path for
    gradient.
    """
    mask = _as_bool(mask)
    n = mask.sum().clamp(min=1).to(logps.dtype)
    return -masked_sum(logps, mask, weights.detach().to(logps.dtype)).sum() / n
