"""The loss math (axolotl_mipo.losses) against float64 references written from the papers' formulas
(DPO arXiv 2305.18290, RMiPO arXiv 2604.24804 with liavonpenn/rmipo, PerCE arXiv 2603.06595)."""

import math
import types
from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from axolotl_mipo import compat
from axolotl_mipo import losses as L

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)

SHAPES = [(1, 1), (2, 5), (3, 7), (4, 16), (6, 3)]


def _batch(rng: np.random.Generator, n: int, t: int, all_masked_row: bool = True):
    """Random values and a right-padded mask with a ragged length per row (one row fully masked)."""
    values = rng.normal(-2.0, 1.5, size=(n, t))
    lengths = rng.integers(1, t + 1, size=n)
    starts = rng.integers(0, t - lengths + 1)
    mask = np.zeros((n, t), dtype=bool)
    for i in range(n):
        mask[i, starts[i] : starts[i] + lengths[i]] = True
    if all_masked_row and n > 1:
        mask[rng.integers(n)] = False
    # what lies under the mask must never leak into a result
    poisoned = values.copy()
    poisoned[~mask] = rng.choice([np.nan, -np.inf, 1e30], size=(~mask).sum())
    return values, poisoned, mask


def _t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype) if not isinstance(x, torch.Tensor) else x


def _ref_masked_sum(v, m, w=None):
    out = []
    for i in range(v.shape[0]):
        s = 0.0
        for j in range(v.shape[1]):
            if m[i, j]:
                s += float(v[i, j]) * (1.0 if w is None else float(w[i, j]))
        out.append(s)
    return np.array(out)


def _ref_masked_mean(v, m, w=None):
    counts = m.sum(axis=1)
    return np.array([s / c if c else 0.0 for s, c in zip(_ref_masked_sum(v, m, w), counts)])


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


# --------------------------------------------------------------------------- masked reductions
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_masked_sum_and_mean(shape, seed):
    rng = np.random.default_rng(seed)
    values, poisoned, mask = _batch(rng, *shape)
    weights = rng.uniform(0.0, 5.0, size=shape)
    for w in (None, weights):
        wt = None if w is None else _t(w)
        np.testing.assert_allclose(L.masked_sum(_t(poisoned), _t(mask, torch.bool), wt).numpy(),
                                   _ref_masked_sum(values, mask, w), atol=1e-6)
        np.testing.assert_allclose(L.masked_mean(_t(poisoned), _t(mask, torch.bool), wt).numpy(),
                                   _ref_masked_mean(values, mask, w), atol=1e-6)
    # an int 0/1 mask means the same as a bool one
    np.testing.assert_allclose(L.masked_sum(_t(poisoned), torch.tensor(mask.astype(np.int64))).numpy(),
                               _ref_masked_sum(values, mask), atol=1e-6)


def test_all_masked_rows_are_zero_not_nan():
    v = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    m = torch.zeros(3, 4, dtype=torch.bool)
    assert torch.equal(L.masked_sum(v, m), torch.zeros(3, dtype=torch.float64))
    assert torch.equal(L.masked_mean(v, m), torch.zeros(3, dtype=torch.float64))
    L.masked_mean(v, m).sum().backward()
    assert torch.equal(v.grad, torch.zeros_like(v))


def test_masked_reductions_do_not_leak_nan_into_gradients():
    v = torch.tensor([[-1.0, float("-inf"), float("nan")]], dtype=torch.float64, requires_grad=True)
    m = torch.tensor([[True, False, False]])
    L.masked_mean(v, m, torch.full_like(v, 2.0)).sum().backward()
    assert torch.equal(v.grad, torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(4))
def test_align_right_matches_a_loop(seed):
    rng = np.random.default_rng(seed)
    n, ts, td = 4, 9, 7
    _, src, src_mask = _batch(rng, n, ts, all_masked_row=False)
    dst_mask = np.zeros((n, td), dtype=bool)
    for i in range(n):
        k = rng.integers(0, td + 1)
        start = rng.integers(0, td - k + 1)
        dst_mask[i, start : start + k] = True
    out, matched = L.align_right(_t(src), _t(src_mask, torch.bool), _t(dst_mask, torch.bool), fill=-7.0)
    for i in range(n):
        s_vals = [src[i, j] for j in range(ts) if src_mask[i, j]]
        d_pos = [j for j in range(td) if dst_mask[i, j]]
        for k, j in enumerate(reversed(d_pos)):
            if k < len(s_vals):
                assert matched[i, j]
                assert out[i, j].item() == s_vals[len(s_vals) - 1 - k]
            else:
                assert not matched[i, j] and out[i, j].item() == -7.0
        for j in range(td):
            if not dst_mask[i, j]:
                assert not matched[i, j] and out[i, j].item() == -7.0


@pytest.mark.parametrize("seed", range(4))
def test_response_alone_matches_a_loop(seed):
    """Float64 values and token ids: each row's masked entries, in order, at the start of a row of fill."""
    rng = np.random.default_rng(seed)
    n, t = 5, 8
    values = rng.standard_normal((n, t))
    mask = rng.random((n, t)) < 0.6
    mask[0] = False  # a row with no response
    ids = rng.integers(0, 100, (n, t))
    out, att = L.response_alone(_t(values), _t(mask, torch.bool), fill=-3.5)
    out_ids, att_ids = L.response_alone(torch.as_tensor(ids), _t(mask, torch.bool), fill=0)
    width = int(mask.sum(-1).max())
    assert out.dtype == torch.float64 and out.shape == (n, width) and out_ids.dtype == torch.int64
    assert torch.equal(att, att_ids)
    for i in range(n):
        kept = [j for j in range(t) if mask[i, j]]
        for k in range(width):
            if k < len(kept):
                assert att[i, k] == 1
                assert out[i, k].item() == values[i, kept[k]] and out_ids[i, k].item() == ids[i, kept[k]]
            else:
                assert att[i, k] == 0 and out[i, k].item() == -3.5 and out_ids[i, k].item() == 0


# --------------------------------------------------------------------------- DPO / RMiPO
@pytest.mark.parametrize("b", [1, 3, 8])
@pytest.mark.parametrize("beta", [0.1, 2.0])
def test_dpo_sigmoid_loss(b, beta):
    rng = np.random.default_rng(b)
    c, r = rng.normal(0, 5, b), rng.normal(0, 5, b)
    ref = [-_logsigmoid(beta * (ci - ri)) for ci, ri in zip(c, r)]
    np.testing.assert_allclose(L.dpo_sigmoid_loss(_t(c), _t(r), beta).numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("gmin,gmax", [(0.3, 1.6), (0.0, 0.0), (1.0, 1.0), (-0.5, 2.0)])
def test_rmipo_gamma(gmin, gmax):
    dpmi = np.array([-3.0, -1e-9, 0.0, 1e-3, 0.5, 2.0, 40.0])
    ref = [gmin + (gmax - gmin) * math.exp(-max(0.0, d)) for d in dpmi]
    x = _t(dpmi).requires_grad_(True)
    g = L.rmipo_gamma(x, gmin, gmax)
    np.testing.assert_allclose(g.numpy(), ref, atol=1e-6)
    assert not g.requires_grad
    # the margin is gmax for a zero or negative PMI gap and decays toward gmin
    assert g[0].item() == pytest.approx(gmax) and g[2].item() == pytest.approx(gmax)
    assert g[-1].item() == pytest.approx(gmin)


@pytest.mark.parametrize("seed", range(3))
def test_rmipo_dpmi_and_losses(seed):
    rng = np.random.default_rng(seed)
    b = 5
    lw, uw, ll, ul = (rng.normal(-2, 1, b) for _ in range(4))
    dpmi_ref = (lw - uw) - (ll - ul)
    x = [_t(a).requires_grad_(True) for a in (lw, uw, ll, ul)]
    dpmi = L.rmipo_dpmi(*x)
    np.testing.assert_allclose(dpmi.numpy(), dpmi_ref, atol=1e-6)
    assert not dpmi.requires_grad
    gmin, gmax = 0.3, 1.6
    gamma_ref = [gmin + (gmax - gmin) * math.exp(-max(0.0, d)) for d in dpmi_ref]
    gamma = L.rmipo_gamma(dpmi, gmin, gmax)
    for beta in (2.0, 0.1):
        ref = [-_logsigmoid(beta * ((a - c) - g)) for a, c, g in zip(lw, ll, gamma_ref)]
        np.testing.assert_allclose(L.rmipo_reference_free_loss(x[0], x[2], gamma, beta).detach().numpy(), ref,
                                   atol=1e-6)
        cw, cl = rng.normal(0, 3, b), rng.normal(0, 3, b)
        ref = [-_logsigmoid(beta * ((a - c) - g)) for a, c, g in zip(cw, cl, gamma_ref)]
        np.testing.assert_allclose(L.rmipo_dpo_loss(_t(cw), _t(cl), gamma, beta).numpy(), ref, atol=1e-6)


def test_rmipo_gamma_carries_no_gradient_into_the_loss():
    lw = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)
    ll = torch.tensor([-2.0], dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    L.rmipo_reference_free_loss(lw, ll, gamma, 2.0).sum().backward()
    assert gamma.grad is None
    assert lw.grad.item() == pytest.approx(-ll.grad.item())


# --------------------------------------------------------------------------- PerCE
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("clip", [(0.8, 5.0), (0.2, 2.0), (1.0, 1.0), (-1.0, 0.5)])
def test_perce_weights(shape, clip):
    m, mx = clip
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    ctx, ctx_p, mask = _batch(rng, *shape)
    noctx = ctx - rng.normal(0.5, 2.0, size=shape)  # PIR ~ N(0.5, 2): some tokens below m, some above M
    noctx_p = noctx.copy()
    noctx_p[~mask] = np.nan
    x = _t(ctx_p).requires_grad_(True)
    w, stats = L.perce_weights(x, _t(noctx_p), _t(mask, torch.bool), m, mx)
    assert not w.requires_grad
    ref_w = np.zeros(shape)
    clipped, pirs = 0, []
    for i in range(shape[0]):
        for j in range(shape[1]):
            if mask[i, j]:
                pir = ctx[i, j] - noctx[i, j]
                pirs.append(pir)
                ref_w[i, j] = min(max(pir, m), mx)
                clipped += pir < m or pir > mx
    np.testing.assert_allclose(w.numpy(), ref_w, atol=1e-6)
    n = int(mask.sum())
    assert stats.n_tokens.item() == n
    assert stats.mean_weight.item() == pytest.approx(ref_w[mask].mean() if n else 0.0, abs=1e-6)
    assert stats.clipped_frac.item() == pytest.approx(clipped / n if n else 0.0, abs=1e-6)
    assert stats.mean_pir.item() == pytest.approx(float(np.mean(pirs)) if n else 0.0, abs=1e-6)


def test_perce_weights_all_masked_and_low_precision():
    w, stats = L.perce_weights(torch.randn(2, 3), torch.randn(2, 3), torch.zeros(2, 3, dtype=torch.bool), 0.8, 5.0)
    assert torch.equal(w, torch.zeros(2, 3))
    assert all(torch.isfinite(s).all() for s in stats)
    assert stats.mean_weight.item() == 0.0 and stats.clipped_frac.item() == 0.0
    w16, _ = L.perce_weights(torch.randn(2, 3, dtype=torch.bfloat16), torch.randn(2, 3, dtype=torch.bfloat16),
                             torch.ones(2, 3, dtype=torch.bool), 0.8, 5.0)
    assert w16.dtype == torch.float32


@pytest.mark.parametrize("shape", SHAPES)
def test_perce_loss(shape):
    rng = np.random.default_rng(shape[0] + 7 * shape[1])
    logps, poisoned, mask = _batch(rng, *shape)
    w = rng.uniform(0.8, 5.0, size=shape)
    n = mask.sum()
    ref = -sum(w[i, j] * logps[i, j] for i in range(shape[0]) for j in range(shape[1]) if mask[i, j]) / max(n, 1)
    x = _t(poisoned).requires_grad_(True)
    out = L.perce_loss(x, _t(w), _t(mask, torch.bool))
    assert out.item() == pytest.approx(ref, abs=1e-6)
    out.backward()
    expected = np.where(mask, -w / max(n, 1), 0.0)
    np.testing.assert_allclose(x.grad.numpy(), expected, atol=1e-9)


def test_perce_loss_all_masked_is_zero():
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    out = L.perce_loss(x, torch.ones_like(x), torch.zeros(2, 4, dtype=torch.bool))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_perce_loss_weights_get_no_gradient():
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)
    L.perce_loss(x, w, torch.ones(2, 4, dtype=torch.bool)).backward()
    assert w.grad is None


# --------------------------------------------------------------------------- gradcheck
def test_gradcheck():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 0, 1], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    v = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, 4, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda a: L.masked_sum(a, mask, w), (v,))
    assert torch.autograd.gradcheck(lambda a: L.masked_mean(a, mask, w), (v,))
    assert torch.autograd.gradcheck(lambda a: L.perce_loss(a, w, mask), (v,))
    assert torch.autograd.gradcheck(lambda a: L.align_right(a, mask, mask.flip(-1))[0], (v,))
    c = torch.randn(4, dtype=torch.float64, requires_grad=True)
    r = torch.randn(4, dtype=torch.float64, requires_grad=True)
    gamma = L.rmipo_gamma(torch.randn(4, dtype=torch.float64), 0.3, 1.6)
    assert torch.autograd.gradcheck(lambda a, b: L.dpo_sigmoid_loss(a, b, 0.1), (c, r))
    assert torch.autograd.gradcheck(lambda a, b: L.rmipo_reference_free_loss(a, b, gamma, 2.0), (c, r))
    assert torch.autograd.gradcheck(lambda a, b: L.rmipo_dpo_loss(a, b, gamma, 0.5), (c, r))


# --------------------------------------------------------------------------- low precision
# Per-dtype tolerances against the float64 loop references, as Liger-Kernel's tests set them per dtype. The
# inputs are rounded to the dtype first and the reference computed from the rounded values, so only the
# arithmetic in the dtype is measured. bfloat16 keeps 8 bits of mantissa (relative error ~4e-3 per
# rounding): over 30 seeds the largest errors were within rtol 2e-2 plus 7e-4 absolute (the RMiPO loss and
# its gradient near zero), a sum of 16 weighted log-probs within 2e-2 relative.
DTYPE_TOL = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.bfloat16: {"atol": 1e-2, "rtol": 2e-2},
}


def _close(actual: torch.Tensor, expected, dtype, what: str):
    np.testing.assert_allclose(actual.detach().double().numpy(), np.asarray(expected, dtype=np.float64),
                               err_msg=f"{what} in {dtype}", **DTYPE_TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("seed", range(4))
def test_losses_in_low_precision_match_the_float64_reference(dtype, seed):
    rng = np.random.default_rng(100 + seed)
    n, t = 6, 16
    vals, poisoned, mask = _batch(rng, n, t)
    weights = rng.uniform(0.8, 5.0, size=(n, t))
    noctx = vals - rng.normal(0.5, 2.0, size=(n, t))
    # round every input to the dtype; the references use the rounded values
    x, w, nc = (_t(a, torch.float64).to(dtype) for a in (poisoned, weights, noctx))
    xv, wv, ncv = (a.double().numpy() for a in (x, w, nc))
    m = _t(mask, torch.bool)

    _close(L.masked_sum(x, m), _ref_masked_sum(xv, mask), dtype, "masked_sum")
    _close(L.masked_sum(x, m, w), _ref_masked_sum(xv, mask, wv), dtype, "weighted masked_sum")
    _close(L.masked_mean(x, m, w), _ref_masked_mean(xv, mask, wv), dtype, "weighted masked_mean")

    # PerCE weights are computed in at least float32, whatever the input dtype
    pw, _ = L.perce_weights(x, nc, m, 0.8, 5.0)
    ref_w = np.where(mask, np.clip(xv - ncv, 0.8, 5.0), 0.0)
    _close(pw, ref_w, dtype, "perce_weights")
    logps = x.detach().clone().requires_grad_(True)
    loss = L.perce_loss(logps, pw.to(dtype), m)
    ref_loss = -_ref_masked_sum(xv, mask, ref_w).sum() / max(mask.sum(), 1)
    _close(loss, ref_loss, dtype, "perce_loss")
    loss.backward()
    _close(logps.grad, np.where(mask, -ref_w / max(mask.sum(), 1), 0.0), dtype, "perce_loss gradient")

    b, beta = 8, 2.0
    lw, ll, dpmi = (torch.tensor(rng.normal(mu, 1.5, b), dtype=torch.float64).to(dtype) for mu in (-1.0, -1.5, 0.2))
    lwv, llv, dv = (a.double().numpy() for a in (lw, ll, dpmi))
    gamma = L.rmipo_gamma(dpmi, 0.3, 1.6)
    ref_gamma = [0.3 + 1.3 * math.exp(-max(0.0, d)) for d in dv]
    _close(gamma, ref_gamma, dtype, "rmipo_gamma")
    gv = gamma.double().numpy()
    chosen = lw.clone().requires_grad_(True)
    per_pair = L.rmipo_reference_free_loss(chosen, ll, gamma, beta)
    ref = [-_logsigmoid(beta * ((a - c) - g)) for a, c, g in zip(lwv, llv, gv)]
    _close(per_pair, ref, dtype, "rmipo_reference_free_loss")
    per_pair.sum().backward()
    # d/dlw of -log sigmoid(z) = -beta * sigmoid(-z)
    ref_grad = [-beta / (1.0 + math.exp(beta * ((a - c) - g))) for a, c, g in zip(lwv, llv, gv)]
    _close(chosen.grad, ref_grad, dtype, "rmipo_reference_free_loss gradient")
    _close(L.rmipo_dpo_loss(lw, ll, gamma, 0.1), [-_logsigmoid(0.1 * ((a - c) - g)) for a, c, g in zip(lwv, llv, gv)],
           dtype, "rmipo_dpo_loss")
    _close(L.dpo_sigmoid_loss(lw, ll, 0.1), [-_logsigmoid(0.1 * (a - c)) for a, c in zip(lwv, llv)], dtype,
           "dpo_sigmoid_loss")

    # moving values is exact in every dtype
    out, matched = L.align_right(x, m, m, fill=0.0)
    assert torch.equal(out[matched], x[m]) and torch.equal(matched, m)
    alone, att = L.response_alone(x, m, fill=0.0)
    assert torch.equal(alone[att.bool()], x[m])


# --------------------------------------------------------------------------- reduction to TRL
class _SingleProcessAccelerator:
    device = torch.device("cpu")

    def gather_for_metrics(self, x):
        return x

    gather = gather_for_metrics

    def unwrap_model(self, m):
        return m


def _trl_stub(beta):
    """A stand-in ``DPOTrainer`` with what TRL 1.9 and 1.14 read in ``_compute_loss``: 1.14 also reads
    ``use_liger_kernel`` (its chunked path, off here) and ``_tp_size`` (the token-count divisor)."""
    return types.SimpleNamespace(
        model=types.SimpleNamespace(training=True), accelerator=_SingleProcessAccelerator(),
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True, ref_model=None,
        f_divergence_type="reverse_kl", loss_types=["sigmoid"], loss_weights=[1.0], beta=beta,
        use_weighting=False, label_smoothing=0.0, _total_train_tokens=0, use_liger_kernel=False, _tp_size=1,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        args=types.SimpleNamespace(gradient_checkpointing_kwargs=None),
    )


class _StandInLM:
    """A model whose output is fixed ``logits`` ``[N, T, V]``. Called with ``fused_lm_head=True`` it answers as a
    model patched by TRL >= 1.15's ``add_fused_lm_head`` does (``trl.trainer.utils.FusedCausalLMOutput``): per-token
    ``log_probs``, ``entropy``, ``mean_logits`` and ``is_top1`` of ``labels[:, 1:]``, zero where the label is -100,
    and no logits. ``tests/test_compat.py`` checks TRL's real fused head against the float64 reference."""

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, *, fused_lm_head=False, labels=None, **kwargs):
        if not fused_lm_head:
            return types.SimpleNamespace(logits=self.logits)
        logits, labels = self.logits[:, :-1], labels[:, 1:]
        mask = labels != -100
        logp = torch.log_softmax(logits, -1)
        picked = logp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
        detached = logits.detach()
        entropy = -(logp.detach().exp() * logp.detach()).sum(-1)
        return types.SimpleNamespace(
            log_probs=picked.masked_fill(~mask, 0.0), entropy=entropy.masked_fill(~mask, 0.0),
            mean_logits=detached.mean(-1).masked_fill(~mask, 0.0),
            is_top1=(detached.argmax(-1) == labels) & mask, aux_loss=None,
        )


def _trl_sigmoid_loss(logits, input_ids, completion_mask, ref_chosen, ref_rejected, beta, stub=None):
    """TRL's own ``DPOTrainer._compute_loss`` on a stand-in trainer (:func:`_trl_stub`) and model
    (:class:`_StandInLM`: logits for TRL 1.9 / 1.14, the fused head's log-probs for TRL >= 1.15)."""
    from trl.trainer.dpo_trainer import DPOTrainer

    stub = stub or _trl_stub(beta)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
              "completion_mask": completion_mask, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    return DPOTrainer._compute_loss(stub, _StandInLM(logits), inputs, False)


def test_dpo_metrics_match_trls_on_the_installed_version():
    """``_log_dpo_metrics`` logs what this TRL's ``_compute_loss`` logs, token count included: divided by
    ``_tp_size`` where TRL sets one (1.14; 2 here), not divided where it does not (1.9)."""
    import inspect

    from trl.trainer.dpo_trainer import DPOTrainer

    from axolotl_mipo.trainer import MIPODPOTrainer

    tp = {"_tp_size": 2} if "_tp_size" in inspect.getsource(DPOTrainer.__init__) else {}
    g = torch.Generator().manual_seed(0)
    b, t, v, beta = 3, 9, 11, 0.1
    input_ids = torch.randint(0, v, (2 * b, t), generator=g)
    completion_mask = torch.zeros(2 * b, t, dtype=torch.long)
    completion_mask[:, 4:] = 1
    ref = torch.randn(2 * b, generator=g) - 20
    logits = torch.randn(2 * b, t, v, generator=g)
    trl = types.SimpleNamespace(**{**vars(_trl_stub(beta)), **tp})
    _trl_sigmoid_loss(logits, input_ids, completion_mask, ref[:b], ref[b:], beta, stub=trl)

    ours = types.SimpleNamespace(accelerator=_SingleProcessAccelerator(), _total_train_tokens=0,
                                 _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, **tp)
    mask = completion_mask[:, 1:].bool()
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "completion_mask": completion_mask}
    # both of our scoring paths log what this TRL logs
    for fused in (False, True):
        ours = types.SimpleNamespace(accelerator=_SingleProcessAccelerator(), _total_train_tokens=0,
                                     _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, **tp)
        scores, _ = compat.score_tokens(_StandInLM(logits), inputs, completion_mask, fused=fused, stats=True)
        c, r = (L.masked_sum(scores.logps, mask) - ref).chunk(2)
        MIPODPOTrainer._log_dpo_metrics(ours, "train", inputs, scores, mask, scores.logps, beta * c, beta * r)

        assert set(ours._metrics["train"]) == set(trl._metrics["train"])
        for key, values in trl._metrics["train"].items():
            assert ours._metrics["train"][key] == pytest.approx(values, rel=1e-5), (fused, key)
        assert ours._metrics["train"]["num_tokens"] == [2 * b * t // tp.get("_tp_size", 1)]


@pytest.mark.parametrize("seed", range(3))
def test_hooks_reduce_to_trl_sigmoid(seed):
    """gamma = 0 (RMiPO DPO form) and all-ones weights (PerCE, alpha 0) give TRL's loss and gradient."""
    g = torch.Generator().manual_seed(seed)
    b, t, v, beta = 3, 9, 11, 0.1
    input_ids = torch.randint(0, v, (2 * b, t), generator=g)
    completion_mask = torch.zeros(2 * b, t, dtype=torch.long)
    for i in range(2 * b):
        start = int(torch.randint(1, t - 1, (1,), generator=g))
        end = int(torch.randint(start + 1, t + 1, (1,), generator=g))
        completion_mask[i, start:end] = 1
    ref = torch.randn(2 * b, generator=g) * 5 - 20
    base = torch.randn(2 * b, t, v, generator=g)

    logits_trl = base.clone().requires_grad_(True)
    loss_trl = _trl_sigmoid_loss(logits_trl, input_ids, completion_mask, ref[:b], ref[b:], beta)
    loss_trl.backward()

    def ours(kind):
        logits = base.clone().requires_grad_(True)
        per_token = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        mask = completion_mask[:, 1:].bool()
        if kind == "perce":
            weights, _ = L.perce_weights(per_token, per_token - torch.rand_like(per_token), mask, 1.0, 1.0)
            logps = L.masked_sum(per_token, mask, weights)
            c, r = (logps - ref).chunk(2)
            loss = L.dpo_sigmoid_loss(c, r, beta).mean() + 0.0 * L.perce_loss(per_token[:b], weights[:b], mask[:b])
        else:
            c, r = (L.masked_sum(per_token, mask) - ref).chunk(2)
            gamma = L.rmipo_gamma(torch.randn(b), 0.0, 0.0)
            loss = L.rmipo_dpo_loss(c, r, gamma, beta).mean()
        loss.backward()
        return loss, logits.grad

    for kind in ("perce", "rmipo"):
        loss, grad = ours(kind)
        torch.testing.assert_close(loss, loss_trl, atol=1e-6, rtol=0)
        torch.testing.assert_close(grad, logits_trl.grad, atol=1e-7, rtol=1e-5)


def test_rmipo_reference_free_equals_simpo_form():
    """With a constant gamma the reference-free form is SimPO's loss on average log-probs."""
    lw, ll = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    gamma = L.rmipo_gamma(torch.full((4,), 1e6, dtype=torch.float64), 0.5, 1.6)  # -> gamma_min
    simpo = -F.logsigmoid(2.0 * (lw - ll) - 2.0 * 0.5)
    torch.testing.assert_close(L.rmipo_reference_free_loss(lw, ll, gamma, 2.0), simpo)
